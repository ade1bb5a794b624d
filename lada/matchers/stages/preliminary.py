"""The preliminary match of PAA and LADA (PAA step 1, LADA section 3.4): every point
goes to at most one GT box by anchor-box IoU, for the whole batch at once; then the
anchor losses of every matched point for its own GT (PAA step 2, LADA Eq. 3-5), which
``candidates.py`` turns into per-GT, per-level candidates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from ..contract import BACKGROUND, MatchInputs
from .batch import BatchGTs
from .best_gt import BestGTTiesToLowestIndex
from .geometry import anchor_boxes, box_centers, paired_iou
from . import pairs as pairs_module
from .pairs import LevelGrids, WindowIndex, level_maxima, widen
from .scores import anchor_losses

__all__ = ["MatchedPoints", "match_and_score_points", "preliminary_iou_match"]


def preliminary_iou_match(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    threshold: float,
    num_anchors_per_level: Optional[List[int]] = None,
    gt_image: Optional[torch.Tensor] = None,
    num_images: int = 1,
) -> torch.Tensor:
    """PAA step 1 (also LADA section 3.4), as the official PAA code's
    ``Matcher(t, t, allow_low_quality_matches=True)``: each point goes to the GT of
    largest anchor-box IoU when that IoU is ``>= threshold``; a point below the threshold
    that is the highest-IoU point of some GT (IoU > 0, ties included) is restored to its
    *own* largest-IoU GT (docs/methods/paa.md), so a point always belongs to the GT it overlaps
    most. (R, 4), (G, 4) -> (R,) GT index or ``BACKGROUND``. For a batch, ``gt_image``
    (G,) gives each GT's image among ``num_images`` sharing the anchors, and the result
    is (num_images * R,): the GT (batch index) of each image's points, images in order.
    Ties between GTs go to the lowest GT index and a point overlapping no GT has its
    image's first GT with IoU 0, as the first maximum of each image's dense (G, R) IoU
    matrix.

    Only the (anchor, GT) pairs that can decide the result are evaluated, per level
    (``num_anchors_per_level``, one level when None), in GT chunks of bounded size
    (``pairs.py``): first, for each GT, the anchors whose IoU with it can reach the
    threshold or the GT's own highest IoU (``_iou_at_least_windows``), which decide every
    point matched by the threshold and every restored point; then, for the few points
    restored with a highest IoU below the threshold, every GT overlapping them, since
    their own largest-IoU GT may overlap them by less than it overlaps its best anchor.
    For a small G R (``pairs.SMALL_PROBLEM_ELEMENTS``), every overlapping pair at once."""
    num_anchors, device = len(anchors), anchors.device
    if gt_image is None:
        gt_image = torch.zeros(len(gt_boxes), dtype=torch.long, device=device)
    counts = torch.bincount(gt_image, minlength=num_images)
    first_gt = torch.where(counts > 0, counts.cumsum(0) - counts, BACKGROUND)  # (N,)
    levels = [num_anchors] if num_anchors_per_level is None else num_anchors_per_level
    index = WindowIndex(box_centers(anchors), levels)
    overlapping = _overlap_windows(anchors, gt_boxes, levels)  # (G, L, 4)
    pruned = len(gt_boxes) * num_anchors > pairs_module.SMALL_PROBLEM_ELEMENTS
    windows = _decisive_windows(gt_boxes, anchors, levels, threshold, index, overlapping) if (
        pruned) else overlapping
    best = BestGTTiesToLowestIndex(num_images * num_anchors, anchors.dtype, device)
    restored = torch.zeros(num_images * num_anchors, dtype=torch.bool, device=device)
    for gt, point in index.pairs(windows):
        iou = paired_iou(gt_boxes.index_select(0, gt), anchors.index_select(0, point))
        key = gt_image.index_select(0, gt) * num_anchors + point
        best.add(gt, key, iou)
        gt_best = torch.zeros_like(gt_boxes[:, 0]).scatter_reduce_(0, gt, iou, "amax")  # (G,)
        own_best = gt_best.index_select(0, gt)  # a chunk holds all pairs of its GTs
        restored.index_fill_(0, key[(iou == own_best) & (own_best > 0)], True)
    below = restored & (best.score < threshold)  # (N R,) restored below the threshold
    if pruned and bool(below.any()):
        _add_every_overlap(best, below, anchors, gt_boxes, gt_image, overlapping, levels)
    overlaps = best.score > 0
    best_iou = torch.where(overlaps, best.score, torch.zeros_like(best.score))
    best_gt = torch.where(overlaps, best.gt, first_gt.repeat_interleave(num_anchors))
    keep = ((best_iou >= threshold) | restored) & (best_gt >= 0)
    return torch.where(keep, best_gt, torch.full_like(best_gt, BACKGROUND))


def _decisive_windows(
    gt_boxes: torch.Tensor, anchors: torch.Tensor, levels: List[int], threshold: float,
    index: WindowIndex, overlapping: torch.Tensor,
) -> torch.Tensor:
    """(G, L, 4) windows of the anchors whose IoU with the GT can reach the threshold or
    the GT's own highest IoU (``_iou_at_least_windows``), within ``overlapping``."""
    sizes = _anchor_sizes(anchors, levels)  # (L, 2)
    floor = torch.minimum(
        torch.full_like(gt_boxes[:, 0], threshold, dtype=torch.float64),
        _best_iou_lower_bounds(gt_boxes, sizes, index.level_grids()),
    )  # (G,) the IoU of every pair that matters reaches this
    return _iou_at_least_windows(gt_boxes, sizes, floor, overlapping)


