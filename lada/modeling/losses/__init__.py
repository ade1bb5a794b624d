"""The training losses and what they consume.

- ``contract.py``: what a loss module is (``DetectionLoss``) and returns (``LossOutput``).
- ``targets.py``: the targets gathered from a ``MatchResult``, the only thing a loss
  reads of the assignment: dense per-point targets (hard matchers, with the matcher's
  quality target when it gives one), pairwise targets (soft matchers).
- ``classification.py``: the classification losses (focal, QFL, VFL) and soft targets.
- ``dense.py``: ``DenseDetectionLoss``, classification + box + auxiliary-branch losses
  over dense targets (``MODEL.FCOS.LOSS dense``).
- ``pairwise.py``: ``PairwiseWeightedLoss``, positive terms per (point, GT) pair and
  negative terms per (point, class) (``MODEL.FCOS.LOSS weighted_pairs``, DW).

Every loss module declares ``CONSUMES``, the kinds of ``MatchResult`` it can train
(``ResultKind``), and has ``targets(match, gt_boxes, gt_classes)``, whose result its
``forward(points, pred_logits, pred_boxes, pred_aux, targets)`` takes, returning a
``LossOutput``: the losses and the normalisers for the event storage.
"""
from torch import nn

from ...matchers import ResultKind, matcher_class

from .contract import DetectionLoss, LossOutput, consumed_kinds
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
    "consumed_kinds",
    "gather_pair_targets",
    "gather_targets",
    "loss_consuming",
    "loss_name",
]

LOSSES = {"dense": DenseDetectionLoss, "weighted_pairs": PairwiseWeightedLoss}
"""Values of ``MODEL.FCOS.LOSS`` (besides "auto") and their modules."""


def loss_consuming(kind: ResultKind) -> str:
    """The ``MODEL.FCOS.LOSS`` value whose module consumes results of ``kind``: the first
    of :data:`LOSSES` that declares it."""
    return next(name for name, loss in LOSSES.items() if kind in consumed_kinds(loss))


def loss_name(cfg) -> str:
    """``cfg.MODEL.FCOS.LOSS``, with "auto" resolved to the loss that consumes the results
    of ``MODEL.MATCHER.NAME`` (its class's ``METHOD.result``): "weighted_pairs" for a soft
    matcher (DW), else "dense"."""
    name = cfg.MODEL.FCOS.LOSS
    if name == "auto":
        return loss_consuming(matcher_class(cfg.MODEL.MATCHER.NAME).METHOD.result)
    if name not in LOSSES:
        raise ValueError(
            f"MODEL.FCOS.LOSS must be 'auto' or one of {tuple(LOSSES)}, got '{name}'"
        )
    return name


def check_loss_fits_matcher(loss: nn.Module, matcher) -> None:
    """Refuses a loss module that cannot consume the kind of result ``matcher`` declares
    (``METHOD.result``): the dense loss with a soft matcher, the pairwise loss with a hard
    one. ``LadaFCOS`` calls it when it is built, from a yacs config or a LazyConfig alike,
    so the mismatch never reaches a training step."""
    kind = type(matcher).METHOD.result
    if kind in consumed_kinds(loss):
        return
    names = {cls: name for name, cls in LOSSES.items()}
    given = names.get(type(loss), type(loss).__name__)
    raise ValueError(
        f"MODEL.FCOS.LOSS {given} cannot train MODEL.MATCHER.NAME {type(matcher).METHOD.name}, "
        f"whose results are {kind.value} (the loss consumes "
        f"{', '.join(sorted(k.value for k in consumed_kinds(loss)))}): set MODEL.FCOS.LOSS "
        f"{loss_consuming(kind)} (or auto)"
    )


def build_loss(cfg) -> nn.Module:
    """The loss module ``cfg.MODEL.FCOS.LOSS`` names ("auto": the matcher's)."""
    return LOSSES[loss_name(cfg)](cfg)
