"""Candidate priors: which points may be assigned to a GT box at all.

Dense priors return a ``(G, R)`` bool mask; candidate priors return ``(G, K)`` point
indices, so that later stages score only K candidates instead of all R points.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from ..contract import BACKGROUND
from .geometry import box_centers, paired_iou, side_distances

__all__ = [
    "center_region_prior",
    "center_sampling_prior",
    "fcos_scale_prior",
    "gaussian_center_prior",
    "lowest_cost_per_level",
    "lowest_per_gt_and_level",
    "preliminary_iou_match",
    "topk_closest_per_level",
]


def center_sampling_prior(
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    radius: float,
    elliptic: bool = False,
) -> torch.Tensor:
    """FCOS centre sampling: ``|px - x| < reach_x`` and ``|py - y| < reach_y`` around the
    GT centre, with ``reach = radius * stride`` (a square: Chebyshev distance). With
    ``elliptic`` (LADA Table 5, section 4.3.2 (4): EPCP inside FCOS) the region is
    stretched to the GT's aspect ratio at the square's area:
    ``reach_x = r s sqrt(W / H)``, ``reach_y = r s sqrt(H / W)``.
    (R, 2), (R,), (G, 4) -> (G, R) bool."""
    offsets = (points[None] - box_centers(gt_boxes)[:, None]).abs()  # (G, R, 2)
    reach = (radius * strides)[None, :, None]  # (1, R, 1)
    if elliptic:
        sizes = gt_boxes[:, 2:] - gt_boxes[:, :2]  # (G, 2) = (W, H)
        reach = reach * (sizes / sizes.flip(dims=[1])).sqrt()[:, None]  # (G, R, 2)
    return (offsets < reach).all(dim=2)


def fcos_scale_prior(
    points: torch.Tensor,
    strides: torch.Tensor,
    num_points_per_level: List[int],
    gt_boxes: torch.Tensor,
) -> torch.Tensor:
    """FCOS multi-level rule: the largest side distance of the point to the GT lies in
    its level's range ``(4 s, 8 s)``, open below on the first level and above on the
    last. (G, R) bool."""
    lower = strides * 4
    lower[: num_points_per_level[0]] = 0
    upper = strides * 8
    upper[-num_points_per_level[-1]:] = float("inf")
    largest = side_distances(points[None], gt_boxes[:, None]).amax(dim=2)  # (G, R)
    return (largest > lower[None]) & (largest < upper[None])


def topk_closest_per_level(
    points: torch.Tensor, num_points_per_level: List[int], gt_boxes: torch.Tensor, k: int
) -> torch.Tensor:
    """ATSS candidates: on every level, the ``k`` points closest (L2) to the GT centre,
    fewer where a level has fewer points. (R, 2), (G, 4) -> (G, K) indices into R, K =
    sum over levels of min(k, points on level), grouped by level."""
    centers = box_centers(gt_boxes)
    candidates = []
    start = 0
    for count in num_points_per_level:
        level_points = points[start : start + count]
        distances = torch.cdist(centers, level_points)  # (G, count)
        nearest = distances.topk(min(k, count), dim=1, largest=False).indices
        candidates.append(nearest + start)
        start += count
    return torch.cat(candidates, dim=1)


def preliminary_iou_match(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, threshold: float
) -> torch.Tensor:
    """PAA step 1 (also LADA section 3.4), as the official PAA code's
    ``Matcher(t, t, allow_low_quality_matches=True)``: each point goes to the GT of
    largest anchor-box IoU when that IoU is ``>= threshold``; a point below the threshold
    that is the highest-IoU point of some GT (IoU > 0, ties included) is restored to its
    *own* largest-IoU GT (spec 5 step 1), so a point always belongs to the GT it overlaps
    most. (R, 4), (G, 4) -> (R,) GT index or ``BACKGROUND``."""
    iou = paired_iou(gt_boxes[:, None], anchors[None])  # (G, R)
    best_iou, best_gt = iou.max(dim=0)
    gt_best = iou.amax(dim=1, keepdim=True)  # (G, 1)
    restored = ((iou == gt_best) & (gt_best > 0)).any(dim=0)  # (R,)
    keep = (best_iou >= threshold) | restored
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
    sizes = boxes[:, 2:] - boxes[:, :2]  # (P, 2) = (W, H)
    reach = (radius * strides)[:, None].expand_as(sizes)
    if elliptic:
        reach = reach * sizes / sizes.amin(dim=1, keepdim=True)
    return ((points - box_centers(boxes)).abs() <= reach).all(dim=1)


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
    of min(k, points on level); a GT with fewer assigned points has invalid slots."""
    assigned = point_gt >= 0
    cost = point_score.new_full((num_gts, len(point_gt)), float("inf"))
    columns = torch.arange(len(point_gt), device=point_gt.device)
    cost[point_gt[assigned], columns[assigned]] = point_score[assigned]
    return lowest_cost_per_level(cost, num_points_per_level, k)


def lowest_cost_per_level(
    cost: torch.Tensor, num_points_per_level: List[int], k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per GT and level, the ``k`` points of lowest finite cost. cost (G, R), ``inf`` where
    a point is not eligible -> candidate indices (G, K) and validity (G, K), K = sum over
    levels of min(k, points on level), grouped by level, ascending within a level."""
    indices, valid = [], []
    start = 0
    for level_cost in cost.split(num_points_per_level, dim=1):
        values, lowest = level_cost.topk(min(k, level_cost.shape[1]), dim=1, largest=False)
        indices.append(lowest + start)
        valid.append(torch.isfinite(values))
        start += level_cost.shape[1]
    return torch.cat(indices, dim=1), torch.cat(valid, dim=1)


def gaussian_center_prior(
    points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, sigma: float
) -> torch.Tensor:
    """DW's fixed soft centre prior (spec 7; DW paper Table 4, "soft center prior"):
    ``exp(-||(p - c) / s||^2 / (2 sigma^2))`` with c the box centre and s the point's
    stride, the product of one Gaussian per axis. Broadcasts points (..., 2), strides
    (...), boxes (..., 4) -> (...). It does not zero points outside the box."""
    offsets = (points - box_centers(boxes)) / strides[..., None]
    return torch.exp(-(offsets**2).sum(dim=-1) / (2 * sigma**2))
