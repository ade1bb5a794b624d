"""``ciou_atss``: dynamic label assignment with combined IoUs (Zhang et al., "Dynamic
Label Assignment for Object Detection by Combining Predicted and Anchor IoUs";
docs/methods/ciou_atss.md). "CIoU" is the *combined* IoU = anchor-box IoU + predicted-box IoU, not
Complete-IoU."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import MatchInputs, MatchResult
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import assign_candidates_to_best_gt
from ..stages.candidates import topk_closest_per_level
from ..stages.divisions import mean_plus_std_threshold
from ..stages.geometry import anchor_boxes, is_inside, paired_iou, rows_at
from ..validation import require_nonnegative, require_one_of, require_positive, require_positive_int

__all__ = ["CIoUATSSMatcher", "scheduled_weight"]

SCHEDULES = ("none", "d_up", "d_down")
THRESHOLDS = ("sum_std", "combined_std")


def scheduled_weight(weight: float, schedule: str, iteration: int, max_iter: int) -> float:
    """Table III's dynamic weights: ``weight`` times 1 ("none"), ``D_up = iteration /
    max_iter`` ("d_up") or ``D_down = 1 - iteration / max_iter`` ("d_down")."""
    if schedule == "none":
        return weight
    if max_iter < 1 or not 0 <= iteration <= max_iter:
        raise ValueError(
            f"ciou_atss weight schedule '{schedule}' needs 0 <= iteration <= max_iter and "
            f"max_iter >= 1, got iteration {iteration}, max_iter {max_iter}"
        )
    progress = iteration / max_iter
    return weight * (progress if schedule == "d_up" else 1.0 - progress)


@register_matcher
class CIoUATSSMatcher(BatchMatcher):
    """Dynamic CIoU-ATSS (paper section III-B and Fig. 1, as the authors' code):

    1. candidates: as ATSS, per level the ``topk`` points closest to the GT centre;
    2. scores: AIoU = IoU of the candidate's anchor box (side ``anchor_scale * stride``)
       with the GT, PIoU = IoU of its detached decoded predicted box with the GT;
       combined = ``a * AIoU + p * PIoU``, ``a`` and ``p`` the anchor and predicted
       weights, each times its schedule (Table III);
    3. threshold per GT over its candidates (unbiased stds):
       ``"sum_std"`` (authors' code) = ``(mean(a AIoU) + mean(p PIoU)) + (std(a AIoU) +
       std(p PIoU))`` = ``a (mean + std)(AIoU) + p (mean + std)(PIoU)`` for ``a, p >= 0``
       **[reading: the weights scale each IoU before its statistics; the code has weight
       1]**; ``"combined_std"`` = mean + std of the combined score;
    4. positive: combined >= threshold and the point inside the GT;
    5. a point positive for several GTs goes to its largest combined score (the code's
       argmax over the combined IoUs).

    Its QFL/VFL classification target, each positive's PIoU with its GT, is the dense
    loss's soft target (``lada/modeling/losses/targets.py::iou_quality``).

    With ``p = 0`` this is ATSS. Early in training predicted boxes are poor, so the
    assignment starts close to ATSS (section III-B).

    Arguments (keys ``MODEL.MATCHER.CIOU_ATSS.*``):
        topk: closest points per level (9).
        anchor_scale: a point's anchor box is the square of ``anchor_scale`` strides (8).
        anchor_weight, pred_weight: ``a`` and ``p`` (paper: 1 and 1; Table III: 0.5, 1.5).
        anchor_weight_schedule, pred_weight_schedule: the schedule multiplying each
            weight (Table III): "none", "d_up" (iteration / max_iter) or "d_down"
            (1 - iteration / max_iter).
        threshold: "sum_std" or "combined_std" (step 3).
    """

    METHOD = MethodSpec(name="ciou_atss", detector={
        "AUX_BRANCH": "iou", "CLS_LOSS": "qfl", "BOX_BIAS_INIT": 4.0, "NORMALIZER": "num_pos",
        "BOX_LOSS_WEIGHTING": "aux_target", "SCORE_THRESH_ON": "cls",
    })  # QFL, IoU branch, boxes start as the 8-stride anchors

    @configurable
    def __init__(
        self,
        *,
        topk: int = 9,
        anchor_scale: float = 8.0,
        anchor_weight: float = 1.0,
        pred_weight: float = 1.0,
        anchor_weight_schedule: str = "none",
        pred_weight_schedule: str = "none",
        threshold: str = "sum_std",
    ):
        require_positive_int("topk", topk)
        require_positive("anchor_scale", anchor_scale)
        require_nonnegative("anchor_weight", anchor_weight)
        require_nonnegative("pred_weight", pred_weight)
        require_one_of("anchor_weight_schedule", anchor_weight_schedule, SCHEDULES)
        require_one_of("pred_weight_schedule", pred_weight_schedule, SCHEDULES)
        require_one_of("threshold", threshold, THRESHOLDS)
        self.topk = int(topk)
        self.anchor_scale = float(anchor_scale)
        self.anchor_weight = float(anchor_weight)
        self.pred_weight = float(pred_weight)
        self.anchor_weight_schedule = anchor_weight_schedule
        self.pred_weight_schedule = pred_weight_schedule
        self.threshold = threshold

    def weights(self, iteration: int, max_iter: int) -> tuple[float, float]:
        """The anchor and predicted weights at ``iteration`` of ``max_iter``."""
        return (
            scheduled_weight(self.anchor_weight, self.anchor_weight_schedule, iteration, max_iter),
            scheduled_weight(self.pred_weight, self.pred_weight_schedule, iteration, max_iter),
        )

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        return MatchResult(gt_index=gts.local_gt_index(self._gt_of_keys(inputs, gts)))

    def _gt_of_keys(self, inputs: MatchInputs, gts: BatchGTs) -> torch.Tensor:
        """Steps 1-5 for the batch's M >= 1 GT boxes at once: (N * R,) batch GT index of
        each flat point key, or ``BACKGROUND``."""
        points, gt_boxes = inputs.points, gts.boxes.float()
        anchor_weight, pred_weight = self.weights(inputs.iteration, inputs.max_iter)
        candidates = topk_closest_per_level(
            points, inputs.num_points_per_level, gt_boxes, self.topk
        )  # (M, K)
        rows = torch.arange(len(gts), device=candidates.device)[:, None]
        keys = gts.keys(rows, candidates)  # (M, K) flat keys image * R + point
        anchors = anchor_boxes(points, inputs.strides, self.anchor_scale)
        anchor_iou = paired_iou(rows_at(anchors, candidates), gt_boxes[:, None])  # (M, K)
        pred_boxes = rows_at(inputs.pred_boxes.flatten(0, 1).float(), keys)
        pred_iou = paired_iou(pred_boxes, gt_boxes[:, None])  # (M, K)
        combined = anchor_weight * anchor_iou + pred_weight * pred_iou
        if self.threshold == "sum_std":
            threshold = anchor_weight * mean_plus_std_threshold(anchor_iou) + (
                pred_weight * mean_plus_std_threshold(pred_iou)
            )  # (M, 1)
        else:
            threshold = mean_plus_std_threshold(combined)
        positive = combined >= threshold
        positive &= is_inside(rows_at(points, candidates), gt_boxes[:, None])
        return assign_candidates_to_best_gt(
            keys, combined, positive, gts.num_images * gts.num_points
        )