def _overlap_windows(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, levels: List[int]
) -> torch.Tensor:
    """(G, L, 4): per GT and level, the window of the anchor centres whose anchor may
    overlap the GT (the GT grown by the level's largest anchor half-size)."""
    half_sizes = level_maxima((anchors[:, 2:] - anchors[:, :2]) / 2, levels)  # (L, 2)
    return widen(torch.cat(
        [gt_boxes[:, None, :2] - half_sizes, gt_boxes[:, None, 2:] + half_sizes], dim=2
    ))


def _anchor_sizes(anchors: torch.Tensor, levels: List[int]) -> torch.Tensor:
    """(L, 2) float64 width and height of each level's anchors, NaN for a level whose
    anchors differ in size (or that has none)."""
    sizes = (anchors[:, 2:] - anchors[:, :2]).double()
    largest, smallest = level_maxima(sizes, levels), -level_maxima(-sizes, levels)
    empty = torch.tensor([count == 0 for count in levels], device=anchors.device)[:, None]
    return torch.where((largest == smallest) & ~empty, largest, float("nan"))


def _best_iou_lower_bounds(
    gt_boxes: torch.Tensor, sizes: torch.Tensor, grids: LevelGrids
) -> torch.Tensor:
    """(G,) float64, at most each GT's highest IoU with an anchor: on a regular grid
    level (``LevelGrids.regular``) of equal anchors, along each axis some anchor centre
    lies within half a gap of the GT's centre, or, for a centre beyond the level's
    bounding box, at its distance to the box; the IoU of an anchor at exactly those
    offsets is at most the level's highest. The largest over the levels, less a
    relative 1e-4 for the float rounding of the IoU (0 without any)."""
    width, height, cx, cy = _box_geometry(gt_boxes)  # (G, 1) each
    offsets = []
    for axis, center in enumerate((cx, cy)):
        low, high = grids.boxes[:, axis], grids.boxes[:, axis + 2]  # (L,)
        outside = torch.maximum(low - center, center - high)  # (G, L), > 0 beyond the box
        offsets.append(torch.where(outside > 0, outside, grids.spacing[:, axis] / 2))
    ox = _overlap_length(sizes[:, 0], width, offsets[0])  # (G, L)
    oy = _overlap_length(sizes[:, 1], height, offsets[1])
    inter = ox * oy
    iou = inter / (sizes[:, 0] * sizes[:, 1] + width * height - inter)
    usable = grids.regular & (inter > 0)  # NaN sizes give inter NaN: not > 0
    bound = torch.where(usable, iou, torch.zeros_like(iou)).amax(dim=1)
    return bound * (1 - 1e-4)


def _iou_at_least_windows(
    gt_boxes: torch.Tensor, sizes: torch.Tensor, floor: torch.Tensor, overlapping: torch.Tensor
) -> torch.Tensor:
    """(G, L, 4) windows holding every anchor centre of a level whose anchor has an IoU
    of at least ``floor`` (G,) with the GT: IoU >= f needs the overlap area I >= f (A +
    B) / (1 + f) (A, B the anchor's and the GT's areas), hence an overlap along x of at
    least I / min(anchor height, GT height), which bounds the offset of the centres
    along x (and likewise along y). ``floor`` is lowered by a relative 1e-4 for the
    float rounding of the IoU; a level of unequal anchors, or a floor of 0, keeps the
    ``overlapping`` windows (G, L, 4); a level where no anchor reaches ``floor`` gets an
    inverted window, which holds no point."""
    width, height, cx, cy = _box_geometry(gt_boxes)  # (G, 1) each
    aw, ah = sizes[:, 0], sizes[:, 1]  # (L,)
    f = (floor * (1 - 1e-4))[:, None]  # (G, 1)
    least = f / (1 + f) * (aw * ah + width * height)  # (G, L) least overlap area
    most_x, most_y = torch.minimum(aw, width), torch.minimum(ah, height)
    need_x, need_y = least / most_y, least / most_x  # least overlap along each axis
    reach_x, reach_y = (aw + width) / 2 - need_x, (ah + height) / 2 - need_y
    windows = widen(torch.stack([cx - reach_x, cy - reach_y, cx + reach_x, cy + reach_y], dim=2))
    nothing = torch.cat([cx + 1, cy + 1, cx - 1, cy - 1], dim=1)[:, None]  # (G, 1, 4) inverted
    windows = torch.where(((need_x <= most_x) & (need_y <= most_y))[..., None], windows, nothing)
    keep = (f == 0) | torch.isnan(aw * ah)  # (G, L)
    return torch.where(keep[..., None], overlapping.double(), windows)


