"""Candidate priors: which points may be assigned to a GT box at all.

Dense priors return a ``(G, R)`` bool mask; candidate priors return ``(G, K)`` point
indices, so that later stages score only K candidates instead of all R points.
"""
from __future__ import annotations

from typing import List

import torch

from .geometry import box_centers, side_distances

__all__ = ["center_sampling_prior", "fcos_scale_prior", "topk_closest_per_level"]


def center_sampling_prior(
    points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, radius: float
) -> torch.Tensor:
    """FCOS centre sampling: the point's Chebyshev distance to the GT centre is below
    ``radius * stride``. (R, 2), (R,), (G, 4) -> (G, R) bool."""
    offsets = (points[None] - box_centers(gt_boxes)[:, None]).abs()  # (G, R, 2)
    return offsets.amax(dim=2) < radius * strides[None]


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
