"""``paa``: Probabilistic Anchor Assignment (Kim & Lee, ECCV 2020; docs/methods/paa.md)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import CandidateDivisionMatcher
from ..contract import MatchInputs
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.candidates import per_level_candidates
from ..stages.geometry import is_inside
from ..stages.gmm import paa_separation
from ..stages.preliminary import match_and_score_points
from ..validation import require_in_range, require_positive, require_positive_int

__all__ = ["PAAMatcher"]


@register_matcher
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

    Arguments (keys ``MODEL.MATCHER.PAA.*``):
        topk: lowest-score matched points per GT and level (9).
        prelim_iou_thresh: anchor IoU of the preliminary match (0.1).
        anchor_scale: a point's anchor box is the square of ``anchor_scale`` strides (8).
        inside_gt: keep only matched points strictly inside their GT as candidates: the
            LADA paper's rule for every method compared on its point detector (section
            4.2.1). False is the official anchor-based PAA.
        gmm_max_iter, gmm_tol: EM iterations and tolerance of the GMM fit (100, 1e-3).
    """

    METHOD = MethodSpec(name="paa", detector={
        "AUX_BRANCH": "iou", "NORMALIZER": "num_pos", "BOX_LOSS_WEIGHTING": "aux_target",
        "SCORE_THRESH_ON": "cls"})  # IoU branch, GIoU weighted by the IoU target

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
        require_positive_int("topk", topk)
        require_in_range("prelim_iou_thresh", prelim_iou_thresh, 0, 1)
        require_positive("anchor_scale", anchor_scale)
        require_positive_int("gmm_max_iter", gmm_max_iter)
        require_positive("gmm_tol", gmm_tol)
        self.topk = int(topk)
        self.prelim_iou_thresh = float(prelim_iou_thresh)
        self.anchor_scale = float(anchor_scale)
        self.inside_gt = bool(inside_gt)
        self.gmm_max_iter = int(gmm_max_iter)
        self.gmm_tol = float(gmm_tol)

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
