"""Candidate priors: which points may be assigned to a GT box at all.

Region priors are written for broadcast (point, box) pairs, so that the same expression
serves the sparse pairs of ``pairs.py`` and, with ``points[None]`` and
``boxes[:, None]``, the dense ``(G, R)`` mask; candidate priors return ``(G, K)`` point
indices, so that later stages score only K candidates instead of all R points.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ..contract import BACKGROUND
from .divisions import BestGT
from .geometry import box_centers, paired_iou, side_distances
from .pairs import WindowIndex, gt_chunks, level_maxima, widen

__all__ = [
    "center_region_prior",
    "center_region_reach",
    "center_sampling_reach",
    "fcos_size_ranges",
    "gaussian_center_prior",
    "in_center_sampling_region",
    "in_fcos_size_range",
    "lowest_pairs_per_gt_and_level",
    "lowest_per_gt_and_level",
    "preliminary_iou_match",
    "topk_closest_per_level",
]


def in_center_sampling_region(
    points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, radius: float,
    elliptic: bool = False,
) -> torch.Tensor:
    """FCOS centre sampling: ``|px - x| < reach_x`` and ``|py - y| < reach_y`` around the
    box centre, with ``reach = radius * stride`` (a square: Chebyshev distance). With
    ``elliptic`` (LADA Table 5, section 4.3.2 (4): EPCP inside FCOS) the region is
    stretched to the box's aspect ratio at the square's area:
    ``reach_x = r s sqrt(W / H)``, ``reach_y = r s sqrt(H / W)``.
    points (..., 2), strides (...), boxes (..., 4), broadcast -> (...) bool."""
    offsets = (points - box_centers(boxes)).abs()  # (..., 2)
    reach = (radius * strides)[..., None]
    if elliptic:
        sizes = boxes[..., 2:] - boxes[..., :2]  # (..., 2) = (W, H)
        reach = reach * (sizes / sizes.flip(dims=[-1])).sqrt()
    return (offsets < reach).all(dim=-1)


def center_sampling_reach(
    strides: torch.Tensor, boxes: torch.Tensor, radius: float, elliptic: bool = False
) -> torch.Tensor:
    """Half sides (x, y) of the centre-sampling region of :func:`in_center_sampling_region`:
    strides (L,), boxes (G, 4) -> (G, L, 2), for searching its points."""
    reach = (radius * strides)[None, :, None].expand(len(boxes), -1, 2)
    if elliptic:
        sizes = boxes[:, 2:] - boxes[:, :2]
        reach = reach * (sizes / sizes.flip(dims=[1])).sqrt()[:, None]
    return reach


def fcos_size_ranges(
    strides: torch.Tensor, num_points_per_level: List[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each point's FCOS size range ``(4 s, 8 s)``, open below on the first level and
    above on the last: (R,) -> lower (R,), upper (R,)."""
    lower = strides * 4
    lower[: num_points_per_level[0]] = 0
    upper = strides * 8
    upper[-num_points_per_level[-1]:] = float("inf")
    return lower, upper


