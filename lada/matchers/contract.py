"""The matcher contract: what a matcher receives and what it returns (docs/methods/README.md,
"The matcher contract").

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

    Hard matchers set ``gt_index`` (and ``cls_target_quality`` for QFL/VFL) and leave the
    soft fields None. A soft matcher (DW) sets all five soft fields: a loss weight for
    every (point, GT) pair it trains as positive, so that a point inside several GT
    boxes has a term for each, a loss weight for every (point, class) negative term,
    and the two normalisers of those sums. It still sets ``gt_index`` (each point's
    highest-weighted GT, ``BACKGROUND`` outside every GT's pairs), which the assignment
    statistics read. Letters: P positive pairs over the batch.

    Attributes:
        gt_index: (N, R) long, index of the GT box each point is assigned to, or
            ``BACKGROUND``. Positives are ``gt_index >= 0``.
        cls_target_quality: (N, R) soft classification target for QFL/VFL (the IoU of the
            prediction with its GT), or None for hard targets.
        pair_index: (P, 3) long rows ``(image, point, gt)``: the positive pairs, ``gt``
            indexing ``gt_boxes[image]``; or None (hard matcher).
        pair_weight: (P,) float, the detached weight of each pair's positive
            classification and box terms.
        neg_weight: (N, R, C) float, the detached weight of each (point, class)
            negative classification term.
        pos_normalizer: () float, this worker's normaliser of the positive terms (the
            loss averages it over all workers).
        neg_normalizer: () float, this worker's normaliser of the negative terms.
    """

    gt_index: torch.Tensor
    cls_target_quality: Optional[torch.Tensor] = None
    pair_index: Optional[torch.Tensor] = None
    pair_weight: Optional[torch.Tensor] = None
    neg_weight: Optional[torch.Tensor] = None
    pos_normalizer: Optional[torch.Tensor] = None
    neg_normalizer: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        soft = [self.pair_index, self.pair_weight, self.neg_weight, self.pos_normalizer,
                self.neg_normalizer]
        if all(field is None for field in soft):
            return
        num_images, num_points = self.gt_index.shape
        num_pairs = -1 if self.pair_index is None else self.pair_index.shape[0]
        checks = [
            (all(field is not None for field in soft),
             "soft fields pair_index, pair_weight, neg_weight, pos_normalizer and "
             "neg_normalizer are set together"),
            (self.pair_index is None or (self.pair_index.dim() == 2 and self.pair_index.shape[1] == 3),
             "pair_index must be (P, 3)"),
            (self.pair_weight is None or self.pair_weight.shape == (num_pairs,),
             "pair_weight must be (P,) like pair_index"),
            (self.neg_weight is None or (self.neg_weight.dim() == 3
                                         and self.neg_weight.shape[:2] == (num_images, num_points)),
             "neg_weight must be (N, R, C) like gt_index"),
            (all(x is None or x.dim() == 0 for x in (self.pos_normalizer, self.neg_normalizer)),
             "pos_normalizer and neg_normalizer must be 0-dim tensors"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"MatchResult: {message}")

    @property
    def foreground(self) -> torch.Tensor:
        """(N, R) bool, points assigned to some GT box."""
        return self.gt_index >= 0

    @property
    def is_soft(self) -> bool:
        """Whether the soft fields (pairwise weights) are set."""
        return self.pair_index is not None
