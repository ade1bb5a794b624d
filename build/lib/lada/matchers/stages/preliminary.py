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
from .pairs import WindowIndex, level_maxima, widen
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

    Only overlapping (anchor, GT) pairs are evaluated, found per level
    (``num_anchors_per_level``, one level when None) around each GT widened by the
    level's largest anchor half-size, in GT chunks of bounded size (``pairs.py``). Ties
    between GTs go to the lowest GT index and a point overlapping no GT has its image's
    first GT with IoU 0, as the first maximum of each image's dense (G, R) IoU matrix."""
    num_anchors, device = len(anchors), anchors.device
    if gt_image is None:
        gt_image = torch.zeros(len(gt_boxes), dtype=torch.long, device=device)
    counts = torch.bincount(gt_image, minlength=num_images)
    first_gt = torch.where(counts > 0, counts.cumsum(0) - counts, BACKGROUND)  # (N,)
    levels = [num_anchors] if num_anchors_per_level is None else num_anchors_per_level
    half_sizes = level_maxima((anchors[:, 2:] - anchors[:, :2]) / 2, levels)  # (L, 2)
    windows = widen(torch.cat(
        [gt_boxes[:, None, :2] - half_sizes, gt_boxes[:, None, 2:] + half_sizes], dim=2
    ))  # (G, L, 4) centres of anchors that may overlap the GT
    best = BestGTTiesToLowestIndex(num_images * num_anchors, anchors.dtype, device)
    restored = torch.zeros(num_images * num_anchors, dtype=torch.bool, device=device)
    for gt, point in WindowIndex(box_centers(anchors), levels).pairs(windows):
        iou = paired_iou(gt_boxes.index_select(0, gt), anchors.index_select(0, point))
        key = gt_image.index_select(0, gt) * num_anchors + point
        best.add(gt, key, iou)
        gt_best = torch.zeros_like(gt_boxes[:, 0]).scatter_reduce_(0, gt, iou, "amax")  # (G,)
        own_best = gt_best.index_select(0, gt)  # a chunk holds all pairs of its GTs
        restored.index_fill_(0, key[(iou == own_best) & (own_best > 0)], True)
    overlaps = best.score > 0
    best_iou = torch.where(overlaps, best.score, torch.zeros_like(best.score))
    best_gt = torch.where(overlaps, best.gt, first_gt.repeat_interleave(num_anchors))
    keep = ((best_iou >= threshold) | restored) & (best_gt >= 0)
    return torch.where(keep, best_gt, torch.full_like(best_gt, BACKGROUND))


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