def in_fcos_size_range(
    points: torch.Tensor, boxes: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """FCOS multi-level rule: the largest side distance of the point to the box lies in
    its level's range ``(lower, upper)`` (:func:`fcos_size_ranges`). points (..., 2),
    boxes (..., 4), lower and upper (...), broadcast -> (...) bool."""
    largest = side_distances(points, boxes).amax(dim=-1)
    return (largest > lower) & (largest < upper)


def topk_closest_per_level(
    points: torch.Tensor, num_points_per_level: List[int], gt_boxes: torch.Tensor, k: int
) -> torch.Tensor:
    """ATSS candidates: on every level, the ``k`` points closest (L2) to the GT centre,
    fewer where a level has fewer points. (R, 2), (G, 4) -> (G, K) indices into R, K =
    sum over levels of min(k, points on level), grouped by level. The (G, points on
    level) distances are computed for chunks of GT boxes, so memory is bounded."""
    centers = box_centers(gt_boxes)
    chunks = gt_chunks(torch.full((len(gt_boxes),), len(points)))
    candidates = []
    start = 0
    for count in num_points_per_level:
        level_points = points[start : start + count]
        nearest = [
            torch.cdist(centers[chunk], level_points)
            .topk(min(k, count), dim=1, largest=False)
            .indices
            for chunk in chunks
        ]  # (G_chunk, k) each
        candidates.append(torch.cat(nearest) + start if nearest else centers.new_zeros(
            (0, min(k, count)), dtype=torch.long))
        start += count
    return torch.cat(candidates, dim=1)


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
    best = BestGT(num_images * num_anchors, anchors.dtype, device)
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


def center_region_prior(
    points: torch.Tensor,
    strides: torch.Tensor,
    boxes: torch.Tensor,
    radius: float,
    elliptic: bool = True,
) -> torch.Tensor:
    """LADA's centre prior of each point with respect to its own box: points (P, 2),
    strides (P,), boxes (P, 4) -> (P,) bool.

    EPCP (Eq. 1-2): ``|px - x| <= r s W / min(W, H)`` and ``|py - y| <= r s H / min(W, H)``,
    a region stretched along the box's long side; ``elliptic=False`` gives CP, the
    square ``|px - x| <= r s`` and ``|py - y| <= r s``."""
    reach = center_region_reach(strides, boxes, radius, elliptic)
    return ((points - box_centers(boxes)).abs() <= reach).all(dim=1)


def center_region_reach(
    strides: torch.Tensor, boxes: torch.Tensor, radius: float, elliptic: bool = True
) -> torch.Tensor:
    """Half sides (x, y) of :func:`center_region_prior`'s region around each box's
    centre: strides (P,), boxes (P, 4) -> (P, 2); EPCP ``r s (W, H) / min(W, H)``, CP
    ``r s``. Also what the assignment visualiser draws."""
    sizes = boxes[:, 2:] - boxes[:, :2]  # (P, 2) = (W, H)
    reach = (radius * strides)[:, None].expand_as(sizes)
    if elliptic:
        reach = reach * sizes / sizes.amin(dim=1, keepdim=True)
    return reach


def lowest_per_gt_and_level(
    point_gt: torch.Tensor,
    point_score: torch.Tensor,
    num_gts: int,
    num_points_per_level: List[int],
    k: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """For every GT and level, the ``k`` lowest-scoring points among those assigned to the
    GT (PAA step 3, LADA's C2). point_gt (R,) GT index or ``BACKGROUND``; point_score (R,).
    Returns candidate point indices (G, K) and their validity (G, K), K = sum over levels
    of min(k, points on level); a GT with fewer assigned points has invalid slots (index
    0). For a batch of N images, point_gt and point_score are (N * R,) (images in order)
    and the indices are the flat ``image * R + point``. See
    :func:`lowest_pairs_per_gt_and_level`."""
    key = (point_gt >= 0).nonzero().squeeze(1)
    if len(key) == 0:
        width = sum(min(k, count) for count in num_points_per_level)
        empty = torch.zeros((num_gts, width), dtype=torch.long, device=point_gt.device)
        return empty, empty.bool()
    pair, valid = lowest_pairs_per_gt_and_level(
        point_gt[key], key % sum(num_points_per_level), point_score[key], num_gts,
        num_points_per_level, k,
    )
    return key[pair], valid


def lowest_pairs_per_gt_and_level(
    gt: torch.Tensor,
    point: torch.Tensor,
    score: torch.Tensor,
    num_gts: int,
    num_points_per_level: List[int],
    k: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per GT and level, the ``k`` lowest-score (GT, point) pairs among P pairs given as
    gt (P,), point (P,), score (P,); pairs of non-finite score are never chosen. Returns
    (G, K) indices into the P pairs (0 in invalid slots) and their validity (G, K), K =
    sum over levels of min(k, points on level), grouped by level, ascending score within
    a level, equal scores in pair order. One sort of the pairs: no (G, R) matrix."""
    device = point.device
    num_levels = len(num_points_per_level)
    widths = torch.tensor([min(k, count) for count in num_points_per_level], device=device)
    offsets = widths.cumsum(0) - widths
    level_of_point = torch.repeat_interleave(
        torch.arange(num_levels, device=device), torch.tensor(num_points_per_level, device=device)
    )
    pair = torch.isfinite(score).nonzero().squeeze(1)
    group = gt.index_select(0, pair) * num_levels + level_of_point.index_select(
        0, point.index_select(0, pair)
    )  # (gt, level) of each pair
    order = _group_then_score_order(group, score.index_select(0, pair))
    pair, group = pair.index_select(0, order), group.index_select(0, order)
    counts = torch.bincount(group, minlength=num_gts * num_levels)
    rank = torch.arange(len(pair), device=device) - (counts.cumsum(0) - counts).index_select(0, group)
    level = group % num_levels
    keep = (rank < widths.index_select(0, level)).nonzero().squeeze(1)
    group, level, rank = group.index_select(0, keep), level.index_select(0, keep), rank.index_select(0, keep)
    flat = torch.div(group, num_levels, rounding_mode="floor") * int(widths.sum()) + (
        offsets.index_select(0, level) + rank
    )  # (kept,) position in the flattened (G, K) result
    total = num_gts * int(widths.sum())
    index = torch.zeros(total, dtype=torch.long, device=device).index_copy_(
        0, flat, pair.index_select(0, keep)
    )
    valid = torch.zeros(total, dtype=torch.bool, device=device).index_fill_(0, flat, True)
    return index.view(num_gts, -1), valid.view(num_gts, -1)


def _group_then_score_order(group: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Permutation sorting P pairs by group (P,) long >= 0, then score (P,), then their
    order: one stable sort of an int64 key for float32 scores (the float's bits mapped
    to an order-preserving integer), two stable sorts otherwise."""
    if score.dtype != torch.float32 or len(group) == 0 or int(group.max()) >= 2**30:
        order = score.argsort(stable=True)
        return order.index_select(0, group.index_select(0, order).argsort(stable=True))
    bits = (score + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into 0.0
    monotone = torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF) - 1)  # in [-2^31, 2^31)
    return (group * 2**32 + (monotone + 2**31)).argsort(stable=True)


def gaussian_center_prior(
    points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, sigma: float
) -> torch.Tensor:
    """DW's fixed soft centre prior (docs/methods/dw.md; DW paper Table 4, "soft center prior"):
    ``exp(-||(p - c) / s||^2 / (2 sigma^2))`` with c the box centre and s the point's
    stride, the product of one Gaussian per axis. Broadcasts points (..., 2), strides
    (...), boxes (..., 4) -> (...). It does not zero points outside the box."""
    offsets = (points - box_centers(boxes)) / strides[..., None]
    return torch.exp(-(offsets**2).sum(dim=-1) / (2 * sigma**2))
