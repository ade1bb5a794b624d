"""Candidate building shared by PAA and LADA: the preliminary IoU match and the anchor
losses of every matched point for its own GT, then per-level candidates per GT."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from ..contract import BACKGROUND, MatchInputs
from .geometry import anchor_boxes, paired_iou
from .priors import lowest_per_gt_and_level, preliminary_iou_match
from .scores import anchor_losses

__all__ = ["MatchedPoints", "match_and_score_points", "per_level_candidates"]

REG_LOSSES = ("giou", "iou")


@dataclass
class MatchedPoints:
    """One image after the preliminary match; P = matched points.

    Attributes:
        point_gt: (R,) preliminary GT of every point, or ``BACKGROUND``.
        index: (P,) indices of the matched points.
        cls, reg: (P,) their classification and regression losses for their GT.
        anchor_iou: (P,) IoU of their anchor box with their GT.
    """

    point_gt: torch.Tensor
    index: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor
    anchor_iou: torch.Tensor

    @property
    def gt(self) -> torch.Tensor:
        """(P,) the GT of each matched point."""
        return self.point_gt[self.index]

    def dense(self, values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(R,) point_gt restricted to the kept matched points (``keep`` (P,) bool) and
        (R,) scores holding ``values`` (P,) there, ``inf`` elsewhere."""
        point_gt = torch.full_like(self.point_gt, BACKGROUND)
        point_gt[self.index[keep]] = self.gt[keep]
        scores = values.new_full(self.point_gt.shape, float("inf"))
        scores[self.index[keep]] = values[keep]
        return point_gt, scores


def match_and_score_points(
    inputs: MatchInputs,
    image: int,
    anchor_scale: float,
    prelim_iou_thresh: float,
    reg_loss: str = "giou",
) -> MatchedPoints:
    """Preliminary match (PAA step 1, LADA section 3.4) and anchor losses of the matched
    points (PAA step 2, LADA Eq. 3-5); ``reg_loss`` "giou" (1 - GIoU) or "iou" (1 - IoU,
    LADA Table 7)."""
    gt_boxes = inputs.gt_boxes[image].float()
    anchors = anchor_boxes(inputs.points, inputs.strides, anchor_scale)
    point_gt = preliminary_iou_match(
        anchors, gt_boxes, prelim_iou_thresh, inputs.num_points_per_level
    )
    index = (point_gt >= 0).nonzero().squeeze(1)
    own_boxes = gt_boxes[point_gt[index]]
    cls, reg = anchor_losses(
        inputs.pred_logits[image, index].float(),
        inputs.pred_boxes[image, index].float(),
        own_boxes,
        inputs.gt_classes[image][point_gt[index]],
        reg_loss,
    )
    anchor_iou = paired_iou(anchors[index], own_boxes)
    return MatchedPoints(point_gt, index, cls, reg, anchor_iou)


def per_level_candidates(
    inputs: MatchInputs, image: int, point_gt: torch.Tensor, point_score: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per GT and level the ``k`` lowest-score points among the points whose
    ``point_gt`` is that GT. point_gt (R,), point_score (R,) -> index (G, K),
    valid (G, K), scores (G, K) (``inf`` where invalid)."""
    index, valid = lowest_per_gt_and_level(
        point_gt, point_score, len(inputs.gt_boxes[image]), inputs.num_points_per_level, k
    )
    return index, valid, point_score[index].masked_fill(~valid, float("inf"))
