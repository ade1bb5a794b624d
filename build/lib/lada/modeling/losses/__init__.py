"""The training losses and what they consume.

- ``contract.py``: what a loss module is (``DetectionLoss``) and returns (``LossOutput``).
- ``targets.py``: the targets gathered from a ``MatchResult``, the only thing a loss
  reads of the assignment: dense per-point targets (hard matchers), pairwise targets
  (soft matchers).
- ``classification.py``: the classification losses (focal, QFL, VFL) and soft targets.
- ``dense.py``: ``DenseDetectionLoss``, classification + box + auxiliary-branch losses
  over dense targets (``MODEL.FCOS.LOSS dense``).
- ``pairwise.py``: ``PairwiseWeightedLoss``, positive terms per (point, GT) pair and
  negative terms per (point, class) (``MODEL.FCOS.LOSS weighted_pairs``, DW).

Every loss module has ``targets(match, gt_boxes, gt_classes)``, whose result its
``forward(points, pred_logits, pred_boxes, pred_aux, targets)`` takes, returning a
``LossOutput``: the losses and the normalisers for the event storage.
"""
from torch import nn

from ...matchers.registry import gives_soft_results

from .contract import DetectionLoss, LossOutput
from .dense import DenseDetectionLoss
from .pairwise import PairwiseWeightedLoss
from .targets import DenseTargets, PairTargets, gather_pair_targets, gather_targets

__all__ = [
    "LOSSES",
    "DenseDetectionLoss",
    "DenseTargets",
    "DetectionLoss",
    "LossOutput",
    "PairTargets",
    "PairwiseWeightedLoss",
    "build_loss",
    "check_loss_fits_matcher",
    "loss_name",
    "gather_pair_targets",
    "gather_targets",
]

LOSSES = {"dense": DenseDetectionLoss, "weighted_pairs": PairwiseWeightedLoss}
"""Values of ``MODEL.FCOS.LOSS`` (besides "auto") and their modules."""


def _loss_consuming(matcher_name: str) -> str:
    """The ``MODEL.FCOS.LOSS`` value whose module consumes matcher ``matcher_name``'s
    kind of result."""
    return "weighted_pairs" if gives_soft_results(matcher_name) else "dense"


def loss_name(cfg) -> str:
    """``cfg.MODEL.FCOS.LOSS``, with "auto" resolved to the loss that consumes the
    matcher's results: "weighted_pairs" for a soft matcher (its class declares
    ``SOFT = True``: DW), else "dense"."""
    name = cfg.MODEL.FCOS.LOSS
    if name == "auto":
        return _loss_consuming(cfg.MODEL.MATCHER.NAME)
    if name not in LOSSES:
        raise ValueError(
            f"MODEL.FCOS.LOSS must be 'auto' or one of {tuple(LOSSES)}, got '{name}'"
        )
    return name


def check_loss_fits_matcher(cfg) -> None:
    """Refuses, when the model is built, an explicit ``MODEL.FCOS.LOSS`` that cannot
    consume the results of ``MODEL.MATCHER.NAME`` ("dense" with a soft matcher,
    "weighted_pairs" with a hard one), instead of failing at the first training step."""
    name = loss_name(cfg)
    needed = _loss_consuming(cfg.MODEL.MATCHER.NAME)
    if name != needed:
        kind = "soft (pairwise weights)" if needed == "weighted_pairs" else "hard (one GT per point)"
        raise ValueError(
            f"MODEL.FCOS.LOSS {name} cannot train MODEL.MATCHER.NAME {cfg.MODEL.MATCHER.NAME}, "
            f"whose results are {kind}: set MODEL.FCOS.LOSS {needed} (or auto)"
        )


def build_loss(cfg) -> nn.Module:
    """The loss module ``cfg.MODEL.FCOS.LOSS`` names ("auto": the matcher's)."""
    return LOSSES[loss_name(cfg)](cfg)
