"""``simota``: YOLOX's simplified OTA (Ge, Liu, Wang, Li & Sun, "YOLOX: Exceeding YOLO
Series in 2021", section 2.1 "SimOTA"; docs/methods/simota.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
from detectron2.config import configurable
from torch.nn import functional as F

from ..base import BatchMatcher
from ..contract import BACKGROUND, MatchInputs, MatchResult
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import BestGTTiesToLowestIndex
from ..stages.class_costs import ClassSummedCost, ClassTerm
from ..stages.dynamic_k import dynamic_k
from ..stages.geometry import box_centers, is_inside, paired_iou
from ..stages.overlaps import pairs_with_overlap
from ..stages.pairs import WindowIndex, level_maxima, widen
from ..stages.priors import SQUARE, center_region_reach, in_center_region
from ..stages.ranking import first_k_per_group
from ..validation import require_nonnegative, require_positive, require_positive_int

__all__ = ["SimOTAMatcher", "joint_score_bce_term"]

IOU_OFFSET = 1e-8
"""Added to the IoU before its logarithm in the regression cost (YOLOX's)."""
LOG_FLOOR = -100.0
"""The clamp of each logarithm of the BCE (torch's ``binary_cross_entropy``)."""


def joint_score_bce_term(pred_aux: Optional[torch.Tensor]) -> ClassTerm:
    """YOLOX's classification cost of one class: the BCE of the joint score
    ``q = sqrt(sigmoid(z) * sigmoid(a))`` (``a`` the point's auxiliary logit;
    ``q = sigmoid(z)`` without one) against the target, each logarithm clamped at -100,
    computed from ``ln q = (logsigmoid(z) + logsigmoid(a)) / 2`` and
    ``ln(1 - q) = ln(-expm1(ln q))``. pred_aux (N, R) or None, read at the rows' flat keys."""
    flat_aux = None if pred_aux is None else pred_aux.reshape(-1)

    def term(logits: torch.Tensor, keys: torch.Tensor, target) -> torch.Tensor:
        log_q = F.logsigmoid(logits)
        if flat_aux is not None:
            aux = flat_aux.index_select(0, keys).to(logits.dtype)
            log_q = (log_q + F.logsigmoid(aux)[:, None]) / 2
        # ln(1 - q) = ln(-expm1(ln q)): accurate near q = 1; for small q its absolute error
        # stays at the dtype's rounding, all that a sum of costs needs
        log_not_q = torch.log(-torch.expm1(log_q)).clamp(min=LOG_FLOOR)
        if isinstance(target, float) and target == 0.0:
            return -log_not_q
        return -(target * log_q.clamp(min=LOG_FLOOR) + (1 - target) * log_not_q)

    return term


@dataclass
class _Pairs:
    """Region pairs of the batch: batch GT index (P,), flat point key ``image * R + point``
    (P,) and ``tier`` (P,) bool (True: tier 1, outside the box or the centre square)."""

    gt: torch.Tensor
    key: torch.Tensor
    tier: torch.Tensor

    @staticmethod
    def cat(parts: List["_Pairs"]) -> "_Pairs":
        """The parts concatenated; a part's tensors are released as soon as their field is
        concatenated, so that the pairs are held about once."""
        fields = {}
        for name in ("gt", "key", "tier"):
            fields[name] = torch.cat([getattr(part, name) for part in parts])
            for part in parts:
                setattr(part, name, None)
        return _Pairs(**fields)


@register_matcher
class SimOTAMatcher(BatchMatcher):
    """SimOTA as YOLOX's release code (0.1.0-0.3.0, ``get_assignments``; docs/methods/simota.md),
    per image:

    1. regions: ``in_box`` (p inside g, > 0), ``in_ctr`` (within ``center_radius``
       strides of g's centre on both axes, strict, not clipped to the box); g's own region
       ``E_g = in_box or in_ctr``, tier 0 where both hold, 1 elsewhere; the image's
       candidate points ``U``, the union of the regions;
    2. cost ``c(p, g) = sum_c BCE(q_c, [c = c_g]) + iou_weight * -ln(u + 1e-8)``, ``q`` the
       joint score (``joint_score_bce_term``), u the IoU of p's detached predicted box;
    3. ``k_g = max(1, floor(sum of the topk_iou largest u(p, g) over p in U))``;
    4. each GT selects its ``k_g`` lowest ``(tier, cost)`` points of ``E_g`` (ties to the
       lower point); **[reading]** confined to ``E_g`` (the release picks from all of U,
       counting other regions' points as penalised); **[reading]** the penalty is a tier,
       not ``+1e5`` in float32;
    5. a point selected by several GTs goes to the GT of lowest ``(tier, cost)`` among all
       GTs whose region holds it, selected or not (ties to the lower GT index).

    One window search for all GT boxes of the batch (``WindowIndex``, GT chunks of bounded
    size) finds, per GT and level, the points of its region; ``stages/overlaps.py`` the
    pairs of points of U whose predicted box overlaps the GT, which dynamic k sums over.
    Only the region pairs that steps 4-5 compare get an IoU and a cost (a fifth of them
    on crowded images).

    Arguments (keys ``MODEL.MATCHER.SIMOTA.*``):
        center_radius: half-side of the centre region, in strides (release: 2.5).
        topk_iou: q of dynamic k (10).
        iou_weight: lambda, the weight of the regression cost (3.0).
    """

    METHOD = MethodSpec(name="simota", detector={
        "AUX_BRANCH": "objectness", "AUX_PRIOR_PROB": 0.01, "CLS_LOSS": "bce_iou",
        "BOX_LOSS": "iou_squared", "NORMALIZER": "num_pos", "BOX_BIAS_INIT": 0.5,
        "TEST_SCORE": "product",
    })  # YOLOX's losses on the FCOS head; boxes start as s x s squares

    @configurable
    def __init__(self, *, center_radius: float = 2.5, topk_iou: int = 10, iou_weight: float = 3.0):
        require_positive("center_radius", center_radius)
        require_positive_int("topk_iou", topk_iou)
        require_nonnegative("iou_weight", iou_weight)
        self.center_radius = float(center_radius)
        self.topk_iou = int(topk_iou)
        self.iou_weight = float(iou_weight)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        num_keys = gts.num_images * gts.num_points
        regions = list(self.scan(inputs, gts))
        if not regions:  # no GT box near any point
            return MatchResult(gt_index=gts.background())
        region = _Pairs.cat(regions)
        del regions
        candidate = torch.zeros(num_keys, dtype=torch.bool, device=region.key.device)
        candidate[region.key] = True  # U, the union of the regions
        k = torch.ones(len(gts), dtype=torch.long, device=candidate.device)
        for pairs in pairs_with_overlap(inputs, gts, among=candidate):  # whole GTs per part
            k = torch.maximum(k, dynamic_k(pairs.gt, pairs.iou, len(gts),
                                           self.topk_iou))  # step 3
        costs = _RegionCosts(inputs, gts, region, self.iou_weight)
        gt, key = _select(region, k, costs)  # step 4
        return MatchResult(gt_index=gts.local_gt_index(_resolve(region, gt, key, costs, gts)))

    def scan(self, inputs: MatchInputs, gts: BatchGTs) -> Iterator[_Pairs]:
        """Per chunk of whole GT boxes, their region pairs with tier and IoU (step 1)."""
        index = WindowIndex(inputs.points, inputs.num_points_per_level)
        for gt, point in index.pairs(self.windows(inputs, gts)):
            xy, boxes = inputs.points.index_select(0, point), gts.boxes.index_select(0, gt)
            in_box = is_inside(xy, boxes, eps=0.0)
            in_center = in_center_region(xy, inputs.strides.index_select(0, point), boxes,
                                         self.center_radius, SQUARE)
            at_region = (in_box | in_center).nonzero().squeeze(1)
            gt, key = gt.index_select(0, at_region), gts.keys(gt, point).index_select(0, at_region)
            tier = ~(in_box & in_center).index_select(0, at_region)
            yield _Pairs(gt, key, tier)

    def windows(self, inputs: MatchInputs, gts: BatchGTs) -> torch.Tensor:
        """(M, L, 4) per GT and level the bounding box of the GT's region: the GT and its
        centre square."""
        boxes = gts.boxes.double()
        reach = center_region_reach(
            level_maxima(inputs.strides, inputs.num_points_per_level)[None].double(),
            boxes[:, None], self.center_radius, SQUARE,
        )  # (M, L, 2)
        centers = box_centers(boxes)[:, None]
        low = torch.minimum(centers - reach, boxes[:, None, :2])
        high = torch.maximum(centers + reach, boxes[:, None, 2:])
        return widen(torch.cat([low, high], dim=2))


class _RegionCosts:
    """Step 2's cost of region pairs, computed only for the pairs that steps 4-5 compare:
    ``cost(index)`` of pairs (S,) indices into ``region`` -> (S,) float64."""

    def __init__(self, inputs: MatchInputs, gts: BatchGTs, region: _Pairs, iou_weight: float):
        self.class_costs = ClassSummedCost(inputs.pred_logits,
                                           joint_score_bce_term(inputs.pred_aux))
        self.classes, self.region, self.iou_weight = gts.classes, region, iou_weight
        self.pred_boxes, self.gt_boxes = inputs.pred_boxes.reshape(-1, 4), gts.boxes

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        gt, key = self.region.gt.index_select(0, index), self.region.key.index_select(0, index)
        cost = self.class_costs(key, self.classes.index_select(0, gt))
        iou = paired_iou(self.pred_boxes.index_select(0, key),
                         self.gt_boxes.index_select(0, gt)).double()  # u, in the inputs' dtype
        return cost - self.iou_weight * torch.log(iou + IOU_OFFSET)


def _select(
    region: _Pairs, k: torch.Tensor, costs: _RegionCosts
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Step 4: the gt (S,) and key (S,) of each GT's ``k`` lowest ``(tier, cost, key)``
    region pairs (NaN costs last). Only tier-0 pairs and the tier-1 pairs of GTs with
    fewer than ``k`` tier-0 pairs can be among them: only those are costed and ranked,
    each tier of a GT a group of ``ranking.first_k_per_group``: the ``k`` lowest of tier
    0 and the ``k`` minus the tier-0 count lowest of tier 1."""
    tier = region.tier.long()
    tier0 = torch.bincount(region.gt[tier == 0], minlength=len(k))
    short = tier0 < k
    eligible = ((tier == 0) | short.index_select(0, region.gt)).nonzero().squeeze(1)
    gt, key = region.gt.index_select(0, eligible), region.key.index_select(0, eligible)
    k_of_tier = torch.stack([k, (k - tier0).clamp(min=0)], dim=1).reshape(-1)  # (2 M,)
    chosen = first_k_per_group(2 * gt + tier.index_select(0, eligible), costs(eligible), key,
                               k_of_tier)
    return gt.index_select(0, chosen), key.index_select(0, chosen)


def _resolve(
    region: _Pairs, gt: torch.Tensor, key: torch.Tensor, costs: _RegionCosts, gts: BatchGTs
) -> torch.Tensor:
    """Step 5: the selected pairs gt (S,), key (S,) -> (N * R,) batch GT index or
    ``BACKGROUND``. A key selected once keeps its GT; one selected several times goes to
    the lowest ``(tier, cost)`` of all region pairs at that key, equal ones to the lower
    GT index (duplicate GTs as their first one, ``BatchGTs.first_duplicates``)."""
    num_keys = gts.num_images * gts.num_points
    times = torch.bincount(key, minlength=num_keys)
    gt_of_key = torch.full((num_keys,), BACKGROUND, dtype=torch.long, device=key.device)
    gt_of_key[key] = gt  # a key selected once: its only GT
    contested = (times > 1).index_select(0, region.key).nonzero().squeeze(1)
    pair_key = region.key.index_select(0, contested)
    pair_tier = region.tier.index_select(0, contested).long()
    lowest_tier = torch.ones(num_keys, dtype=torch.long, device=key.device).scatter_reduce_(
        0, pair_key, pair_tier, "amin")
    at_lowest = contested[pair_tier == lowest_tier.index_select(0, pair_key)]
    best = BestGTTiesToLowestIndex(num_keys, torch.float64, key.device)
    gt_of_pair = gts.first_duplicates().index_select(0, region.gt.index_select(0, at_lowest))
    best.add(gt_of_pair, region.key.index_select(0, at_lowest), -costs(at_lowest))
    return torch.where(times > 1, best.gt_index(), gt_of_key)
