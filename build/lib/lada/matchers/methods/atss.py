"""``atss``: Adaptive Training Sample Selection (Zhang et al., CVPR 2020; docs/methods/atss.md)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import MatchInputs, MatchResult
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import assign_candidates_to_best_gt
from ..stages.candidates import topk_closest_per_level
from ..stages.divisions import mean_plus_std_threshold
from ..stages.geometry import anchor_boxes, is_inside, paired_iou
from ..validation import require_positive, require_positive_int

__all__ = ["ATSSMatcher"]


@register_matcher("atss")
class ATSSMatcher(BatchMatcher):
    """ATSS (paper Algorithm 1):

    1. candidates: per level, the ``topk`` points closest to the GT centre (line 3-6);
    2. score: IoU of the candidates' anchor boxes (side ``anchor_scale * stride``) with
       the GT (line 7);
    3. division: positive when IoU >= mean + std of the GT's candidate IoUs (unbiased
       std, line 8-11) and the point is inside the GT (line 12);
    4. a point positive for several GTs goes to the one of highest IoU.

    All GT boxes of the batch at once (images share the points), the distances of step 1
    in GT chunks of bounded size.
    """

    @configurable
    def __init__(self, *, topk: int = 9, anchor_scale: float = 8.0):
        require_positive_int("MODEL.MATCHER.ATSS.TOPK", topk)
        require_positive("MODEL.MATCHER.ATSS.ANCHOR_SCALE", anchor_scale)
        self.topk = int(topk)
        self.anchor_scale = float(anchor_scale)

    @classmethod
    def from_config(cls, cfg):
        atss = cfg.MODEL.MATCHER.ATSS
        return {"topk": atss.TOPK, "anchor_scale": atss.ANCHOR_SCALE}

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        points, gt_boxes = inputs.points, gts.boxes
        candidates = topk_closest_per_level(
            points, inputs.num_points_per_level, gt_boxes, self.topk
        )  # (M, K), the batch's GT boxes at once
        anchors = anchor_boxes(points, inputs.strides, self.anchor_scale)
        iou = paired_iou(anchors[candidates], gt_boxes[:, None])  # (M, K)
        positive = iou >= mean_plus_std_threshold(iou)
        positive &= is_inside(points[candidates], gt_boxes[:, None])
        rows = torch.arange(len(gts), device=candidates.device)[:, None]
        gt_of_key = assign_candidates_to_best_gt(
            gts.keys(rows, candidates), iou, positive, gts.num_images * gts.num_points
        )
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key))
