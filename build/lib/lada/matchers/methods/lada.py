"""``lada``: Lightweight Anchor Dynamic Assignment (Han et al., Sensors 2023;
docs/methods/lada.md): preliminary match -> EPCP -> CLA -> DLT, each stage switchable for the
paper's ablations (Tables 1, 6, 7, 8, 9)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import CandidateDivisionMatcher
from ..contract import MatchInputs
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.candidates import per_level_candidates
from ..stages.divisions import dynamic_loss_threshold, lowest_n_division, mean_plus_std_threshold
from ..stages.geometry import is_inside
from ..stages.gmm import paa_separation
from ..stages.preliminary import MatchedPoints, match_and_score_points
from ..stages.priors import ASPECT_STRETCHED, SQUARE, in_center_region
from ..stages.scores import REG_LOSSES, deviation_loss
from ..validation import (
    require_in_range,
    require_nonnegative,
    require_one_of,
    require_positive,
    require_positive_int,
)

__all__ = ["LADAMatcher"]

CENTER_REGIONS = {"epcp": ASPECT_STRETCHED, "cp": SQUARE, "none": None}
"""``MODEL.MATCHER.LADA.CENTER_PRIOR`` -> centre-region shape (``stages/priors.py``), None
for no centre region: its ``epcp`` (Eq. 1-2) stretches the square along the long side
(``r s W / min(W, H)``), unlike the ``fcos`` matcher's."""
CENTER_PRIORS = tuple(CENTER_REGIONS)
SCORES = ("cla", "la", "iou")
DIVISIONS = ("dlt", "fixed", "gmm", "mean_std")


@register_matcher("lada")
class LADAMatcher(CandidateDivisionMatcher):
    """LADA, Algorithm 1:

    1. preliminary match as PAA (section 3.4): every point belongs to at most one GT;
    2. C1: points matched to the GT, inside it, and inside its centre region:
       ``epcp`` (Eq. 1-2, radius ``r`` strides stretched along the long side), ``cp``
       (square of ``r`` strides, Table 1) or ``none`` (inside the GT only, Table 6);
    3. score: ``cla`` = cls + LAMBDA_REG reg + LAMBDA_DEV dev (Eq. 3-7), ``la`` without the
       deviation term, ``iou`` = anchor IoU, higher is better (Table 6); reg is 1 - GIoU
       or 1 - IoU (``reg_loss``, Table 7);
    4. C2: per level the ``topk`` lowest-score points of C1; division: ``dlt`` (C3 = the
       ``topm`` lowest of C2, positives below their mean, section 3.3), ``fixed`` (the
       ``fixed_num_pos`` lowest, Table 8), ``gmm`` (PAA's separation, Table 8) or
       ``mean_std`` (ATSS's mean + std of the anchor IoUs, Table 6's IoU row).
    """

    @configurable
    def __init__(
        self,
        *,
        center_prior: str = "epcp",
        center_radius: float = 2.5,
        score: str = "cla",
        reg_loss: str = "giou",
        lambda_reg: float = 1.5,
        lambda_dev: float = 1.0,
        division: str = "dlt",
        topk: int = 9,
        topm: int = 20,
        fixed_num_pos: int = 10,
        prelim_iou_thresh: float = 0.1,
        anchor_scale: float = 8.0,
    ):
        _validate(locals())
        self.center_prior = center_prior
        self.center_region_shape = CENTER_REGIONS[center_prior]
        self.center_radius = float(center_radius)
        self.score = score
        self.reg_loss = reg_loss
        self.lambda_reg = float(lambda_reg)
        self.lambda_dev = float(lambda_dev)
        self.division = division
        self.topk = int(topk)
        self.topm = int(topm)
        self.fixed_num_pos = int(fixed_num_pos)
        self.prelim_iou_thresh = float(prelim_iou_thresh)
        self.anchor_scale = float(anchor_scale)

    @classmethod
    def from_config(cls, cfg):
        lada = cfg.MODEL.MATCHER.LADA
        return {
            "center_prior": lada.CENTER_PRIOR,
            "center_radius": lada.CENTER_RADIUS,
            "score": lada.SCORE,
            "reg_loss": lada.REG_LOSS,
            "lambda_reg": lada.LAMBDA_REG,
            "lambda_dev": lada.LAMBDA_DEV,
            "division": lada.DIVISION,
            "topk": lada.TOPK,
            "topm": lada.TOPM,
            "fixed_num_pos": lada.FIXED_NUM_POS,
            "prelim_iou_thresh": lada.PRELIM_IOU_THRESH,
            "anchor_scale": lada.ANCHOR_SCALE,
        }

    def candidates(self, inputs: MatchInputs, gts: BatchGTs):
        matched = match_and_score_points(
            inputs, gts, self.anchor_scale, self.prelim_iou_thresh, self.reg_loss
        )
        point = matched.key % gts.num_points
        points = inputs.points.index_select(0, point)
        boxes = gts.boxes.index_select(0, matched.gt).float()
        in_c1 = is_inside(points, boxes)
        if self.center_region_shape is not None:
            in_c1 &= in_center_region(
                points, inputs.strides.index_select(0, point), boxes, self.center_radius,
                self.center_region_shape, closed=True,
            )
        point_gt, scores = matched.dense(self._score(matched, points, boxes), in_c1)
        return per_level_candidates(inputs, gts, point_gt, scores, self.topk)

    def _score(self, matched: MatchedPoints, points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(P,) score of each matched point for its GT, lower is better."""
        if self.score == "iou":
            return -matched.anchor_iou
        score = matched.cls + self.lambda_reg * matched.reg
        if self.score == "cla":
            score = score + self.lambda_dev * deviation_loss(points, boxes)
        return score

    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.division == "dlt":
            return dynamic_loss_threshold(scores, valid, self.topm)
        if self.division == "fixed":
            return lowest_n_division(scores, valid, self.fixed_num_pos)
        if self.division == "gmm":
            return paa_separation(scores, valid)
        quality = -scores.masked_fill(~valid, 0)
        return quality >= mean_plus_std_threshold(quality, valid)


def _validate(arguments: dict) -> None:
    """Checks the constructor's arguments, named by their ``MODEL.MATCHER.LADA`` key."""
    def key(name: str) -> str:
        return f"MODEL.MATCHER.LADA.{name.upper()}"

    choices = {"center_prior": CENTER_PRIORS, "score": SCORES, "reg_loss": REG_LOSSES,
               "division": DIVISIONS}
    for name, allowed in choices.items():
        require_one_of(key(name), arguments[name], allowed)
    for name in ("center_radius", "anchor_scale"):
        require_positive(key(name), arguments[name])
    for name in ("topk", "topm", "fixed_num_pos"):
        require_positive_int(key(name), arguments[name])
    for name in ("lambda_reg", "lambda_dev"):
        require_nonnegative(key(name), arguments[name])
    require_in_range(key("prelim_iou_thresh"), arguments["prelim_iou_thresh"], 0, 1)
