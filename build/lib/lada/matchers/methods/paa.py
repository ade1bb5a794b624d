"""``paa``: Probabilistic Anchor Assignment (Kim & Lee, ECCV 2020; docs/methods/paa.md)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import CandidateDivisionMatcher
from ..contract import MatchInputs
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.candidates import per_level_candidates
from ..stages.geometry import is_inside
from ..stages.gmm import paa_separation
from ..stages.preliminary import match_and_score_points
from ..validation import require_in_range, require_positive, require_positive_int

__all__ = ["PAAMatcher"]


@register_matcher("paa")
class PAAMatcher(CandidateDivisionMatcher):
    """PAA, as its official code (docs/methods/paa.md):

    1. preliminary match: each point to the GT of largest anchor IoU if ``>= prelim_iou_thresh``;
       a point below it that is some GT's highest-IoU point is restored to its own
       largest-IoU GT (``Matcher(t, t, allow_low_quality_matches=True)``);
       ``inside_gt`` (default, **[reading]** of LADA 4.2.1 for a point detector) then keeps
       only matched points strictly inside their GT; ``False`` is the official
       anchor-based behaviour, whose positives may lie outside their GT;
    2. score of a matched point: classification loss (focal, summed over classes) +
       regression loss (GIoU) for its GT, from detached predictions;
    3. per GT and level, the ``topk`` lowest-score matched points are candidates;
    4. a two-component GMM on each GT's candidate scores, fitted for all GT boxes of the
       batch at once; positives are all sorted candidates up to the best low-component
       member (Fig. 3(c)); one candidate -> positive; empty low component -> all positive.
    """

    @configurable
    def __init__(
        self,
        *,
        topk: int = 9,
        prelim_iou_thresh: float = 0.1,
        anchor_scale: float = 8.0,
        inside_gt: bool = True,
        gmm_max_iter: int = 100,
        gmm_tol: float = 1e-3,
    ):
        key = "MODEL.MATCHER.PAA"
        require_positive_int(f"{key}.TOPK", topk)
        require_in_range(f"{key}.PRELIM_IOU_THRESH", prelim_iou_thresh, 0, 1)
        require_positive(f"{key}.ANCHOR_SCALE", anchor_scale)
        require_positive_int(f"{key}.GMM_MAX_ITER", gmm_max_iter)
        require_positive(f"{key}.GMM_TOL", gmm_tol)
        self.topk = int(topk)
        self.prelim_iou_thresh = float(prelim_iou_thresh)
        self.anchor_scale = float(anchor_scale)
        self.inside_gt = bool(inside_gt)
        self.gmm_max_iter = int(gmm_max_iter)
        self.gmm_tol = float(gmm_tol)

    @classmethod
    def from_config(cls, cfg):
        paa = cfg.MODEL.MATCHER.PAA
        return {
            "topk": paa.TOPK,
            "prelim_iou_thresh": paa.PRELIM_IOU_THRESH,
            "anchor_scale": paa.ANCHOR_SCALE,
            "inside_gt": paa.INSIDE_GT,
            "gmm_max_iter": paa.GMM_MAX_ITER,
            "gmm_tol": paa.GMM_TOL,
        }

    def candidates(self, inputs: MatchInputs, gts: BatchGTs):
        matched = match_and_score_points(inputs, gts, self.anchor_scale, self.prelim_iou_thresh)
        if self.inside_gt:
            points = inputs.points.index_select(0, matched.key % gts.num_points)
            keep = is_inside(points, gts.boxes.index_select(0, matched.gt))
        else:
            keep = torch.ones_like(matched.key, dtype=torch.bool)
        point_gt, scores = matched.dense(matched.cls + matched.reg, keep)
        return per_level_candidates(inputs, gts, point_gt, scores, self.topk)

    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return paa_separation(scores, valid, max_iter=self.gmm_max_iter, tol=self.gmm_tol)
