"""Reductions over (point, GT) pairs for soft assignments (DW). A soft method scores
the P pairs of one image as flat tensors with each pair's GT (``pair_gt``, (P,)) and
point (``pair_point``, (P,)); these stages normalise per GT, rescale per GT and reduce into
(point, class) slots, all with scatter reductions over the pairs, never a loop over GT
boxes. Each point's best GT is ``best_gt.py::best_gt_ties_to_smallest_box``."""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = [
    "min_max_per_gt",
    "min_per_point_class",
    "normalise_per_gt",
]


def normalise_per_gt(
    numerator: torch.Tensor,
    denominator_terms: torch.Tensor,
    pair_gt: torch.Tensor,
    num_gts: int,
    eps: float = 1e-12,
) -> torch.Tensor:
    """``numerator / sum over the GT's pairs of denominator_terms`` (the sum clamped at
    ``eps``): a weight normalised within each GT's bag. With ``denominator_terms =
    numerator`` each GT's weights sum to 1. (P,), (P,), (P,) long -> (P,)."""
    sums = denominator_terms.new_zeros(num_gts).index_add_(0, pair_gt, denominator_terms)
    return numerator / sums.clamp(min=eps)[pair_gt]


def min_max_per_gt(
    values: torch.Tensor, pair_gt: torch.Tensor, num_gts: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of the values of each GT's pairs: (P,), (P,) long ->
    (G,), (G,); ``inf`` and ``-inf`` for a GT without pairs."""
    low = values.new_full((num_gts,), float("inf")).scatter_reduce_(0, pair_gt, values, "amin")
    high = values.new_full((num_gts,), float("-inf")).scatter_reduce_(0, pair_gt, values, "amax")
    return low, high


def min_per_point_class(
    values: torch.Tensor,
    pair_point: torch.Tensor,
    pair_class: torch.Tensor,
    num_points: int,
    num_classes: int,
) -> torch.Tensor:
    """The smallest value written to each (point, class) slot by the pairs (a point in
    the bags of several GT boxes of one class keeps the smallest); ``inf`` in slots no
    pair writes. (P,), (P,) long, (P,) long -> (R, C)."""
    slots = values.new_full((num_points * num_classes,), float("inf"))
    slots.scatter_reduce_(0, pair_point * num_classes + pair_class, values, "amin")
    return slots.view(num_points, num_classes)
