"""Losses of the FCOS-family detector, computed from dense targets (docs/methods/README.md,
"The losses that consume the results"):
focal, QFL, VFL or positives-only BCE classification, GIoU or squared-IoU box regression,
BCE on the auxiliary branch."""
from __future__ import annotations

from typing import Optional

import torch
from detectron2.config import configurable
from fvcore.nn import sigmoid_focal_loss_jit
from torch import nn
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from ...distributed import all_reduce_mean
from ...geometry import clamp_inverted, paired_iou
from ...matchers import MatchResult, ResultKind
from .classification import (
    CLS_LOSSES,
    positive_bce_loss,
    quality_focal_loss,
    soft_class_targets,
    varifocal_loss,
)
from .contract import LossOutput
from .targets import DenseTargets, centerness_targets, gather_targets, iou_quality, iou_targets

__all__ = ["DenseDetectionLoss"]

AUX_BRANCHES = ("centerness", "iou", "giou", "objectness", "none")
BOX_LOSSES = ("giou", "iou_squared")
BOX_WEIGHTINGS = ("none", "aux_target", "quality")
NORMALIZERS = ("ema", "num_pos", "quality_sum", "quality_sum_min1")
# MODEL.FCOS.LOSS_WITHOUT_QUALITY: what a step whose MatchResult carries no quality target
# trains ("iou": the IoU stands in for it; "focal_centerness": TOOD's initial losses).
WITHOUT_QUALITY = ("iou", "focal_centerness")
QUALITY_NORMALIZERS = ("quality_sum", "quality_sum_min1")
QUALITY_SUM_FLOOR = 1e-12
"""A ``quality_sum`` normaliser below this is replaced by 1 (TOOD's ``EPS``)."""


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got '{value}'")


