"""Divisions: which scored candidates become positive, and how points claimed by
several GT boxes are resolved."""
from __future__ import annotations

from typing import Optional

import torch

from ..contract import BACKGROUND

__all__ = [
    "assign_to_best_gt",
    "dynamic_loss_threshold",
    "lowest_n_division",
    "mean_plus_std_threshold",
    "scatter_candidates",
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


def scatter_candidates(
    candidate_index: torch.Tensor, values: torch.Tensor, num_points: int, fill: float
) -> torch.Tensor:
    """Writes per-candidate values (G, K) at their points' columns of a (G, R) matrix
    filled with ``fill``."""
    dense = values.new_full((values.shape[0], num_points), fill)
    return dense.scatter_(1, candidate_index, values)


def assign_to_best_gt(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Each point goes to the positive GT with the highest score; points positive for no
    GT are ``BACKGROUND``. (G, R) scores, (G, R) bool -> (R,) long."""
    masked = scores.masked_fill(~positive, float("-inf"))
    best_score, best_gt = masked.max(dim=0)
    return torch.where(torch.isneginf(best_score), torch.full_like(best_gt, BACKGROUND), best_gt)


def dynamic_loss_threshold(scores: torch.Tensor, valid: torch.Tensor, topm: int) -> torch.Tensor:
    """LADA's DLT (section 3.3) on each GT's candidates C2: C3 = the ``topm`` lowest valid
    scores (all of C2 if fewer), ``t_g`` = mean score over C3, positives = members of C3
    with score ``< t_g``. **[reading, spec 6.4]** if that selects nothing (one candidate,
    or all equal), the single lowest-score candidate is positive. The mean is taken in
    float64, where the mean of equal float32 scores is exactly that score (in float32 it
    may round below it and make every candidate positive).
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
