"""Divisions: which of each GT's scored candidates (G, K) become positive (a point then
positive for several GTs is resolved by ``best_gt.py``):

- :func:`mean_plus_std_threshold`: ATSS's adaptive threshold (atss, ciou_atss, lada's
  ``mean_std``);
- :func:`dynamic_loss_threshold`: LADA's dynamic loss threshold (DLT, section 3.3);
- :func:`lowest_n_division`: a fixed number of lowest-score candidates (LADA Table 8).

PAA's and MMMC's mixture divisions are in ``gmm.py``. A division sees only the (G, K)
scores and validity of the candidates, never the points or the predictions."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = [
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
