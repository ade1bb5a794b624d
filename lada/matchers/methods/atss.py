"""``atss``: Adaptive Training Sample Selection (Zhang et al., CVPR 2020; docs/methods/atss.md)."""
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
from ..validation import require_positive, require_positive_int

__all__ = ["ATSSMatcher"]


@register_matcher
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

    Arguments (keys ``MODEL.MATCHER.ATSS.*``):
        topk: closest points per level (9).
        anchor_scale: a point's anchor box is the square of ``anchor_scale`` strides (8).
    """

    METHOD = MethodSpec(name="atss", detector={
        "NORMALIZER": "num_pos", "BOX_LOSS_WEIGHTING": "aux_target",
        "SCORE_THRESH_ON": "cls"})  # centerness, GIoU weighted by the centerness target

    @configurable
    def __init__(self, *, topk: int = 9, anchor_scale: float = 8.0):
        require_positive_int("topk", topk)
        require_positive("anchor_scale", anchor_scale)
        self.topk = int(topk)
        self.anchor_scale = float(anchor_scale)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        points, gt_boxes = inputs.points, gts.boxes
        candidates = topk_closest_per_level(
            points, inputs.num_points_per_level, gt_boxes, self.topk
        )  # (M, K), the batch's GT boxes at once
        anchors = anchor_boxes(points, inputs.strides, self.anchor_scale)
        iou = paired_iou(rows_at(anchors, candidates), gt_boxes[:, None])  # (M, K)
        positive = iou >= mean_plus_std_threshold(iou)
        positive &= is_inside(rows_at(points, candidates), gt_boxes[:, None])
        rows = torch.arange(len(gts), device=candidates.device)[:, None]
        gt_of_key = assign_candidates_to_best_gt(
            gts.keys(rows, candidates), iou, positive, gts.num_images * gts.num_points
        )
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key))
