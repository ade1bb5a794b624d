"""Divisions: which scored candidates become positive, and how points claimed by
several GT boxes are resolved."""
from __future__ import annotations

import torch

from .contract import BACKGROUND

__all__ = ["assign_to_best_gt", "mean_plus_std_threshold", "scatter_candidates"]


def mean_plus_std_threshold(scores: torch.Tensor) -> torch.Tensor:
    """ATSS's adaptive threshold per GT: mean + unbiased std of its candidates' scores.
    (G, K) -> (G, 1). With a single candidate the std is taken as 0."""
    std = scores.std(dim=1, keepdim=True) if scores.shape[1] > 1 else torch.zeros_like(scores)
    return scores.mean(dim=1, keepdim=True) + std


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
