"""Quality-aware classification losses with soft targets (docs/methods/README.md, "The
losses that consume the results"): QFL of GFL, VFL of VarifocalNet and YOLOX's BCE on
the positives. Letters: N images, R anchor points, C classes, P positives.

Both are elementwise functions of logits and soft targets in [0, 1]: a positive's
target is the IoU of its prediction with its GT at the GT's class, 0 elsewhere. They
run in float32 from the logits (``binary_cross_entropy_with_logits``, never ``log`` of
a probability), so logits of +-50 and float16 / bfloat16 inputs give finite losses.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["CLS_LOSSES", "positive_bce_loss", "quality_focal_loss", "soft_class_targets",
           "varifocal_loss"]

CLS_LOSSES = ("focal", "qfl", "vfl", "bce_iou")
"""Values of ``MODEL.FCOS.CLS_LOSS``: sigmoid focal loss (hard targets), QFL, VFL, BCE on
the positives (YOLOX)."""


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Quality Focal Loss (Li et al., GFL, NeurIPS 2020, "Quality Focal Loss"), elementwise:
    ``QFL(s) = -|y - s|^beta ((1 - y) log(1 - s) + y log(s))``, ``s = sigmoid(logit)``,
    i.e. the binary cross-entropy in its general (soft-target) form scaled by
    ``|y - s|^beta``; no alpha. For a negative (``y = 0``) it is focal loss's negative
    term without alpha. The scale is not detached (as GFL's code).
    logits (..., C), targets (..., C) in [0, 1] -> (..., C) float32."""
    logits, targets = logits.float(), targets.float()
    scale = (targets - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * scale


def varifocal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:
    """Varifocal Loss (Zhang et al., VarifocalNet, CVPR 2021, "Varifocal Loss"), elementwise with
    ``p = sigmoid(logit)``:
    ``-q (q log p + (1 - q) log(1 - p))`` where the target ``q > 0`` (positives,
    weighted by their own target), ``-alpha p^gamma log(1 - p)`` where ``q = 0``
    (negatives, focal down-weighting). **[reading]** The case split is on ``q``, as the
    paper's formula: a positive whose prediction misses its GT (IoU 0) is treated as a
    negative, as VarifocalNet's code does. The weight of negatives is not detached.
    logits (..., C), targets (..., C) in [0, 1] -> (..., C) float32."""
    logits, targets = logits.float(), targets.float()
    negative_weight = alpha * logits.sigmoid().pow(gamma)
    weight = torch.where(targets > 0, targets, negative_weight)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight


def positive_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, quality: torch.Tensor
) -> torch.Tensor:
    """YOLOX's classification loss, elementwise over the P positives only: BCE with logits
    against the target ``quality`` (detached) at the positive's class and 0 at the other
    classes (YOLOX: one-hot x the IoU of the matched pair). Background points get no
    classification loss (the objectness branch learns them). logits (P, C), labels (P,)
    long, quality (P,) -> (P, C) float32."""
    logits = logits.float()
    targets = torch.zeros_like(logits)
    targets[torch.arange(len(labels), device=labels.device), labels] = quality.detach().float()
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def soft_class_targets(
    labels: torch.Tensor, foreground: torch.Tensor, quality: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Dense soft targets: each foreground point's quality at its class, 0 elsewhere.
    labels (N, R) long, foreground (N, R) bool, quality (P,) for the P foreground
    points in row-major order -> (N, R, C) float32."""
    if quality.shape != (int(foreground.sum()),):
        raise ValueError(
            f"soft_class_targets: quality must hold one value per foreground point "
            f"({int(foreground.sum())}), got shape {tuple(quality.shape)}"
        )
    targets = torch.zeros((*labels.shape, num_classes), dtype=torch.float32, device=labels.device)
    targets[foreground, labels[foreground]] = quality.detach().float()
    return targets
