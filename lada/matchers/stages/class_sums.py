"""Classification costs summed over the C classes for (point, GT) pairs, without a
(pairs, C) tensor: the GT's class at its target, every other class at target 0.

A point's sum is its all-zero-target sum, computed once per point (in row chunks of
bounded size) and cached, minus its zero-target term at the GT's class plus its target
term there. The zero-target terms are computed in the logits' precision (float32: the
C terms of every point are the bulk of the work) and summed in float64, the target term
in float64, so that a cost's relative error stays within a few float32 steps (about
3e-7). Used by DSL; any cost of the form ``sum_c f(z_c, y_c)`` fits (OTA's focal loss,
SimOTA's BCE).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.nn import functional as F

from .pairs import MAX_CHUNK_ELEMENTS

__all__ = ["ClassSummedCost", "soft_label_term", "soft_label_zero_term"]

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_label_term(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """RTMDet's soft-label classification cost of one class, elementwise:
    ``BCEWithLogits(z, y) * |y - sigmoid(z)|^2``."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return bce * (targets - torch.sigmoid(logits)).square()


def soft_label_zero_term(logits: torch.Tensor) -> torch.Tensor:
    """:func:`soft_label_term` at target 0: ``softplus(z) * sigmoid(z)^2``."""
    return F.softplus(logits) * torch.sigmoid(logits).square()


class ClassSummedCost:
    """``sum_c term(z_{p, c}, y_c)`` for pairs of a batch's points, ``y`` the pair's
    target at its class and 0 at the others.

    Args:
        pred_logits: (N, R, C) class logits.
        term: elementwise ``term(logits, targets)``, any float dtype.
        zero_term: ``term(logits, 0)``, when a cheaper form of it exists.
    """

    def __init__(self, pred_logits: torch.Tensor, term: Term,
                 zero_term: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.logits = pred_logits.reshape(-1, pred_logits.shape[-1])  # (N * R, C)
        self.term = term
        self.zero_term = zero_term or (lambda logits: term(logits, torch.zeros_like(logits)))
        self.negative_sum = torch.full(
            (len(self.logits),), float("nan"), dtype=torch.float64, device=pred_logits.device
        )  # (N * R,) cached all-zero-target sums; NaN = not computed yet
        self.known = torch.zeros(len(self.logits), dtype=torch.bool, device=pred_logits.device)

    def __call__(self, key: torch.Tensor, cls: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Costs (P,) float64 of pairs given by flat point key (P,), class (P,) and target
        of that class (P,)."""
        self._compute(key)
        own = self.logits.reshape(-1).index_select(0, key * self.logits.shape[1] + cls)
        own_negative = self.zero_term(own).double()  # as summed
        own = own.double()
        return (self.negative_sum.index_select(0, key) - own_negative
                + self.term(own, target.double()))

    def _compute(self, key: torch.Tensor) -> None:
        """Fills the all-zero-target sums of the given keys not known yet."""
        missing = torch.zeros_like(self.known)
        missing[key] = True
        missing &= ~self.known
        rows = missing.nonzero().squeeze(1)
        step = max(MAX_CHUNK_ELEMENTS // max(self.logits.shape[1], 1), 1)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            terms = self.zero_term(self.logits.index_select(0, chunk))
            self.negative_sum[chunk] = terms.sum(dim=1, dtype=torch.float64)
        self.known |= missing

