"""Candidate building shared by PAA and LADA, for the whole batch at once: the
preliminary IoU match and the anchor losses of every matched point for its own GT, then
per-level candidates per GT."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from ..contract import BACKGROUND, MatchInputs
from .batch import BatchGTs
from .geometry import anchor_boxes, paired_iou
from .priors import lowest_per_gt_and_level, preliminary_iou_match
from .scores import anchor_losses

__all__ = ["MatchedPoints", "match_and_score_points", "per_level_candidates"]

REG_LOSSES = ("giou", "iou")


@dataclass
class MatchedPoints:
    """The batch after the preliminary match; points are flat keys ``image * R + point``
    of the batch's N * R points, GTs batch indices (``BatchGTs``); P = matched points.

    Attributes:
        point_gt: (N * R,) preliminary GT of every point, or ``BACKGROUND``.
        key: (P,) keys of the matched points, ascending.
        gt: (P,) the GT of each matched point.
        cls, reg: (P,) their classification and regression losses for their GT.
        anchor_iou: (P,) IoU of their anchor box with their GT.
    """

    point_gt: torch.Tensor
    key: torch.Tensor
    gt: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor
    anchor_iou: torch.Tensor

    def dense(self, values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N * R,) point_gt restricted to the kept matched points (``keep`` (P,) bool)
        and (N * R,) scores holding ``values`` (P,) there, ``inf`` elsewhere."""
        point_gt = torch.full_like(self.point_gt, BACKGROUND)
        point_gt[self.key[keep]] = self.gt[keep]
        scores = values.new_full(self.point_gt.shape, float("inf"))
        scores[self.key[keep]] = values[keep]
        return point_gt, scores


def match_and_score_points(
    inputs: MatchInputs,
    gts: BatchGTs,
    anchor_scale: float,
    prelim_iou_thresh: float,
    reg_loss: str = "giou",
) -> MatchedPoints:
    """Preliminary match (PAA step 1, LADA section 3.4) of every image of the batch and
    anchor losses of the matched points (PAA step 2, LADA Eq. 3-5); ``reg_loss`` "giou"
    (1 - GIoU) or "iou" (1 - IoU, LADA Table 7)."""
    gt_boxes = gts.boxes.float()
    anchors = anchor_boxes(inputs.points, inputs.strides, anchor_scale)
    point_gt = preliminary_iou_match(
        anchors, gt_boxes, prelim_iou_thresh, inputs.num_points_per_level,
        gt_image=gts.image, num_images=gts.num_images,
    )
    key = (point_gt >= 0).nonzero().squeeze(1)
    gt = point_gt.index_select(0, key)
    own_boxes = gt_boxes.index_select(0, gt)
    cls, reg = anchor_losses(
        inputs.pred_logits.flatten(0, 1).index_select(0, key).float(),
        inputs.pred_boxes.flatten(0, 1).index_select(0, key).float(),
        own_boxes,
        gts.classes.index_select(0, gt),
        reg_loss,
    )
    anchor_iou = paired_iou(anchors.index_select(0, key % gts.num_points), own_boxes)
    return MatchedPoints(point_gt, key, gt, cls, reg, anchor_iou)


def per_level_candidates(
    inputs: MatchInputs, gts: BatchGTs, point_gt: torch.Tensor, point_score: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per GT and level the ``k`` lowest-score points among the points whose
    ``point_gt`` is that GT. point_gt (N * R,), point_score (N * R,) -> keys (M, K),
    valid (M, K), scores (M, K) (``inf`` where invalid) for the batch's M GTs."""
    key, valid = lowest_per_gt_and_level(
        point_gt, point_score, len(gts), inputs.num_points_per_level, k
    )
    return key, valid, point_score[key].masked_fill(~valid, float("inf"))