class DenseDetectionLoss(nn.Module):
    """Per-point losses, each summed and divided by a normaliser:

    * ``ema``: moving average of the local positive count (detectron2 FCOS), kept in the
      ``loss_normalizer`` buffer so that it is checkpointed;
    * ``num_pos``: positives averaged over all workers, at least 1;
    * ``quality_sum``: the sum of the positives' quality targets (``iou_quality``)
      averaged over all workers, replaced by 1 only below 1e-12 (TOOD);
    * ``quality_sum_min1``: the same, at least 1 (RTMDet).

    With ``box_weighting="aux_target"`` each positive's box loss is weighted by its
    auxiliary target and divided by the all-worker mean of the targets' sum (ATSS);
    ``"quality"`` weights it by its quality target (``iou_quality``: the matcher's
    ``MatchResult.quality``, else the IoU of its predicted box) the same way (TOOD); with
    a ``quality_sum`` normaliser that sum gets the normaliser's floor.

    ``aux_branch="none"``: the head has no auxiliary branch and there is no auxiliary
    loss (TOOD, RTMDet; ``pred_aux`` is None).

    A step whose result carries no quality target (TAL's warm-up) trains, with
    ``without_quality="focal_centerness"``, TOOD's initial losses: focal classification
    with one-hot targets, each positive's GIoU loss weighted by its FCOS centerness
    target, and a ``quality_sum`` normaliser replaced by the positive count (the box loss
    by the centerness targets' sum), with the same floor; with ``"iou"`` (default) the
    IoU of the predicted box stands in for the quality target.

    Classification ``cls_loss``: "focal" (one-hot targets), "qfl" or "vfl" (soft
    targets: a positive's target is its quality target, ``iou_quality``), or "bce_iou"
    (YOLOX: BCE on the positives only, target one-hot x quality target; negatives get no
    classification loss, the objectness branch suppresses the background).

    Box loss ``box_loss``: "giou" (1 - GIoU) or "iou_squared" (YOLOX's ``IOUloss``,
    1 - IoU^2). Auxiliary branch ``aux_branch``: "centerness", "iou" and "giou" are
    trained on the positives against their target; "objectness" (YOLOX) at every point,
    target 1 at the positives and 0 elsewhere.

    Consumes hard results, with or without a quality target (``CONSUMES``).

    The normaliser of the step is returned as ``LossOutput.normalizers["normalizer"]``.

    The GIoU loss is torchvision's: the values of fvcore's (detectron2 FCOS) on valid
    boxes, without its assertion (a host sync) on inverted predicted boxes, which are
    clamped to empty boxes instead (official PAA code), so that the loss stays <= 2.
    """

    CONSUMES = frozenset({ResultKind.HARD, ResultKind.QUALITY})

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        aux_branch: str = "centerness",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cls_loss: str = "focal",
        qfl_beta: float = 2.0,
        vfl_alpha: float = 0.75,
        vfl_gamma: float = 2.0,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        aux_weight: float = 1.0,
        box_weighting: str = "none",
        box_loss: str = "giou",
        normalizer: str = "ema",
        ema_init: float = 300.0,
        ema_momentum: float = 0.9,
        without_quality: str = "iou",
    ):
        super().__init__()
        _check_choice("MODEL.FCOS.AUX_BRANCH", aux_branch, AUX_BRANCHES)
        _check_choice("MODEL.FCOS.CLS_LOSS", cls_loss, CLS_LOSSES)
        _check_choice("MODEL.FCOS.BOX_LOSS_WEIGHTING", box_weighting, BOX_WEIGHTINGS)
        _check_choice("MODEL.FCOS.BOX_LOSS", box_loss, BOX_LOSSES)
        _check_choice("MODEL.FCOS.NORMALIZER", normalizer, NORMALIZERS)
        _check_choice("MODEL.FCOS.LOSS_WITHOUT_QUALITY", without_quality, WITHOUT_QUALITY)
        if aux_branch == "none" and box_weighting == "aux_target":
            raise ValueError("MODEL.FCOS.BOX_LOSS_WEIGHTING aux_target needs an auxiliary branch; "
                             "MODEL.FCOS.AUX_BRANCH is none")
        if not 0 <= ema_momentum < 1:
            raise ValueError(f"MODEL.FCOS.NORMALIZER_EMA_MOMENTUM must be in [0, 1), got {ema_momentum}")
        self.num_classes = num_classes
        self.aux_branch = aux_branch
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.cls_loss = cls_loss
        self.qfl_beta = qfl_beta
        self.vfl_alpha = vfl_alpha
        self.vfl_gamma = vfl_gamma
        self.weights = {"cls": cls_weight, "box": box_weight, "aux": aux_weight}
        self.box_weighting = box_weighting
        self.box_loss = box_loss
        self.normalizer = normalizer
        self.ema_momentum = ema_momentum
        self.without_quality = without_quality
        self.register_buffer("loss_normalizer", torch.tensor(float(ema_init)))

    @classmethod
    def from_config(cls, cfg):
        fcos = cfg.MODEL.FCOS
        return {
            "num_classes": fcos.NUM_CLASSES,
            "aux_branch": fcos.AUX_BRANCH,
            "focal_alpha": fcos.FOCAL_LOSS_ALPHA,
            "focal_gamma": fcos.FOCAL_LOSS_GAMMA,
            "cls_loss": fcos.CLS_LOSS,
            "qfl_beta": fcos.QFL_BETA,
            "vfl_alpha": fcos.VFL_ALPHA,
            "vfl_gamma": fcos.VFL_GAMMA,
            "cls_weight": fcos.CLS_LOSS_WEIGHT,
            "box_weight": fcos.BOX_LOSS_WEIGHT,
            "aux_weight": fcos.AUX_LOSS_WEIGHT,
            "box_weighting": fcos.BOX_LOSS_WEIGHTING,
            "box_loss": fcos.BOX_LOSS,
            "normalizer": fcos.NORMALIZER,
            "ema_init": fcos.NORMALIZER_EMA_INIT,
            "ema_momentum": fcos.NORMALIZER_EMA_MOMENTUM,
            "without_quality": fcos.LOSS_WITHOUT_QUALITY,
        }

    def targets(self, match: MatchResult, gt_boxes, gt_classes) -> DenseTargets:
        """The dense targets of a hard ``match``."""
        return gather_targets(match, gt_boxes, gt_classes, self.num_classes)

    def forward(
        self,
        points: torch.Tensor,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        pred_aux: Optional[torch.Tensor],
        targets: DenseTargets,
    ) -> LossOutput:
        """points (R, 2); pred_logits (N, R, C); pred_boxes (N, R, 4) decoded;
        pred_aux (N, R) logits, None without an auxiliary branch -> the named scalar
        losses (weights applied) and the normaliser."""
        fg = targets.foreground
        initial = self._initial_losses(targets)
        fg_points = points[fg.nonzero()[:, 1]]
        fg_boxes = clamp_inverted(pred_boxes[fg].float())
        fg_targets = targets.boxes[fg].float()
        quality = None if initial else iou_quality(targets, pred_boxes)  # (P,)
        normalizer = self._normalizer(fg.sum().float(), quality)
        box_losses = self._box_losses(fg_boxes, fg_targets)
        aux_target = None
        if self.aux_branch != "none":
            aux_target = self._aux_target(fg_points, fg_boxes, fg_targets)
        if initial:  # TOOD's initial box loss
            weight = centerness_targets(fg_points, fg_targets)
        elif self.box_weighting == "none":
            weight = None
        else:
            weight = aux_target if self.box_weighting == "aux_target" else quality
        if weight is None:
            box_loss = box_losses.sum() / normalizer
        else:
            box_loss = (box_losses * weight).sum() / self._weight_sum_floor(
                all_reduce_mean(weight.sum().detach()))
        losses = {
            "loss_cls": self.weights["cls"]
            * self._classification(pred_logits, targets, quality)
            / normalizer,
            "loss_box_reg": self.weights["box"] * box_loss,
        }
        if aux_target is not None:
            aux_loss = self._aux_loss(pred_aux, fg, aux_target)
            losses[f"loss_{self.aux_branch}"] = self.weights["aux"] * aux_loss / normalizer
        return LossOutput(losses=losses, normalizers={"normalizer": normalizer.detach()})

    def _initial_losses(self, targets: DenseTargets) -> bool:
        """Whether this step trains TOOD's initial losses: its result carries no quality
        target and ``without_quality`` is "focal_centerness"."""
        return targets.quality is None and self.without_quality == "focal_centerness"

    def _box_losses(self, boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """Box loss of P positives: predicted boxes (P, 4), inverted ones clamped, and
        their GT boxes (P, 4) -> (P,)."""
        if self.box_loss == "iou_squared":
            return 1 - paired_iou(boxes, gt_boxes) ** 2  # YOLOX's IOUloss, type "iou"
        return generalized_box_iou_loss(boxes, gt_boxes)

    def _aux_target(
        self, points: torch.Tensor, boxes: torch.Tensor, gt_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Target of the auxiliary branch for P positives: points (P, 2), predicted boxes
        (P, 4), their GT boxes (P, 4) -> (P,), detached."""
        if self.aux_branch == "centerness":
            return centerness_targets(points, gt_boxes)
        if self.aux_branch == "iou":
            return iou_targets(boxes, gt_boxes)
        if self.aux_branch == "objectness":
            return torch.ones_like(boxes[:, 0])
        giou = 1 - generalized_box_iou_loss(boxes.detach(), gt_boxes)
        return giou.clamp(min=0)  # max(GIoU, 0): MMMC section 4.1

    def _aux_loss(
        self, pred_aux: torch.Tensor, fg: torch.Tensor, aux_target: torch.Tensor
    ) -> torch.Tensor:
        """BCE of the auxiliary logits (N, R): at the positives against ``aux_target``
        (P,), or, for "objectness", at every point against the foreground mask (N, R)."""
        if self.aux_branch == "objectness":
            return F.binary_cross_entropy_with_logits(pred_aux.float(), fg.float(), reduction="sum")
        return F.binary_cross_entropy_with_logits(pred_aux[fg].float(), aux_target, reduction="sum")

    def _classification(
        self, pred_logits: torch.Tensor, targets: DenseTargets, quality: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """The summed classification loss; ``quality`` (P,): the positives' soft targets of
        QFL / VFL, None on a step of TOOD's initial losses (focal loss)."""
        if self.cls_loss == "focal" or quality is None:
            one_hot = F.one_hot(targets.labels, self.num_classes + 1)[..., :-1]
            return sigmoid_focal_loss_jit(
                pred_logits.float(),
                one_hot.float(),
                alpha=self.focal_alpha,
                gamma=self.focal_gamma,
                reduction="sum",
            )
        if self.cls_loss == "bce_iou":
            fg = targets.foreground
            return positive_bce_loss(pred_logits[fg], targets.labels[fg], quality).sum()
        soft = soft_class_targets(targets.labels, targets.foreground, quality, self.num_classes)
        if self.cls_loss == "qfl":
            return quality_focal_loss(pred_logits, soft, beta=self.qfl_beta).sum()
        return varifocal_loss(pred_logits, soft, alpha=self.vfl_alpha, gamma=self.vfl_gamma).sum()

    def _normalizer(self, num_pos: torch.Tensor, quality: Optional[torch.Tensor]) -> torch.Tensor:
        """The step's normaliser from the local positive count and, for a
        ``quality_sum`` normaliser, the positives' quality targets (P,) (None: TOOD's
        initial losses, normalised by the count instead)."""
        if self.normalizer in QUALITY_NORMALIZERS:
            total = num_pos if quality is None else quality.sum().detach()
            return self._weight_sum_floor(all_reduce_mean(total))
        if self.normalizer == "num_pos":
            return all_reduce_mean(num_pos).clamp(min=1.0)
        if self.training:
            momentum = self.ema_momentum
            self.loss_normalizer.mul_(momentum).add_((1 - momentum) * num_pos.clamp(min=1.0))
        return self.loss_normalizer.clone()

    def _weight_sum_floor(self, total: torch.Tensor) -> torch.Tensor:
        """A sum of weights (all workers' mean) as a divisor: a ``quality_sum``
        normaliser's floor (below 1e-12 -> 1; ``quality_sum_min1``: at least 1), else at
        least 1e-6 (ATSS's weighted GIoU)."""
        if self.normalizer == "quality_sum":
            return torch.where(total < QUALITY_SUM_FLOOR, torch.ones_like(total), total)
        if self.normalizer == "quality_sum_min1":
            return total.clamp(min=1.0)
        return total.clamp(min=1e-6)