def _box_geometry(boxes: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Width and height (clamped at 0) and centre of boxes (G, 4), float64, each (G, 1)."""
    x0, y0, x1, y1 = boxes.double().unbind(dim=1)
    return ((x1 - x0).clamp(min=0)[:, None], (y1 - y0).clamp(min=0)[:, None],
            ((x0 + x1) / 2)[:, None], ((y0 + y1) / 2)[:, None])


def _overlap_length(anchor: torch.Tensor, box: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Overlap of an interval of length ``anchor`` (L,) and one of length ``box`` (G, 1)
    whose centres are ``offset`` (L,) or (G, L) apart -> (G, L)."""
    return ((anchor + box) / 2 - offset).clamp(min=0).minimum(torch.minimum(anchor, box))


def _add_every_overlap(
    best: BestGTTiesToLowestIndex, points_of_interest: torch.Tensor, anchors: torch.Tensor,
    gt_boxes: torch.Tensor, gt_image: torch.Tensor, overlapping: torch.Tensor, levels: List[int],
) -> None:
    """Adds to ``best`` the IoU of every (anchor, GT) pair that overlaps, for the flat
    keys ``image * R + point`` where ``points_of_interest`` (N R,) is set, found in an
    index of those points only."""
    num_anchors = len(anchors)
    keys = points_of_interest.nonzero().squeeze(1)
    present = torch.zeros(num_anchors, dtype=torch.bool, device=anchors.device)
    present[keys % num_anchors] = True
    subset = present.nonzero().squeeze(1)  # (S,) ascending, so grouped by level
    level_of = torch.repeat_interleave(
        torch.arange(len(levels), device=anchors.device),
        torch.tensor(levels, device=anchors.device),
    )
    counts = torch.bincount(level_of[subset], minlength=len(levels)).tolist()
    for gt, member in WindowIndex(box_centers(anchors[subset]), counts).pairs(overlapping):
        point = subset.index_select(0, member)
        key = gt_image.index_select(0, gt) * num_anchors + point
        wanted = points_of_interest.index_select(0, key).nonzero().squeeze(1)
        gt, point, key = gt[wanted], point[wanted], key[wanted]
        best.add(gt, key, paired_iou(gt_boxes.index_select(0, gt), anchors.index_select(0, point)))


@dataclass
class MatchedPoints:
    """The batch after the preliminary match; points are flat keys ``image * R + point``
    of the batch's N * R points, GTs batch indices (``BatchGTs``); P = matched points.

    Attributes:
        point_gt: (N * R,) preliminary GT of every point, or ``BACKGROUND``.
        key: (P,) keys of the matched points, ascending.
        gt: (P,) the GT of each matched point.
        cls, reg: (P,) their classification and regression losses for their GT.
        anchor_iou: (P,) IoU of their anchor box with their GT.
    """

    point_gt: torch.Tensor
    key: torch.Tensor
    gt: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor
    anchor_iou: torch.Tensor

    def dense(self, values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N * R,) point_gt restricted to the kept matched points (``keep`` (P,) bool)
        and (N * R,) scores holding ``values`` (P,) there, ``inf`` elsewhere."""
        point_gt = torch.full_like(self.point_gt, BACKGROUND)
        point_gt[self.key[keep]] = self.gt[keep]
        scores = values.new_full(self.point_gt.shape, float("inf"))
        scores[self.key[keep]] = values[keep]
        return point_gt, scores


def match_and_score_points(
    inputs: MatchInputs,
    gts: BatchGTs,
    anchor_scale: float,
    prelim_iou_thresh: float,
    reg_loss: str = "giou",
) -> MatchedPoints:
    """Preliminary match (PAA step 1, LADA section 3.4) of every image of the batch and
    anchor losses of the matched points (PAA step 2, LADA Eq. 3-5); ``reg_loss`` "giou"
    (1 - GIoU) or "iou" (1 - IoU, LADA Table 7)."""
    gt_boxes = gts.boxes.float()
    anchors = anchor_boxes(inputs.points, inputs.strides, anchor_scale)
    point_gt = preliminary_iou_match(
        anchors, gt_boxes, prelim_iou_thresh, inputs.num_points_per_level,
        gt_image=gts.image, num_images=gts.num_images,
    )
    key = (point_gt >= 0).nonzero().squeeze(1)
    gt = point_gt.index_select(0, key)
    own_boxes = gt_boxes.index_select(0, gt)
    cls, reg = anchor_losses(
        inputs.pred_logits.flatten(0, 1).index_select(0, key).float(),
        inputs.pred_boxes.flatten(0, 1).index_select(0, key).float(),
        own_boxes,
        gts.classes.index_select(0, gt),
        reg_loss,
    )
    anchor_iou = paired_iou(anchors.index_select(0, key % gts.num_points), own_boxes)
    return MatchedPoints(point_gt, key, gt, cls, reg, anchor_iou)
