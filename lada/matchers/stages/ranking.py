"""Ranking (GT, point) pairs within each GT without a (G, R) matrix: one sort of the
pairs by GT, then score, then point index, so that equal scores go to the lower point
index (docs/methods/README.md, "The matcher contract"), whatever order the pairs were
found in.

- :func:`sort_within_groups`: the permutation and each pair's rank within its group;
- :func:`first_k_per_group`: the pairs of rank below a per-group k, e.g. TAL's top m, the
  k lowest costs of DSL and SimOTA, or the q largest IoUs of a dynamic k (without a point
  index: when only the values count, equal ones may come in any order).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["first_k_per_group", "monotone_float32_bits", "sort_within_groups"]

_INT64_BITS = 63  # a non-negative int64 key
_PREFILTER_FACTOR = 32  # narrow first when there are more pairs than this many per group


def sort_within_groups(
    group: torch.Tensor, score: torch.Tensor, point: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Orders P pairs by ``group`` (P,) long >= 0, then ascending ``score`` (P,) float
    rounded to float32, then ``point`` (P,) long >= 0, and returns the permutation (P,) and
    the rank (P,) of each *sorted* pair within its group (0 = lowest score). ``point``
    None: equal scores in any order. Exact for float32 (or narrower) scores; wider ones
    closer than float32's resolution (relative 6e-8) tie, decided by the point index
    (:func:`first_k_per_group` ranks float64 scores exactly on top of it). One sort of an
    int64 key when group, score bits and point fit in it, two otherwise. NaN scores sort
    after every other score of their group."""
    num_pairs = len(group)
    if num_pairs == 0:
        empty = group.new_zeros(0)
        return empty, empty
    score = score.nan_to_num(nan=float("inf"), posinf=float("inf"), neginf=float("-inf"))
    point_bits = 0 if point is None else max(int(point.max()).bit_length(), 1)
    group_bits = max(int(group.max()).bit_length(), 1)
    score_point = monotone_float32_bits(score) << point_bits
    if point is not None:
        score_point |= point
    if group_bits + 32 + point_bits <= _INT64_BITS:
        order = ((group << (32 + point_bits)) | score_point).argsort()
        return order, _ranks(group.index_select(0, order))
    order = score_point.argsort()
    order = order.index_select(0, group.index_select(0, order).argsort(stable=True))
    return order, _ranks(group.index_select(0, order))


def first_k_per_group(
    group: torch.Tensor, score: torch.Tensor, point: Optional[torch.Tensor], k: torch.Tensor,
    every_group: bool = False,
) -> torch.Tensor:
    """Indices into the P pairs of those ranked below ``k[group]`` within their group
    (lowest scores first, ties to the lower point, in any order without ``point``;
    :func:`sort_within_groups`), in (group, rank) order. k (G,) long, one per group. Many
    pairs per group are first narrowed by a bound from minima of subsets of each group's
    pairs (:func:`_within_subset_bound`; it narrows best when a group's pairs lie close
    together, as the callers' do), so that the sorts see about k pairs per group.
    The work covers the groups from the lowest to the highest in ``group``, not all G: a
    caller may rank its pairs in parts of consecutive groups. ``every_group``: the work
    covers all G without finding the range first (one host synchronisation fewer on a
    GPU), for a caller whose pairs span it."""
    if len(group) and not every_group:
        low, high = torch.stack(torch.aminmax(group)).tolist()  # one synchronisation
        if low > 0 or high < len(k) - 1:
            return first_k_per_group(group - low, score, point, k[low : high + 1])
    score = score.nan_to_num(nan=float("inf"), posinf=float("inf"), neginf=float("-inf"))
    if len(group) <= _PREFILTER_FACTOR * len(k):
        return _first_k_sorted(group, score, point, k)
    candidate = _within_subset_bound(group, score, k)
    chosen = _first_k_sorted(group.index_select(0, candidate), score.index_select(0, candidate),
                             _subset(point, candidate), k)
    return candidate.index_select(0, chosen)


def _subset(point: Optional[torch.Tensor], index: torch.Tensor) -> Optional[torch.Tensor]:
    return None if point is None else point.index_select(0, index)


def _exact_in_float32(score: torch.Tensor) -> bool:
    """Whether rounding the scores to float32 leaves them as they are."""
    return score.dtype in (torch.float32, torch.float16, torch.bfloat16)


def _first_k_sorted(
    group: torch.Tensor, score: torch.Tensor, point: Optional[torch.Tensor], k: torch.Tensor,
) -> torch.Tensor:
    """:func:`first_k_per_group` by sorting (scores without NaN); float64 scores are
    sorted exactly only for the pairs within a float32 step of their group's k-th score."""
    if len(group) and not _exact_in_float32(score):
        order = _exact_within_float32_runs(
            _within_float32_kth(group, score, point, k), group, score)
        sorted_group = group.index_select(0, order)
        return order[_ranks(sorted_group) < k.index_select(0, sorted_group)]
    order, rank = sort_within_groups(group, score, point)  # exact for float32 scores
    keep = rank < k.index_select(0, group.index_select(0, order))
    return order[keep]


