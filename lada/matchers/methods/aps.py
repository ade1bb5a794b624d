"""``aps``: MMMC's aligned points sampler (Hao et al., "Toward Minimal Misalignment at
Minimal Cost in One-Stage and Anchor-Free Object Detection", section 3.2; spec section 8).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from detectron2.config import configurable

from ..contract import BACKGROUND, MatchInputs, MatchResult
from ..registry import register_matcher
from ..stages.divisions import assign_to_best_gt, scatter_candidates
from ..stages.geometry import is_inside
from ..stages.gmm import higher_component
from ..stages.priors import center_sampling_prior, fcos_scale_prior, lowest_cost_per_level
from ..stages.scores import anchor_losses

__all__ = ["APSMatcher"]

SCALE_CRITERIA = ("comb", "cls", "reg")


@register_matcher("aps")
class APSMatcher:
    """Aligned points sampler, vectorised over the GT boxes of an image and, for the GMM,
    over all GT boxes of the batch:

    1. candidates (Eq. 4-5): per level, the ``topk`` points inside the GT with the lowest
       ``cls_loss + reg_loss`` (spec section 1 losses) **[reading: Eq. 4's max is
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
    """

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
        checks = [
            (int(topk) == topk and topk >= 1, "TOPK must be a positive integer", topk),
            (int(num_levels) == num_levels and num_levels >= 1,
             "NUM_LEVELS must be a positive integer", num_levels),
            (scale_criterion in SCALE_CRITERIA, f"SCALE_CRITERION must be one of {SCALE_CRITERIA}",
             scale_criterion),
            (scale or spatial, "SCALE and SPATIAL are both off: that is FCOS's assignment, use "
             "MODEL.MATCHER.NAME fcos", (scale, spatial)),
            (center_sampling_radius > 0, "CENTER_SAMPLING_RADIUS must be > 0", center_sampling_radius),
            (int(gmm_max_iter) == gmm_max_iter and gmm_max_iter >= 1,
             "GMM_MAX_ITER must be a positive integer", gmm_max_iter),
            (gmm_tol > 0, "GMM_TOL must be > 0", gmm_tol),
        ]
        for ok, message, value in checks:
            if not ok:
                raise ValueError(f"MODEL.MATCHER.APS.{message}, got {value}")
        self.topk = int(topk)
        self.num_levels = int(num_levels)
        self.scale_criterion = scale_criterion
        self.scale = bool(scale)
        self.spatial = bool(spatial)
        self.center_sampling_radius = float(center_sampling_radius)
        self.gmm_max_iter = int(gmm_max_iter)
        self.gmm_tol = float(gmm_tol)

    @classmethod
    def from_config(cls, cfg):
        aps = cfg.MODEL.MATCHER.APS
        return {
            "topk": aps.TOPK,
            "num_levels": aps.NUM_LEVELS,
            "scale_criterion": aps.SCALE_CRITERION,
            "scale": aps.SCALE,
            "spatial": aps.SPATIAL,
            "center_sampling_radius": aps.CENTER_SAMPLING_RADIUS,
            "gmm_max_iter": aps.GMM_MAX_ITER,
            "gmm_tol": aps.GMM_TOL,
        }

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        gt_index = inputs.points.new_full(
            (inputs.num_images, inputs.num_points), BACKGROUND, dtype=torch.long
        )
        images = [i for i in range(inputs.num_images) if len(inputs.gt_boxes[i])]
        if not images:
            return MatchResult(gt_index=gt_index)
        parts = [self._image_candidates(inputs, image) for image in images]
        if self.spatial:
            index, valid, score = (torch.cat(p) for p in zip(*(part[2] for part in parts)))
            positive = higher_component(score, valid, self.gmm_max_iter, self.gmm_tol)
            rows = [len(inputs.gt_boxes[i]) for i in images]
            positives = [
                scatter_candidates(i, p, inputs.num_points, fill=False)
                for i, p in zip(index.split(rows), positive.split(rows))
            ]
        else:
            positives = [part[1] for part in parts]
        for image, (cost, _, _), positive in zip(images, parts, positives):
            gt_index[image] = assign_to_best_gt(-cost, positive)
        return MatchResult(gt_index=gt_index)

    def _image_candidates(
        self, inputs: MatchInputs, image: int
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Tuple[torch.Tensor, ...]]:
        """Steps 1-2 of one image with G >= 1 GT boxes. Returns the (G, R) cost
        ``cls + reg`` (``inf`` where a point is not eligible), the (G, R) positives when
        ``spatial`` is off (else None), and the spatial step's inputs (empty when off):
        candidate indices (G, K), their validity (G, K) and scores S (G, K)."""
        points, strides = inputs.points, inputs.strides
        levels = inputs.num_points_per_level
        boxes = inputs.gt_boxes[image].float()
        eligible = is_inside(points[None], boxes[:, None])  # (G, R)
        if not self.scale:
            eligible &= fcos_scale_prior(points, strides, levels, boxes)
        gts, cols = eligible.nonzero(as_tuple=True)
        cls, reg = anchor_losses(
            inputs.pred_logits[image, cols].float(),
            inputs.pred_boxes[image, cols].float(),
            boxes[gts],
            inputs.gt_classes[image][gts],
        )
        dense = [eligible.new_full(eligible.shape, float("inf"), dtype=cls.dtype) for _ in range(3)]
        for values, target in zip((cls + reg, cls, reg), dense):
            target[gts, cols] = values
        cost, cls_cost, reg_cost = dense
        index, valid = lowest_cost_per_level(cost, levels, self.topk)  # (G, K)
        slot_level = _slot_levels(levels, self.topk, index.device)
        chosen = self._scale_assignment(
            {"comb": cost, "cls": cls_cost, "reg": reg_cost}[self.scale_criterion].gather(1, index),
            valid, slot_level, len(levels),
        )  # (G, L)
        if not self.spatial:
            point_level = torch.repeat_interleave(
                torch.arange(len(levels), device=index.device), torch.tensor(levels, device=index.device)
            )
            positive = eligible & chosen[:, point_level] & center_sampling_prior(
                points, strides, boxes, self.center_sampling_radius
            )
            return cost, positive, ()
        valid &= chosen[:, slot_level]
        score = _spatial_score(cls_cost.gather(1, index), reg_cost.gather(1, index), valid)
        return cost, None, (index, valid, score)

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


def _slot_levels(num_points_per_level: List[int], k: int, device: torch.device) -> torch.Tensor:
    """(K,) level of each candidate column of ``lowest_cost_per_level``."""
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
