"""Divisions: which scored candidates become positive, and how points claimed by
several GT boxes are resolved (on candidates or (GT, point) pairs, never a (G, R)
matrix)."""
from __future__ import annotations

from typing import Optional

import torch

from ..contract import BACKGROUND

_NO_GT = torch.iinfo(torch.long).max

__all__ = [
    "BestGT",
    "assign_candidates_to_best_gt",
    "dynamic_loss_threshold",
    "lowest_n_division",
    "mean_plus_std_threshold",
]


def mean_plus_std_threshold(
    scores: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """ATSS's adaptive threshold per GT: mean + unbiased std of the scores of its valid
    candidates (all when ``valid`` is None). (G, K) -> (G, 1). With a single candidate
    the std is taken as 0."""
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    values = scores.masked_fill(~valid, 0)
    count = valid.sum(dim=1, keepdim=True)
    mean = values.sum(dim=1, keepdim=True) / count.clamp(min=1)
    squares = ((values - mean) ** 2).masked_fill(~valid, 0).sum(dim=1, keepdim=True)
    return mean + (squares / (count - 1).clamp(min=1)).sqrt()


class BestGT:
    """Each point goes to the positive GT with the highest score, accumulated over
    (gt, point, score) triples of positive pairs given in any number of parts (for
    example GT chunks), without a (G, R) matrix: the maximum over GTs of a dense matrix
    holding the triples' scores and ``-inf`` elsewhere. Ties go to the lowest GT index
    (the first maximum of the dense form, never the GTs' order otherwise); points whose
    best score is ``-inf``, or that appear in no triple, are ``BACKGROUND``."""

    def __init__(self, num_points: int, dtype: torch.dtype, device: torch.device):
        self.score = torch.full((num_points,), float("-inf"), dtype=dtype, device=device)
        self.gt = torch.full((num_points,), _NO_GT, dtype=torch.long, device=device)

    def add(self, gt: torch.Tensor, point: torch.Tensor, score: torch.Tensor) -> None:
        """Adds triples: gt (M,), point (M,) long, score (M,)."""
        score = score.to(self.score.dtype)
        best = torch.full_like(self.score, float("-inf")).scatter_reduce_(
            0, point, score, "amax"
        )  # (R,) best score of this part
        at_best = score == best.index_select(0, point)
        best_gt = torch.full_like(self.gt, _NO_GT).scatter_reduce_(
            0, point, torch.where(at_best, gt, torch.full_like(gt, _NO_GT)), "amin"
        )  # (R,) lowest GT reaching it
        tie = best == self.score
        self.gt = torch.where(
            best > self.score, best_gt, torch.where(tie, torch.minimum(self.gt, best_gt), self.gt)
        )
        self.score = torch.maximum(self.score, best)

    def gt_index(self) -> torch.Tensor:
        """(R,) long: the best GT of each point, or ``BACKGROUND``."""
        none = torch.isneginf(self.score) | (self.gt == _NO_GT)
        return torch.where(none, torch.full_like(self.gt, BACKGROUND), self.gt)


def assign_candidates_to_best_gt(
    candidate_index: torch.Tensor, scores: torch.Tensor, positive: torch.Tensor, num_points: int
) -> torch.Tensor:
    """Each point goes to the GT of highest score among the GTs for which it is a
    positive candidate (:class:`BestGT`): candidate points (G, K), their scores (G, K)
    and positives (G, K) -> (R,) long GT index or ``BACKGROUND``."""
    rows = torch.arange(len(candidate_index), device=candidate_index.device)
    gt = rows[:, None].expand_as(candidate_index)
    best = BestGT(num_points, scores.dtype, scores.device)
    best.add(gt[positive], candidate_index[positive], scores[positive])
    return best.gt_index()


def dynamic_loss_threshold(scores: torch.Tensor, valid: torch.Tensor, topm: int) -> torch.Tensor:
    """LADA's DLT (section 3.3) on each GT's candidates C2: C3 = the ``topm`` lowest valid
    scores (all of C2 if fewer), ``t_g`` = mean score over C3, positives = members of C3
    with score ``< t_g``. **[reading, docs/methods/lada.md]** if that selects nothing (one candidate,
    or all equal), the single lowest-score candidate is positive. The mean is taken in
    float64, where the mean of equal float32 scores is exactly that score (in float32 it
    may round above it and make every candidate positive).
    scores (G, K), valid (G, K) -> positives (G, K) bool."""
    in_top = lowest_n_division(scores, valid, topm)
    count = in_top.sum(dim=1, keepdim=True).clamp(min=1)
    exact = scores.double().masked_fill(~in_top, 0)
    threshold = exact.sum(dim=1, keepdim=True) / count
    positive = in_top & (exact < threshold)
    fallback = lowest_n_division(scores, valid, 1) & ~positive.any(dim=1, keepdim=True)
    return positive | fallback


def lowest_n_division(scores: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """The min(n, #valid) lowest-score valid candidates of each GT are positive
    (LLA-style fixed number, LADA Table 8; ties by position).
    scores (G, K), valid (G, K) -> (G, K) bool."""
    ranked = scores.masked_fill(~valid, float("inf")).argsort(dim=1, stable=True)
    rank = torch.empty_like(ranked).scatter_(
        1, ranked, torch.arange(scores.shape[1], device=scores.device).expand_as(ranked)
    )
    return (rank < n) & valid
