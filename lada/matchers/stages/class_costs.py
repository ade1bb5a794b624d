"""Class-summed costs of (point, GT) pairs without a (pairs, C) tensor (OTA, SimOTA).

A classification cost of a point p for a GT g of class c_g is a per-class term summed
over the C classes, the GT's class at target 1 and every other class at target 0:

    cost(p, g) = sum_c term(z_pc, [c = c_g])
               = sum_c term(z_pc, 0) - term(z_{p c_g}, 0) + term(z_{p c_g}, 1),

so it needs the point's all-zero sum once per point (``negative_class_sums``, (points, C)
work in row chunks, like the detector's own classification loss) and two scalar terms per
pair (``class_summed_pair_costs``). The C all-zero terms of every point, the bulk of the
work, are computed in the logits' precision (float32) and summed in float64; the two
terms of a pair in float64. A cost then agrees with a float64 evaluation to a few float32
steps of its terms (about 1e-7 relative).

A term is a callable ``term(logits, keys, target)``: logits (k, c), float32 or float64,
keys (k,) the flat point keys ``image * R + point`` of the rows (for a point's auxiliary
logit), target a float or a tensor broadcastable to the logits -> (k, c) in the logits'
dtype. ``focal_term`` is the sigmoid focal loss.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
from fvcore.nn import sigmoid_focal_loss

from .pairs import MAX_CHUNK_ELEMENTS

__all__ = ["ClassTerm", "class_summed_pair_costs", "focal_term", "negative_class_sums"]

ClassTerm = Callable[[torch.Tensor, torch.Tensor, Union[float, torch.Tensor]], torch.Tensor]


def focal_term(alpha: float = 0.25, gamma: float = 2.0) -> ClassTerm:
    """The sigmoid focal loss (alpha, gamma) of each logit against its target."""

    def term(logits: torch.Tensor, keys: torch.Tensor, target) -> torch.Tensor:
        target = torch.as_tensor(target, dtype=logits.dtype, device=logits.device)
        return sigmoid_focal_loss(logits, target.expand_as(logits), alpha=alpha, gamma=gamma)

    return term


def negative_class_sums(pred_logits: torch.Tensor, term: ClassTerm) -> torch.Tensor:
    """``sum_c term(z_pc, 0)`` of every row of pred_logits (K, C), K = N * R flat point
    keys -> (K,) float64: the terms in the logits' dtype, summed in float64, in chunks
    of rows of about ``MAX_CHUNK_ELEMENTS`` elements, so that the (rows, C)
    intermediates stay bounded."""
    num_rows, num_classes = pred_logits.shape
    rows_per_chunk = max(MAX_CHUNK_ELEMENTS // max(num_classes, 1), 1)
    sums = []
    for start in range(0, num_rows, rows_per_chunk):
        keys = torch.arange(start, min(start + rows_per_chunk, num_rows), device=pred_logits.device)
        logits = pred_logits[start : start + rows_per_chunk]
        sums.append(term(logits, keys, 0.0).sum(dim=1, dtype=torch.float64))
    return torch.cat(sums) if sums else pred_logits.new_zeros(0, dtype=torch.float64)


def class_summed_pair_costs(
    pred_logits: torch.Tensor,
    keys: torch.Tensor,
    classes: torch.Tensor,
    negative_sums: torch.Tensor,
    term: ClassTerm,
    own_target: Union[float, torch.Tensor] = 1.0,
) -> torch.Tensor:
    """``sum_c term(z_pc, y_c)`` of P pairs, ``y_c`` = ``own_target`` at the GT's class and
    0 elsewhere: pred_logits (K, C), the pairs' flat point keys (P,) and GT classes (P,),
    ``negative_class_sums`` of all K keys (K,), own_target 1.0 (one-hot) or (P,) soft
    targets -> (P,) float64."""
    num_classes = pred_logits.shape[1]
    own = pred_logits.reshape(-1).index_select(0, keys * num_classes + classes)[:, None]
    if isinstance(own_target, torch.Tensor):
        own_target = own_target.double()[:, None]
    own_negative = term(own, keys, 0.0).double()  # as in the sum
    own_target_term = term(own.double(), keys, own_target)
    return negative_sums.index_select(0, keys) - own_negative[:, 0] + own_target_term[:, 0]
