"""The loss of soft pairwise assignments (``MODEL.FCOS.LOSS weighted_pairs``): DW's
loss (DW paper Eq. 1, 11-12; docs/methods/dw.md, "Loss"), read from the ``PairWeights``
of a soft ``MatchResult`` whatever matcher set them. Letters: N images, R points, C classes,
P positive (point, GT) pairs."""
from __future__ import annotations

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from ...distributed import all_reduce_mean
from ...geometry import clamp_inverted
from ...matchers import MatchResult
from .contract import LossOutput
from .targets import PairTargets, gather_pair_targets

__all__ = ["PairwiseWeightedLoss", "log_joint_score"]


def log_joint_score(cls_logits: torch.Tensor, aux_logits: torch.Tensor):
    """``ln s`` and ``ln(1 - s)`` of the joint score ``s = sigmoid(a) * sigmoid(b)`` from
    the logits (broadcast), without forming ``s``: ``ln s = logsigmoid(a) +
    logsigmoid(b)``; ``1 - s = sigmoid(-a) + sigmoid(a) sigmoid(-b)``, so ``ln(1 - s) =
    logaddexp(logsigmoid(-a), logsigmoid(a) + logsigmoid(-b))``. Both stay finite with
    finite gradients at any finite logits (the authors' code takes BCE of ``s`` with
    logs clamped at -100)."""
    log_a, log_b = F.logsigmoid(cls_logits), F.logsigmoid(aux_logits)
    log_s = log_a + log_b
    log_not_s = torch.logaddexp(F.logsigmoid(-cls_logits), log_a + F.logsigmoid(-aux_logits))
    return log_s, log_not_s


class PairwiseWeightedLoss(nn.Module):
    """Soft-assignment loss on the joint score ``s = sigmoid(cls) * sigmoid(aux)``
    (DW section 3.5: the class score times the centerness; the auxiliary branch has no
    loss of its own and learns through ``s``), in float32 with autocast off:

    * ``loss_cls_pos`` = ``pos_cls_weight * sum_pairs w * -ln(s_pair) / n_pos``, with
      ``s_pair`` the score of the pair's point at its GT's class;
    * ``loss_box_reg`` = ``box_weight * sum_pairs w * GIoU_loss(box, GT) / n_pos``;
    * ``loss_cls_neg`` = ``neg_weight * sum_{N, R, C} w_neg * s^neg_power * -ln(1 - s) / n_neg``
      (``I_neg = s^gamma2`` of Eq. 7 is not detached, as in the authors' code);

    ``w`` and ``w_neg`` are the matcher's detached weights; ``n_pos`` and ``n_neg`` its
    normalisers averaged over all workers, each at least 1, returned as
    ``LossOutput.normalizers`` "normalizer" and "normalizer_neg". Defaults are the authors'
    DW code: positive classification x0.25, box x1.25 (its ``0.25 * BCE(exp(-5 L), 1)``
    = ``1.25 L``), negative x1; the paper's text has 1, 5 (Eq. 11's beta), 1.
    """

    @configurable
    def __init__(
        self,
        *,
        pos_cls_weight: float = 0.25,
        box_weight: float = 1.25,
        neg_weight: float = 1.0,
        neg_power: float = 2.0,
    ):
        super().__init__()
        for key, value in (("POS_CLS_WEIGHT", pos_cls_weight), ("BOX_WEIGHT", box_weight),
                           ("NEG_WEIGHT", neg_weight), ("NEG_POWER", neg_power)):
            if not value >= 0:
                raise ValueError(f"MODEL.FCOS.WEIGHTED_PAIRS.{key} must be >= 0, got {value}")
        self.weights = {"cls_pos": pos_cls_weight, "box": box_weight, "cls_neg": neg_weight}
        self.neg_power = neg_power

    @classmethod
    def from_config(cls, cfg):
        pairs = cfg.MODEL.FCOS.WEIGHTED_PAIRS
        return {
            "pos_cls_weight": pairs.POS_CLS_WEIGHT,
            "box_weight": pairs.BOX_WEIGHT,
            "neg_weight": pairs.NEG_WEIGHT,
            "neg_power": pairs.NEG_POWER,
        }

    def targets(self, match: MatchResult, gt_boxes, gt_classes) -> PairTargets:
        """The pairwise targets of a soft ``match``; a hard one is refused."""
        return gather_pair_targets(match, gt_boxes, gt_classes)

    def forward(
        self,
        points: torch.Tensor,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        pred_aux: torch.Tensor,
        targets: PairTargets,
    ) -> LossOutput:
        """points (R, 2) (unused: the pairs name their points); pred_logits (N, R, C);
        pred_boxes (N, R, 4) decoded; pred_aux (N, R) logits -> the named scalar losses
        and the two normalisers."""
        with torch.autocast(pred_logits.device.type, enabled=False):
            logits, aux = pred_logits.float(), pred_aux.float()
            pos_normalizer = all_reduce_mean(targets.pos_normalizer.float()).clamp(min=1.0)
            neg_normalizer = all_reduce_mean(targets.neg_normalizer.float()).clamp(min=1.0)
            image, point, weight = targets.image, targets.point, targets.weight.float()
            log_s_pair, _ = log_joint_score(logits[image, point, targets.labels], aux[image, point])
            box_losses = generalized_box_iou_loss(
                clamp_inverted(pred_boxes[image, point].float()), targets.boxes.float()
            )
            log_s, log_not_s = log_joint_score(logits, aux[..., None])
            negative = targets.neg_weight.float() * torch.exp(self.neg_power * log_s) * -log_not_s
            losses = {
                "loss_cls_pos": self.weights["cls_pos"] * (weight * -log_s_pair).sum() / pos_normalizer,
                "loss_box_reg": self.weights["box"] * (weight * box_losses).sum() / pos_normalizer,
                "loss_cls_neg": self.weights["cls_neg"] * negative.sum() / neg_normalizer,
            }
            normalizers = {"normalizer": pos_normalizer, "normalizer_neg": neg_normalizer}
        return LossOutput(losses=losses, normalizers=normalizers)