def _within_float32_kth(
    group: torch.Tensor, score: torch.Tensor, point: Optional[torch.Tensor], k: torch.Tensor
) -> torch.Tensor:
    """Indices of the pairs whose score is at most their group's k-th lowest score
    rounded to float32 and raised by one float32 step (all of a group with fewer than k
    pairs), in (group, float32 score, point) order: a superset of the first k in exact
    order, found by one cheap sort, so that the exact sorts run on about k pairs per
    group. Scores without NaN."""
    order, rank = sort_within_groups(group, score, point)
    sorted_group, sorted_score = group.index_select(0, order), score.index_select(0, order)
    at_k = rank == k.index_select(0, sorted_group) - 1
    kth = torch.full((len(k),), float("inf"), dtype=torch.float64, device=score.device)
    kth[sorted_group[at_k]] = sorted_score[at_k].float().double()
    bound = torch.nextafter(kth.float(), torch.tensor(float("inf"), device=score.device)).double()
    return order[sorted_score.double() <= bound.index_select(0, sorted_group)]


def _exact_within_float32_runs(
    order: torch.Tensor, group: torch.Tensor, score: torch.Tensor
) -> torch.Tensor:
    """Pairs ``order`` (n,) in (group, float32 score, point) order -> (group, score,
    point) order. Rounding to float32 is monotone, so only the runs of consecutive pairs
    with equal group and equal float32 score can be out of order; their members (few,
    none unless scores lie within a float32 step of each other) are ordered by two
    stable sorts, by the exact score then by run, and put back in the runs' places:
    equal exact scores have equal roundings, so they keep their order by point."""
    bits = monotone_float32_bits(score.index_select(0, order))
    sorted_group = group.index_select(0, order)
    tied = (sorted_group[1:] == sorted_group[:-1]) & (bits[1:] == bits[:-1])  # (n - 1,)
    in_run = torch.zeros(len(order), dtype=torch.bool, device=order.device)
    in_run[1:] |= tied
    in_run[:-1] |= tied
    place = in_run.nonzero().squeeze(1)  # runs lie in consecutive places
    if not len(place):
        return order
    run = torch.cumsum(~torch.cat([tied.new_zeros(1), tied]), 0).index_select(0, place)
    members = order.index_select(0, place)
    by_score = score.index_select(0, members).argsort(stable=True)
    by_run = by_score.index_select(0, run.index_select(0, by_score).argsort(stable=True))
    return order.index_copy(0, place, members.index_select(0, by_run))


def _within_subset_bound(group: torch.Tensor, score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Indices of the pairs scoring at most their group's bound ``B_g``, a superset of the
    first ``k_g`` pairs found in two passes over the pairs. Each group's pairs are dealt
    into S subsets by their position modulo S (S the power of two at least ``2 max k``),
    and ``B_g`` is the ``k_g``-th lowest of the subsets' minima (``inf`` for an empty
    subset): those ``k_g`` minima belong to ``k_g`` distinct pairs scoring at most
    ``B_g``, so the group's ``k_g``-th lowest score is at most ``B_g`` too. With about
    P / (S G) pairs per subset, the bound keeps about 1.2 k pairs per group on crowded
    images (measured: 15,600 of 139,000 at G = 1,000, k = 13). Scores without NaN; one
    host synchronisation (the largest k)."""
    num_groups, largest_k = len(k), max(int(k.max()), 1)
    subsets = 1 << (2 * largest_k - 1).bit_length()
    position = torch.arange(len(group), device=group.device) & (subsets - 1)
    minima = score.new_full((num_groups * subsets,), float("inf")).scatter_reduce_(
        0, torch.add(position, group, alpha=subsets), score, "amin")
    kth = (k - 1).clamp(min=0)[:, None]  # k = 0 keeps a superset of nothing: any bound
    lowest = minima.view(num_groups, subsets).topk(largest_k, dim=1, largest=False).values
    bound = lowest.gather(1, kth).squeeze(1)
    return (score <= bound.index_select(0, group)).nonzero().squeeze(1)


def _ranks(sorted_group: torch.Tensor) -> torch.Tensor:
    """Rank of each element within its run of equal values of a sorted (P,) long."""
    positions = torch.arange(len(sorted_group), device=sorted_group.device)
    new_run = torch.ones_like(sorted_group, dtype=torch.bool)
    new_run[1:] = sorted_group[1:] != sorted_group[:-1]
    run_start = torch.cummax(torch.where(new_run, positions, torch.zeros_like(positions)), 0)[0]
    return positions - run_start


def monotone_float32_bits(score: torch.Tensor) -> torch.Tensor:
    """(P,) float -> (P,) int64 in [0, 2^32), ordered as the values rounded to float32
    (-0.0 as 0.0), so that comparisons of float32 values can ride in exact integer keys."""
    bits = (score.float() + 0.0).view(torch.int32).long()
    monotone = torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF) - 1)  # in [-2^31, 2^31)
    return monotone + 2**31
