"""Class-summed costs of (point, GT) pairs without a (pairs, C) tensor (OTA, SimOTA, DSL).

A classification cost of a point p for a GT g of class c_g is a per-class term summed
over the C classes, the GT's class at its target ``y`` (1 for one-hot, or a soft label)
and every other class at target 0:

    cost(p, g) = sum_c term(z_pc, y_c)
               = sum_c term(z_pc, 0) - term(z_{p c_g}, 0) + term(z_{p c_g}, y),

so it needs the point's all-zero sum once per point (computed when first asked for, in
blocks of rows that stay in the CPU's cache, ``scores.CACHED_ELEMENTS``) and two scalar
terms per pair. The C all-zero terms of every point, the bulk of the work, are computed
in the logits' precision (float32) and summed in float64; the two terms of a pair in
float64. A cost then agrees with a float64 evaluation to a few float32 steps of its
terms (below 1e-6 relative). The all-zero sum is itself OTA's background cost.

A term is a callable ``term(logits, keys, target)``: logits (k, c), float32 or float64,
keys (k,) the flat point keys ``image * R + point`` of the rows (for a term that reads
the point's auxiliary logit, SimOTA's), target the float 0.0 (where a term may use a
cheaper form) or 1.0, or a tensor broadcastable to the logits -> (k, c) in the logits'
dtype. :func:`focal_term` is OTA's, :func:`soft_label_term` RTMDet's.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from fvcore.nn import sigmoid_focal_loss
from torch.nn import functional as F

from .scores import CACHED_ELEMENTS, constant_target_focal_losses

__all__ = ["ClassSummedCost", "ClassTerm", "focal_term", "soft_label_term"]

Target = Union[float, torch.Tensor]
ClassTerm = Callable[[torch.Tensor, torch.Tensor, Target], torch.Tensor]


def focal_term(alpha: float = 0.25, gamma: float = 2.0) -> ClassTerm:
    """The sigmoid focal loss (alpha, gamma) of each logit against its target (OTA);
    fvcore's, bit for bit (at a constant 0 or 1 in fewer passes,
    ``scores.constant_target_focal_losses``)."""

    def term(logits: torch.Tensor, keys: torch.Tensor, target: Target) -> torch.Tensor:
        if isinstance(target, float) and target in (0.0, 1.0):
            return constant_target_focal_losses(logits, int(target), alpha, gamma)
        target = torch.as_tensor(target, dtype=logits.dtype, device=logits.device)
        return sigmoid_focal_loss(logits, target.expand_as(logits), alpha=alpha, gamma=gamma)

    return term


def soft_label_term(logits: torch.Tensor, keys: torch.Tensor, target: Target) -> torch.Tensor:
    """RTMDet's soft-label classification cost of each logit, ``BCEWithLogits(z, y) *
    |y - sigmoid(z)|^2``; at target 0 as ``softplus(z) * sigmoid(z)^2``."""
    if isinstance(target, float) and target == 0.0:
        return F.softplus(logits) * torch.sigmoid(logits).square()
    target = torch.as_tensor(target, dtype=logits.dtype, device=logits.device).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce * (target - torch.sigmoid(logits)).square()


class ClassSummedCost:
    """``sum_c term(z_{p, c}, y_c)`` for pairs of a batch's points, ``y`` the pair's
    target at its GT's class and 0 at the others (module docstring).

    Args:
        pred_logits: (N, R, C) class logits (or (N * R, C), rows by flat key).
        term: the per-class term (``ClassTerm``).
    """

    def __init__(self, pred_logits: torch.Tensor, term: ClassTerm):
        self.logits = pred_logits.reshape(-1, pred_logits.shape[-1])  # (K, C), K = N * R
        self.term = term
        self._negative_sum = torch.full(
            (len(self.logits),), float("nan"), dtype=torch.float64, device=pred_logits.device
        )  # (K,) all-zero-target sums, cached; NaN = not computed yet
        self._known = torch.zeros(len(self.logits), dtype=torch.bool, device=pred_logits.device)

    def negative_sums(self, keys: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sum_c term(z_pc, 0)`` (float64) of the given flat keys (P,) -> (P,), or of
        every point -> (K,) when ``keys`` is None."""
        missing = ~self._known
        if keys is not None:
            missing &= torch.zeros_like(self._known).index_fill_(0, keys, True)
        rows = missing.nonzero().squeeze(1)
        step = max(CACHED_ELEMENTS // max(self.logits.shape[1], 1) // 64 * 64, 64)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            terms = self.term(self.logits.index_select(0, chunk), chunk, 0.0)
            self._negative_sum[chunk] = terms.sum(dim=1, dtype=torch.float64)
        self._known |= missing
        return self._negative_sum if keys is None else self._negative_sum.index_select(0, keys)

    def __call__(
        self, keys: torch.Tensor, classes: torch.Tensor, target: Target = 1.0
    ) -> torch.Tensor:
        """Costs (P,) float64 of pairs given by flat point key (P,) and GT class (P,), at
        ``target`` (1.0: one-hot; or (P,) soft targets of the GT's class)."""
        sums = self.negative_sums(keys)
        num_classes = self.logits.shape[1]
        own = self.logits.reshape(-1).index_select(0, keys * num_classes + classes)[:, None]
        if isinstance(target, torch.Tensor):
            target = target.double()[:, None]
        own_negative = self.term(own, keys, 0.0).double()[:, 0]  # as in the sum
        return sums - own_negative + self.term(own.double(), keys, target)[:, 0]
