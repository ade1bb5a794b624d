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
    return numerator / sums.clamp(min=eps).index_select(0, pair_gt)


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
    unwritten: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The smallest value written to each (point, class) slot by the pairs (a point in
    the bags of several GT boxes of one class keeps the smallest), ``unwritten`` in the
    slots no pair writes and in those whose smallest value is NaN; and the sum of ``1 -
    value`` over the written slots, each once, without the NaN ones. (P,), (P,) long, (P,)
    long -> (R, C) and () in the values' dtype.

    One random-access pass over the pairs and sequential passes over the (R, C) table;
    the sum is over the whole table of ``1 - slot``, where the unwritten slots add 0 when
    ``unwritten`` is 1, else masked to the written ones (the same float32 terms and sum
    as a table with 0 outside the written slots)."""
    slot = pair_point * num_classes + pair_class
    slots = values.new_full((num_points * num_classes,), unwritten)
    slots.scatter_reduce_(0, slot, values, "amin", include_self=False)
    nan_slots = slot[torch.isnan(values)]  # a NaN value makes its slot's minimum NaN
    slots.index_fill_(0, nan_slots, unwritten)
    if unwritten == 1.0:
        total = (1 - slots).sum()
    else:
        written = torch.zeros_like(slots, dtype=torch.bool).index_fill_(0, slot, True)
        written.index_fill_(0, nan_slots, False)
        total = torch.where(written, 1 - slots, torch.zeros_like(slots)).sum()
    return slots.view(num_points, num_classes), total
