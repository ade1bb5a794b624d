"""Quality scores of (point, GT) pairs, lower is better (spec section 1): the anchor
losses of PAA and LADA's Combined Loss of Anchor (CLA)."""
from __future__ import annotations

from typing import Tuple

import torch
from fvcore.nn import sigmoid_focal_loss
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from .geometry import clamp_inverted, paired_iou, side_distances

__all__ = ["anchor_losses", "deviation_loss"]


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
    cls (P,), reg (P,)."""
    one_hot = F.one_hot(gt_classes, pred_logits.shape[1]).to(pred_logits.dtype)
    cls = sigmoid_focal_loss(pred_logits, one_hot, alpha=focal_alpha, gamma=focal_gamma).sum(1)
    if reg_loss == "iou":
        return cls, 1 - paired_iou(pred_boxes, gt_boxes)
    return cls, generalized_box_iou_loss(clamp_inverted(pred_boxes), gt_boxes)


def deviation_loss(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """LADA Eq. 6-7: the point's deviation from the box centre
    ``dev = |l - r| / (l + r) + |t - b| / (t + b)`` and its loss ``max(dev - 1, 0)``.
    points (P, 2) inside boxes (P, 4) -> (P,)."""
    left, top, right, bottom = side_distances(points, boxes).unbind(dim=-1)
    deviation = (left - right).abs() / (left + right) + (top - bottom).abs() / (top + bottom)
    return (deviation - 1).clamp(min=0)
