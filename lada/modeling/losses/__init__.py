"""The training losses and what they consume.

- ``targets.py``: the targets gathered from a ``MatchResult``, the only thing a loss
  reads of the assignment: dense per-point targets (hard matchers), pairwise targets
  (soft matchers).
- ``classification.py``: the classification losses (focal, QFL, VFL) and soft targets.
- ``dense.py``: ``DenseDetectionLoss``, classification + box + auxiliary-branch losses
  over dense targets (``MODEL.FCOS.LOSS dense``).
- ``pairwise.py``: ``PairwiseWeightedLoss``, positive terms per (point, GT) pair and
  negative terms per (point, class) (``MODEL.FCOS.LOSS weighted_pairs``, DW).

Every loss module has ``targets(match, gt_boxes, gt_classes)``, whose result its
``forward(points, pred_logits, pred_boxes, pred_aux, targets)`` takes, and
``logged_normalizers`` for the event storage.
"""
from torch import nn

from .dense import DenseDetectionLoss
from .pairwise import PairwiseWeightedLoss
from .targets import DenseTargets, PairTargets, gather_pair_targets, gather_targets

__all__ = [
    "LOSSES",
    "DenseDetectionLoss",
    "DenseTargets",
    "PairTargets",
    "PairwiseWeightedLoss",
    "build_loss",
    "gather_pair_targets",
    "gather_targets",
]

LOSSES = {"dense": DenseDetectionLoss, "weighted_pairs": PairwiseWeightedLoss}
"""Values of ``MODEL.FCOS.LOSS`` and their modules."""


def build_loss(cfg) -> nn.Module:
    """The loss module named by ``cfg.MODEL.FCOS.LOSS``."""
    name = cfg.MODEL.FCOS.LOSS
    if name not in LOSSES:
        raise ValueError(f"MODEL.FCOS.LOSS must be one of {tuple(LOSSES)}, got '{name}'")
    return LOSSES[name](cfg)
