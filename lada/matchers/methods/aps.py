"""``aps``: MMMC's aligned points sampler (Hao et al., "Toward Minimal Misalignment at
Minimal Cost in One-Stage and Anchor-Free Object Detection", section 3.2; docs/methods/aps.md).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import MatchInputs, MatchResult
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import BestGTTiesToLowestIndex, assign_candidates_to_best_gt
from ..stages.candidates import lowest_pairs_per_gt_and_level
from ..stages.geometry import is_inside, rows_at
from ..stages.gmm import higher_component
from ..stages.pairs import WindowIndex, widen
from ..stages.priors import SQUARE, fcos_size_ranges, in_center_region, in_fcos_size_range
from ..stages.scores import anchor_losses_of_pairs
from ..validation import require, require_one_of, require_positive, require_positive_int

__all__ = ["APSMatcher"]

SCALE_CRITERIA = ("comb", "cls", "reg")


@register_matcher
class APSMatcher(BatchMatcher):
    """Aligned points sampler, vectorised over all GT boxes of the batch:

    1. candidates (Eq. 4-5): per level, the ``topk`` points inside the GT with the lowest
       ``cls_loss + reg_loss`` (docs/methods/README.md) **[reading: Eq. 4's max is
       min(K, #inside)]**;
    2. scale (Eq. 6): the ``num_levels`` levels of lowest mean candidate loss
       (``scale_criterion`` comb = cls + reg, or cls, reg alone: Table 1); one level when
       only one level has candidates;
    3. spatial (Eq. 7-10): over the candidates of those levels,
       ``S_f = softmax(-cls) + softmax(-reg)`` **[reading: lower loss, better fitness]**,
       ``S_m = 1 / (1 + exp(|cls - reg|))``, ``S = sqrt(S_f * S_m)``; positives are the
       candidates of the higher-mean component of a two-component GMM on S (means
       initialised to the min and max of S, section 4.1);
    4. **[reading]** a point positive for several GTs goes to the one of lowest
       ``cls_loss + reg_loss``.

    Table 6 switches each procedure off, **[reading]** falling back to FCOS's own
    procedure, which APS replaces: without ``scale``, every level's candidates must fit
    the level's FCOS size range (``(4s, 8s)``); without ``spatial``, the positives are
    the points of the chosen levels inside the GT and within ``center_sampling_radius``
    strides of its centre (FCOS centre sampling). Without both, use the ``fcos`` matcher.

    Arguments (keys ``MODEL.MATCHER.APS.*``):
        topk: lowest-loss points inside the GT per level (9).
        num_levels: levels kept by the scale assignment (2).
        scale_criterion: "comb" (cls + reg), "cls" or "reg" (Table 1).
        scale, spatial: each procedure on or off (Table 6).
        center_sampling_radius: FCOS's centre region without ``spatial``, in strides.
        gmm_max_iter, gmm_tol: EM iterations and tolerance of the GMM (100, 1e-3).
    """

    METHOD = MethodSpec(name="aps", detector={
        "AUX_BRANCH": "giou", "NORMALIZER": "num_pos", "SCORE_THRESH_ON": "cls"})  # GIoU quality branch

    @configurable
    def __init__(
        self,
        *,
        topk: int = 9,
        num_levels: int = 2,
        scale_criterion: str = "comb",
        scale: bool = True,
        spatial: bool = True,
        center_sampling_radius: float = 1.5,
        gmm_max_iter: int = 100,
        gmm_tol: float = 1e-3,
    ):
        require_positive_int("topk", topk)
        require_positive_int("num_levels", num_levels)
        require_one_of("scale_criterion", scale_criterion, SCALE_CRITERIA)
        require(
            scale or spatial, ("scale", "spatial"),
            "are both off: that is FCOS's assignment, use MODEL.MATCHER.NAME fcos",
            (scale, spatial),
        )
        require_positive("center_sampling_radius", center_sampling_radius)
        require_positive_int("gmm_max_iter", gmm_max_iter)
        require_positive("gmm_tol", gmm_tol)
        self.topk = int(topk)
        self.num_levels = int(num_levels)
        self.scale_criterion = scale_criterion
        self.scale = bool(scale)
        self.spatial = bool(spatial)
        self.center_sampling_radius = float(center_sampling_radius)
        self.gmm_max_iter = int(gmm_max_iter)
        self.gmm_tol = float(gmm_tol)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        gt, point, cls, reg = self._eligible_pairs(inputs, gts)
        cost = cls + reg
        levels = inputs.num_points_per_level
        pair, valid = lowest_pairs_per_gt_and_level(gt, point, cost, len(gts), levels, self.topk)
        slot_level = _slot_levels(levels, self.topk, pair.device)
        criterion = {"comb": cost, "cls": cls, "reg": reg}[self.scale_criterion]
        chosen = self._scale_assignment(_at(criterion, pair), valid, slot_level, len(levels))
        num_keys = gts.num_images * gts.num_points
        if self.spatial:
            valid &= chosen[:, slot_level]
            score = _spatial_score(_at(cls, pair), _at(reg, pair), valid)
            positive = higher_component(score, valid, self.gmm_max_iter, self.gmm_tol)
            keys = gts.keys(torch.arange(len(gts), device=pair.device)[:, None], _at(point, pair))
            gt_of_key = assign_candidates_to_best_gt(keys, -_at(cost, pair), positive, num_keys)
            return MatchResult(gt_index=gts.local_gt_index(gt_of_key))
        point_level = torch.repeat_interleave(
            torch.arange(len(levels), device=point.device),
            torch.tensor(levels, device=point.device),
        )
        positive = chosen[gt, point_level[point]] & in_center_region(
            inputs.points[point], inputs.strides[point], gts.boxes[gt].float(),
            self.center_sampling_radius, SQUARE,
        )
        best = BestGTTiesToLowestIndex(num_keys, cost.dtype, cost.device)
        best.add(gt[positive], gts.keys(gt[positive], point[positive]), -cost[positive])
        return MatchResult(gt_index=gts.local_gt_index(best.gt_index()))

    def _eligible_pairs(self, inputs: MatchInputs, gts: BatchGTs) -> Tuple[torch.Tensor, ...]:
        """Step 1's eligible (GT, point) pairs of the whole batch: points inside the GT
        (found by ``WindowIndex``; with ``scale`` off, in the level's FCOS size range
        too), and their losses: gt (P,) batch GT index, point (P,) index into R, cls (P,),
        reg (P,)."""
        points, levels = inputs.points, inputs.num_points_per_level
        boxes = gts.boxes.float()
        windows = widen(boxes[:, None].expand(-1, len(levels), -1))  # (M, L, 4)
        lower, upper = fcos_size_ranges(inputs.strides, levels)
        gts_found, points_found = [], []
        for gt, point in WindowIndex(points, levels).pairs(windows):
            xy, own = points.index_select(0, point), boxes.index_select(0, gt)
            eligible = is_inside(xy, own)
            if not self.scale:
                eligible &= in_fcos_size_range(
                    xy, own, lower.index_select(0, point), upper.index_select(0, point)
                )
            keep = eligible.nonzero().squeeze(1)
            gts_found.append(gt.index_select(0, keep))
            points_found.append(point.index_select(0, keep))
        gt = torch.cat(gts_found) if gts_found else points.new_zeros((0,), dtype=torch.long)
        point = torch.cat(points_found) if points_found else torch.zeros_like(gt)
        cls, reg = anchor_losses_of_pairs(
            inputs.pred_logits.flatten(0, 1), inputs.pred_boxes.flatten(0, 1),
            gts.keys(gt, point), boxes.index_select(0, gt), gts.classes.index_select(0, gt),
        )
        return gt, point, cls, reg

    def _scale_assignment(
        self, criterion: torch.Tensor, valid: torch.Tensor, slot_level: torch.Tensor, num_levels: int
    ) -> torch.Tensor:
        """Eq. 6: (G, K) per-candidate criterion and validity -> (G, L) bool, the
        ``num_levels`` levels of lowest mean criterion among levels with candidates (every
        level when the scale procedure is off)."""
        per_level = criterion.new_zeros((len(valid), num_levels))
        count = per_level.index_add(1, slot_level, valid.to(criterion.dtype))
        has_candidates = count > 0
        if not self.scale:
            return torch.ones_like(has_candidates)
        total = per_level.index_add(1, slot_level, criterion.masked_fill(~valid, 0))
        mean = torch.where(has_candidates, total / count.clamp(min=1), float("inf"))
        lowest = mean.topk(min(self.num_levels, num_levels), dim=1, largest=False)
        chosen = torch.zeros_like(has_candidates).scatter_(1, lowest.indices, True)
        return chosen & has_candidates


def _at(values: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """Per-pair values (P,) at candidate slots (G, K) of pair indices; zeros when P = 0
    (every slot is then invalid)."""
    if not len(values):
        return torch.zeros_like(pair, dtype=values.dtype)
    return rows_at(values, pair)


def _slot_levels(num_points_per_level: List[int], k: int, device: torch.device) -> torch.Tensor:
    """(K,) level of each candidate column of ``lowest_pairs_per_gt_and_level``."""
    widths = torch.tensor([min(k, count) for count in num_points_per_level], device=device)
    return torch.repeat_interleave(torch.arange(len(num_points_per_level), device=device), widths)


def _spatial_score(cls: torch.Tensor, reg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 7-9 over each GT's valid candidates: (G, K) losses -> (G, K) S (0 where
    invalid)."""
    def softmax_of_negative(loss):
        weights = torch.where(valid, -loss, float("-inf")).softmax(dim=1)
        return torch.where(valid, weights, 0.0)

    fitness = softmax_of_negative(cls) + softmax_of_negative(reg)
    misalignment = torch.sigmoid(-(cls - reg).abs())  # 1 / (1 + exp(|cls - reg|))
    return torch.where(valid, (fitness * misalignment).sqrt(), 0.0)
