"""The matcher contract: what a matcher receives and what it returns (spec section 1).

Letters: N images, R anchor points over all FPN levels (highest resolution first),
C classes, G_i ground-truth boxes of image i. Per-image matcher tensors are oriented
``(G, R)``, like detectron2's ``pairwise_iou(gt, anchors)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

__all__ = ["BACKGROUND", "MatchInputs", "MatchResult"]

BACKGROUND = -1
"""``MatchResult.gt_index`` of a point assigned to no GT box."""


@dataclass
class MatchInputs:
    """Everything a matcher may use; predictions are detached.

    Attributes:
        points: (R, 2) anchor-point centres in input-image pixels, levels concatenated.
        strides: (R,) stride of each point's level.
        num_points_per_level: points per level, sums to R.
        gt_boxes: per image, (G_i, 4) GT boxes, XYXY pixels.
        gt_classes: per image, (G_i,) GT class ids in [0, C).
        pred_logits: (N, R, C) classification logits.
        pred_boxes: (N, R, 4) decoded predicted boxes, XYXY pixels.
        pred_quality: (N, R) logits of the auxiliary branch (IoU or centerness), or None.
        iteration, max_iter: training progress, for schedule-aware matchers.
    """

    points: torch.Tensor
    strides: torch.Tensor
    num_points_per_level: List[int]
    gt_boxes: List[torch.Tensor]
    gt_classes: List[torch.Tensor]
    pred_logits: torch.Tensor
    pred_boxes: torch.Tensor
    pred_quality: Optional[torch.Tensor] = None
    iteration: int = 0
    max_iter: int = 1

    def __post_init__(self) -> None:
        num_points = self.points.shape[0]
        checks = [
            (self.points.dim() == 2 and self.points.shape[1] == 2, "points must be (R, 2)"),
            (self.strides.shape == (num_points,), "strides must be (R,)"),
            (sum(self.num_points_per_level) == num_points,
             "num_points_per_level must sum to R"),
            (len(self.gt_boxes) == len(self.gt_classes) == self.num_images,
             "gt_boxes and gt_classes need one entry per image of pred_logits"),
            (self.pred_logits.dim() == 3 and self.pred_logits.shape[1] == num_points,
             "pred_logits must be (N, R, C)"),
            (self.pred_boxes.shape == (self.num_images, num_points, 4),
             "pred_boxes must be (N, R, 4)"),
            (self.pred_quality is None or self.pred_quality.shape == (self.num_images, num_points),
             "pred_quality must be (N, R) or None"),
        ]
        for index, (boxes, classes) in enumerate(zip(self.gt_boxes, self.gt_classes)):
            checks.append((boxes.dim() == 2 and boxes.shape[1] == 4,
                           f"gt_boxes[{index}] must be (G, 4), got {tuple(boxes.shape)}"))
            checks.append((classes.shape == boxes.shape[:1],
                           f"gt_classes[{index}] must be (G,) matching gt_boxes[{index}]"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"MatchInputs: {message}")

    @property
    def num_images(self) -> int:
        return self.pred_logits.shape[0]

    @property
    def num_points(self) -> int:
        return self.points.shape[0]


@dataclass
class MatchResult:
    """What a matcher returns.

    Attributes:
        gt_index: (N, R) long, index of the GT box each point is assigned to, or
            ``BACKGROUND``. Positives are ``gt_index >= 0``.
        cls_target_quality: (N, R) soft classification target for QFL/VFL (the IoU of the
            prediction with its GT), or None for hard targets.
    """

    gt_index: torch.Tensor
    cls_target_quality: Optional[torch.Tensor] = None

    @property
    def foreground(self) -> torch.Tensor:
        """(N, R) bool, points assigned to some GT box."""
        return self.gt_index >= 0
