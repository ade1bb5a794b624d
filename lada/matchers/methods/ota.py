"""``ota``: Optimal Transport Assignment (Ge et al., "OTA: Optimal Transport Assignment for
Object Detection", CVPR 2021; docs/methods/ota.md)."""
from __future__ import annotations

from typing import Tuple

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import BACKGROUND, MatchInputs, MatchResult
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import BestGTTiesToLowestIndex
from ..stages.class_costs import ClassSummedCost, focal_term
from ..stages.dynamic_k import dynamic_k
from ..stages.geometry import box_centers, is_inside, paired_iou
from ..stages.pairs import WindowIndex, level_maxima, widen
from ..stages.priors import SQUARE, center_region_reach, in_center_region
from ..stages.transport import sparse_sinkhorn_log_plan
from ..validation import require_positive, require_positive_int

__all__ = ["OTAMatcher"]

IOU_FLOOR = 2.0**-23
"""The IoU below which the regression cost ``-ln IoU`` stops growing: float32's machine
epsilon, the clamp of the official IoU loss."""


@register_matcher
class OTAMatcher(BatchMatcher):
    """OTA as its official code (docs/methods/ota.md), per image:

    1. candidates (the centre prior): pairs (p, g) with p inside g (> 0.01) and within
       ``center_radius`` strides of g's centre on both axes (strict);
    2. costs: ``c(p, g) = FL(p, g) + reg_weight * -ln max(u, 2^-23)`` on candidate pairs
       (FL: focal loss summed over the classes, the GT's class at target 1; u: IoU of
       p's detached predicted box with g), ``c_bg(p)`` = focal loss against the all-zero
       target (paper section 3.2);
    3. supplies: ``k_g = max(1, floor(sum of the top_candidates largest u over g's
       candidates))`` (section 3.3, dynamic k); **[reading]** a GT without candidates
       supplies nothing; background ``max(R - sum k, 0)`` (**[reading]**: the code's
       ``R - sum k`` may be negative); every point demands 1;
    4. ``sinkhorn_iter`` Sinkhorn iterations (Algorithm 1) in the log domain, float64
       (**[reading]**), regularisation ``sinkhorn_eps``;
    5. **[reading]** (the code, not the paper's text): each supplier's plan row divided
       by its maximum, then each point to the supplier of largest rescaled plan; ties go to
       a GT before the background, then to the lower GT index.

    The cost exists only for the candidate pairs, found by ``WindowIndex`` for all GT
    boxes of the batch at once, plus one background edge per point; the transport runs
    for all images together (``stages/transport.py``), each with its own background.

    Arguments (keys ``MODEL.MATCHER.OTA.*``, the official ``MODEL.OTA`` names):
        reg_weight: alpha, the weight of the regression cost (1.5 in every official config).
        center_radius: half-side of the centre prior, in strides (2.5).
        top_candidates: q of dynamic k (20).
        sinkhorn_eps: the entropic regularisation epsilon (0.1).
        sinkhorn_iter: Sinkhorn iterations, always all of them (50).
    """

    METHOD = MethodSpec(name="ota", detector={
        "AUX_BRANCH": "iou", "NORMALIZER": "num_pos", "BOX_ACTIVATION": "relu",
    })  # focal, GIoU, IoU branch; side distances ReLU x stride (cvpods NORM_REG_TARGETS)

    @configurable
    def __init__(
        self,
        *,
        reg_weight: float = 1.5,
        center_radius: float = 2.5,
        top_candidates: int = 20,
        sinkhorn_eps: float = 0.1,
        sinkhorn_iter: int = 50,
    ):
        require_positive("reg_weight", reg_weight)
        require_positive("center_radius", center_radius)
        require_positive_int("top_candidates", top_candidates)
        require_positive("sinkhorn_eps", sinkhorn_eps)
        require_positive_int("sinkhorn_iter", sinkhorn_iter)
        self.reg_weight = float(reg_weight)
        self.center_radius = float(center_radius)
        self.top_candidates = int(top_candidates)
        self.sinkhorn_eps = float(sinkhorn_eps)
        self.sinkhorn_iter = int(sinkhorn_iter)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        num_images, num_points = inputs.pred_logits.shape[:2]
        gt, key = self.candidate_pairs(inputs, gts)  # (P,) each
        pair_boxes = gts.boxes.index_select(0, gt).double()
        predicted = inputs.pred_boxes.reshape(-1, 4).index_select(0, key).double()
        iou = paired_iou(predicted, pair_boxes)  # (P,) float64
        has_candidates = torch.bincount(gt, minlength=len(gts)) > 0
        supply = torch.where(has_candidates, dynamic_k(gt, iou, len(gts), self.top_candidates),
                             torch.zeros_like(gts.image))  # (M,)
        supplied = torch.zeros(num_images, dtype=torch.long, device=gt.device).index_add_(
            0, gts.image, supply
        )
        background_supply = (num_points - supplied).clamp(min=0)  # (N,)

        costs = ClassSummedCost(inputs.pred_logits, focal_term())
        cost = costs(key, gts.classes.index_select(0, gt))
        cost = cost - self.reg_weight * torch.log(iou.clamp(min=IOU_FLOOR))
        pair_plan, background_plan = sparse_sinkhorn_log_plan(
            cost, key, gt, supply, costs.negative_sums,  # background: the all-zero target's FL
            background_supply, num_points, self.sinkhorn_eps, self.sinkhorn_iter,
        )
        return MatchResult(gt_index=gts.local_gt_index(
            self.largest_rescaled_plan(gt, key, pair_plan, background_plan, len(gts))
        ))

    def candidate_pairs(
        self, inputs: MatchInputs, gts: BatchGTs
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The centre-prior pairs of the batch: batch GT index (P,) and flat point key
        ``image * R + point`` (P,), grouped by GT in order."""
        points, strides, boxes = inputs.points, inputs.strides, gts.boxes
        levels = inputs.num_points_per_level
        reach = center_region_reach(
            level_maxima(strides, levels)[None], boxes[:, None], self.center_radius, SQUARE
        )  # (M, L, 2)
        centers = box_centers(boxes)[:, None]
        windows = widen(torch.cat([
            torch.maximum(centers - reach, boxes[:, None, :2]),
            torch.minimum(centers + reach, boxes[:, None, 2:]),
        ], dim=2))  # (M, L, 4): the centre square within the box
        parts = []
        for gt, point in WindowIndex(points, levels).pairs(windows):
            xy, pair_boxes = points.index_select(0, point), boxes.index_select(0, gt)
            keep = is_inside(xy, pair_boxes)
            keep &= in_center_region(xy, strides.index_select(0, point), pair_boxes,
                                     self.center_radius, SQUARE)
            parts.append((gt[keep], gts.keys(gt[keep], point[keep])))
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=points.device)
            return empty, empty
        gt, key = (torch.cat(column) for column in zip(*parts))
        return gt, key

    @staticmethod
    def largest_rescaled_plan(
        gt: torch.Tensor,
        key: torch.Tensor,
        pair_plan: torch.Tensor,
        background_plan: torch.Tensor,
        num_gts: int,
    ) -> torch.Tensor:
        """Step 5: each supplier's ``ln pi`` minus its maximum over points, then each point
        to its largest, a GT before the background, the lower GT index among GTs. gt (P,),
        key (P,), pair_plan (P,), background_plan (N, R) -> (N * R,) batch GT index or
        ``BACKGROUND``."""
        row_max = pair_plan.new_full((num_gts,), float("-inf")).scatter_reduce_(
            0, gt, pair_plan, "amax"
        )
        rescaled = pair_plan - row_max.index_select(0, gt)
        background = (background_plan - background_plan.amax(dim=1, keepdim=True)).reshape(-1)
        best = BestGTTiesToLowestIndex(len(background), rescaled.dtype, rescaled.device)
        best.add(gt, key, rescaled)
        chosen = best.gt_index()
        positive = (chosen >= 0) & (best.score >= background)
        return torch.where(positive, chosen, torch.full_like(chosen, BACKGROUND))
