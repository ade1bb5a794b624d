"""Candidate building: per GT box, the (G, K) points that later stages score and
divide, K = sum over levels of min(k, points on level), grouped by level, so that no
stage scores all R points of every GT.

- :func:`topk_closest_per_level`: ATSS's ``k`` points closest to the GT centre per level
  (atss, ciou_atss), found near the centre (``nearest.py``);
- :func:`lowest_per_gt_and_level` and :func:`lowest_pairs_per_gt_and_level`: per level
  the ``k`` lowest-score points among those matched to the GT (PAA step 3, LADA's C2,
  APS's Eq. 4-5), from per-point or per-pair scores;
- :func:`per_level_candidates`: the latter for the whole batch after the preliminary
  match (``preliminary.py``), as ``CandidateDivisionMatcher.candidates`` returns them.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from ..contract import MatchInputs
from .batch import BatchGTs
from .geometry import box_centers, rows_at
from . import pairs
from .nearest import nearest_dense, nearest_per_level
from .pairs import WindowIndex

__all__ = [
    "lowest_pairs_per_gt_and_level",
    "lowest_per_gt_and_level",
    "per_level_candidates",
    "topk_closest_per_level",
]


def topk_closest_per_level(
    points: torch.Tensor, num_points_per_level: List[int], gt_boxes: torch.Tensor, k: int
) -> torch.Tensor:
    """ATSS candidates: on every level, the ``k`` points closest (L2) to the GT centre,
    fewer where a level has fewer points. (R, 2), (G, 4) -> (G, K) indices into R, K =
    sum over levels of min(k, points on level), grouped by level, ascending distance
    within a level, equal distances by point index. Each GT's points are searched near
    its centre only (``nearest.py``): time and memory grow with G k, not G R; for a
    small G R every distance is computed (the same result)."""
    centers = box_centers(gt_boxes)
    if len(centers) * len(points) <= pairs.SMALL_PROBLEM_ELEMENTS:
        return nearest_dense(points, num_points_per_level, centers, k)
    return nearest_per_level(WindowIndex(points, num_points_per_level), centers, k)


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
    return rows_at(key, pair), valid


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


def per_level_candidates(
    inputs: MatchInputs, gts: BatchGTs, point_gt: torch.Tensor, point_score: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per GT and level the ``k`` lowest-score points among the points whose
    ``point_gt`` is that GT. point_gt (N * R,), point_score (N * R,) -> keys (M, K),
    valid (M, K), scores (M, K) (``inf`` where invalid) for the batch's M GTs."""
    key, valid = lowest_per_gt_and_level(
        point_gt, point_score, len(gts), inputs.num_points_per_level, k
    )
    return key, valid, rows_at(point_score, key).masked_fill(~valid, float("inf"))
