"""Quality scores of (point, GT) pairs, lower is better (docs/methods/README.md, "Conventions
shared by the methods"): the anchor
losses of PAA and LADA's Combined Loss of Anchor (CLA)."""
from __future__ import annotations

from typing import Tuple

import torch
from fvcore.nn import sigmoid_focal_loss
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from .geometry import clamp_inverted, paired_iou, side_distances

__all__ = ["CACHED_ELEMENTS", "REG_LOSSES", "anchor_losses", "anchor_losses_of_pairs",
           "constant_target_focal_losses", "deviation_loss", "one_hot_focal_losses"]

CACHED_ELEMENTS = 1 << 15
"""Logits per block of :func:`anchor_losses` (128 KiB of float32): the focal loss's
passes over a block stay in the CPU's cache. A block starts at a multiple of 64
elements, so every element takes the same (vectorised or not) evaluation of the sigmoid
as in one pass over all the logits."""

REG_LOSSES = ("giou", "iou")
"""The regression terms of the anchor losses: 1 - GIoU (PAA, LADA Eq. 5) or 1 - IoU
(LADA Table 7)."""


def anchor_losses(
    pred_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    reg_loss: str = "giou",
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Losses of P points each for its own GT: classification = sigmoid focal loss against
    the one-hot GT class **summed over the C classes** (PAA's practice, LADA Eq. 4);
    regression = ``reg_loss`` "giou" (1 - GIoU, Eq. 5) or "iou" (1 - IoU, LADA Table 7),
    inverted predicted boxes clamped as the official PAA code does. pred_logits (P, C), pred_boxes (P, 4), gt_boxes (P, 4), gt_classes (P,) ->
    cls (P,), reg (P,). The focal losses are fvcore's, bit for bit
    (:func:`one_hot_focal_losses`), summed in blocks of rows that stay in the CPU's
    cache (each row's sum is the same)."""
    rows = max(CACHED_ELEMENTS // max(pred_logits.shape[1], 1) // 64 * 64, 64)
    cls = [one_hot_focal_losses(logits, classes, focal_alpha, focal_gamma).sum(1)
           for logits, classes in zip(pred_logits.split(rows), gt_classes.split(rows))]
    cls = torch.cat(cls) if cls else pred_logits.new_zeros(0)
    return cls, _regression_loss(pred_boxes, gt_boxes, reg_loss)


def one_hot_focal_losses(
    logits: torch.Tensor, classes: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """fvcore's ``sigmoid_focal_loss(logits, one_hot(classes), alpha, gamma)``, (P, C),
    (P,) -> (P, C) float32, bit for bit, in half of its elementwise passes over the (P,
    C) logits (:func:`_focal_terms`)."""
    logits = logits.float()
    if not _exact_terms(alpha, gamma):
        target = F.one_hot(classes, logits.shape[1]).to(logits.dtype)
        return sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma)
    p, log_p = torch.sigmoid(logits), F.logsigmoid(logits)
    losses = _focal_terms(logits, p, log_p, 0, alpha, gamma)
    own = classes[:, None]
    positive = _focal_terms(logits.gather(1, own), p.gather(1, own), log_p.gather(1, own), 1,
                            alpha, gamma)
    return losses.scatter_(1, own, positive)


def constant_target_focal_losses(
    logits: torch.Tensor, target: int, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """fvcore's ``sigmoid_focal_loss(logits, full_like(logits, target), alpha, gamma)``
    for a target of 0 or 1, any shape, bit for bit: for float32 logits in half of its
    elementwise passes (:func:`_focal_terms`) where that is exact, fvcore's own otherwise
    (in float64, torch's log-sigmoid and BCE with logits round differently)."""
    if logits.dtype != torch.float32 or not _exact_terms(alpha, gamma):
        return sigmoid_focal_loss(logits, torch.full_like(logits, float(target)), alpha=alpha,
                                  gamma=gamma)
    return _focal_terms(logits, torch.sigmoid(logits), F.logsigmoid(logits), target, alpha,
                        gamma)


def _exact_terms(alpha: float, gamma: float) -> bool:
    """Whether :func:`_focal_terms` reproduces fvcore: alpha >= 0 and gamma = 2."""
    return alpha >= 0 and gamma == 2


def _focal_terms(
    logits: torch.Tensor, p: torch.Tensor, log_p: torch.Tensor, target: int, alpha: float,
    gamma: float,
) -> torch.Tensor:
    """fvcore's sigmoid focal loss of float32 ``logits`` against a constant ``target`` (0
    or 1), from their sigmoid ``p`` and log-sigmoid ``log_p``, bit for bit when
    :func:`_exact_terms`: with a 0/1 target, fvcore's products by the target and by one
    minus it are exact, leaving ``(1 - alpha) * ((x - log_p) * (1 - (1 - p))^gamma)``
    (target 0) and ``alpha * ((0 x - log_p) * (1 - p)^gamma)`` (target 1); a square is
    exact however it is evaluated. ``p`` and ``log_p`` must be computed on the tensor
    on which fvcore would compute them (a vectorised and a scalar evaluation of these
    functions may differ in the last bit), then gathered."""
    if target == 0:
        return (1 - alpha) * ((logits - log_p) * (1 - (1 - p)) ** gamma)
    return alpha * ((0 * logits - log_p) * (1 - p) ** gamma)


def anchor_losses_of_pairs(
    pred_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    point: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    reg_loss: str = "giou",
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`anchor_losses` of P (point, GT) pairs in which points repeat (a point inside
    several GT boxes), without the (P, C) focal losses: the loss summed over the C
    classes equals the point's all-negative sum, computed once per distinct point, minus
    its negative term at the GT's class plus its positive term there (summed in float64,
    so as exact as the direct float32 sum). pred_logits (R, C), pred_boxes (R, 4), point
    (P,) indices into R, gt_boxes (P, 4), gt_classes (P,) -> cls (P,), reg (P,) float32."""
    num_points, num_classes = pred_logits.shape
    present = torch.zeros(num_points, dtype=torch.bool, device=point.device)
    present[point] = True
    points = present.nonzero().squeeze(1)  # (U,) distinct points, ascending
    slot = torch.zeros(num_points, dtype=torch.long, device=point.device)
    slot[points] = torch.arange(len(points), device=point.device)
    inverse = slot.index_select(0, point)  # (P,) row of each pair's point among the U
    logits = pred_logits.index_select(0, points).float()  # (U, C)
    own = inverse * num_classes + gt_classes  # (P,) flat index of (point, GT class)
    own_logit = logits.reshape(-1).index_select(0, own)
    if _exact_terms(focal_alpha, focal_gamma):
        negative = torch.empty_like(logits)
        negative_sum = logits.new_empty(len(logits), dtype=torch.float64)
        rows = max(CACHED_ELEMENTS // max(num_classes, 1) // 64 * 64, 64)
        for start in range(0, len(logits), rows):  # blocks in the CPU's cache (anchor_losses)
            block = logits[start:start + rows]
            terms = _focal_terms(block, torch.sigmoid(block), F.logsigmoid(block), 0,
                                 focal_alpha, focal_gamma)
            negative[start:start + rows] = terms
            negative_sum[start:start + rows] = terms.double().sum(dim=1)
        own_positive = _focal_terms(own_logit, torch.sigmoid(own_logit), F.logsigmoid(own_logit),
                                    1, focal_alpha, focal_gamma)
    else:
        negative = sigmoid_focal_loss(logits, torch.zeros_like(logits), alpha=focal_alpha,
                                      gamma=focal_gamma)
        negative_sum = negative.double().sum(dim=1)
        own_positive = sigmoid_focal_loss(own_logit, torch.ones_like(own_logit),
                                          alpha=focal_alpha, gamma=focal_gamma)
    cls = (negative_sum.index_select(0, inverse) - negative.reshape(-1).index_select(0, own)
           + own_positive)
    own_boxes = pred_boxes.index_select(0, point).float()
    return cls.float(), _regression_loss(own_boxes, gt_boxes, reg_loss)


def _regression_loss(
    pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, reg_loss: str
) -> torch.Tensor:
    """1 - IoU ("iou") or 1 - GIoU ("giou", inverted predictions clamped) of paired boxes
    (P, 4), (P, 4) -> (P,)."""
    if reg_loss == "iou":
        return 1 - paired_iou(pred_boxes, gt_boxes)
    return generalized_box_iou_loss(clamp_inverted(pred_boxes), gt_boxes)


def deviation_loss(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """LADA Eq. 6-7: the point's deviation from the box centre
    ``dev = |l - r| / (l + r) + |t - b| / (t + b)`` and its loss ``max(dev - 1, 0)``.
    points (P, 2) inside boxes (P, 4) -> (P,)."""
    left, top, right, bottom = side_distances(points, boxes).unbind(dim=-1)
    deviation = (left - right).abs() / (left + right) + (top - bottom).abs() / (top + bottom)
    return (deviation - 1).clamp(min=0)
