"""``dsl``: RTMDet's dynamic soft-label assignment (Lyu et al., "RTMDet: An Empirical Study
of Designing Real-Time Object Detectors", 2022, section 3; docs/methods/dsl.md)."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import BACKGROUND, MatchInputs, MatchResult, ResultKind
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs, ImagesSideBySide
from ..stages.best_gt import BestGTTiesToLowestIndex
from ..stages.class_costs import ClassSummedCost, soft_label_term
from ..stages.coverage import inside_some_box
from ..stages.geometry import box_centers, paired_iou
from ..stages.dynamic_k import dynamic_k
from ..stages.overlaps import pairs_with_overlap
from ..stages.pairs import WindowIndex, level_maxima, widen
from ..stages.ranking import first_k_per_group
from ..validation import require_in_range, require_nonnegative, require_positive_int

__all__ = ["DSLMatcher"]

LN10 = math.log(10.0)
IOU_EPS = 1e-7
"""Added to the IoU inside the log of the IoU cost (mmdetection's ``EPS``)."""
INITIAL_REACH = 1.0
"""The first search radius, in strides beyond ``soft_center_radius``: a window edge
where the prior is 10."""


@register_matcher
class DSLMatcher(BatchMatcher):
    """Dynamic soft-label assignment. For a point ``p`` and a GT ``g`` of class ``c_g``,
    with ``u`` the IoU of p's detached predicted box with g and ``z`` p's logits:

    1. ``V``: the points inside (``> 0``) at least one GT of the image;
    2. cost ``c(p, g) = cls + iou + prior`` for ``p in V``: ``cls = sum_c
       BCEWithLogits(z_c, y_c) |y_c - sigmoid(z_c)|^2`` with ``y_{c_g} = u`` and 0 for
       the other classes (summed over the C classes, ``stages/class_costs.py``);
       ``iou = iou_weight * -ln(u + 1e-7)``; ``prior = 10^(d - soft_center_radius)``,
       ``d`` the distance from p to g's centre in strides of p's level;
    3. dynamic k: ``k_g = max(1, floor(sum of the topk largest u over V))``;
    4. each GT selects its ``k_g`` lowest-cost points of V (equal: the lower point);
    5. a point selected by several GTs goes to the GT of lowest cost among **all** GTs
       of its image (equal: the lower GT index);
    6. quality target: ``u`` of each point with its final GT.

    Exact and sparse: costs are ranked by ``ln(c + 1 + 1e-7 iou_weight)``, formed
    without overflow from the prior's exponent, so any distance orders exactly. Since
    ``cls >= 0`` and ``iou > -1e-7 iou_weight``, a point whose prior exceeds
    ``e^key`` of a GT's k-th lowest key cannot be selected. So each GT first ranks its
    overlapping points (``u > 0``, from ``stages/overlaps.py``, which step 3 needs
    anyway) within ``soft_center_radius + 1`` strides: when its k-th cost there is below
    the IoU cost of ``u = 0`` and the bound holds, that is its selection; the other GTs
    search all of V in squares of ``r`` strides around their centre on every level, ``r``
    grown until ``r >= soft_center_radius + key_k / ln 10``. Step 5 searches only the GTs
    whose centre lies within that bound of the point. V comes from column intervals
    (``stages/coverage.py``), without listing the points inside each box.

    Arguments (keys ``MODEL.MATCHER.DSL.*``):
        soft_center_radius: the prior's offset (RTMDet: 3.0); its base 10 is fixed.
        topk: q, the IoUs summed for the dynamic k (13).
        iou_weight: the weight of the IoU cost (3.0); the other weights are 1.
    """

    METHOD = MethodSpec(name="dsl", result=ResultKind.QUALITY, detector={
        "AUX_BRANCH": "none", "CLS_LOSS": "qfl", "BOX_LOSS_WEIGHTING": "quality",
        "NORMALIZER": "quality_sum_min1", "BOX_ACTIVATION": "relu", "BOX_BIAS_INIT": 1.0,
    })  # RTMDet's losses on the FCOS head: no auxiliary branch, QFL on u, GIoU weighted by u

    @configurable
    def __init__(self, *, soft_center_radius: float = 3.0, topk: int = 13, iou_weight: float = 3.0):
        require_nonnegative("soft_center_radius", soft_center_radius)
        require_positive_int("topk", topk)
        require_in_range("iou_weight", iou_weight, 0.0, 1e6)
        self.soft_center_radius = float(soft_center_radius)
        self.topk = int(topk)
        self.iou_weight = float(iou_weight)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        valid = inside_some_box(inputs.points, inputs.num_points_per_level, gts.boxes, gts.image,
                                gts.num_images)  # step 1: V
        costs = ClassSummedCost(inputs.pred_logits, soft_label_term)
        k, radius, chosen = self._select_among_overlaps(inputs, gts, valid, costs)  # steps 3-4
        unsettled = (radius > 0).nonzero().squeeze(1)
        gt, key, rank = (torch.cat(c) for c in zip(
            chosen, self._select(inputs, gts, valid, k, costs, unsettled, radius)))  # the rest
        gt_of_key = self._resolve(inputs, gts, gt, key, rank, costs)  # step 5
        positive = (gt_of_key >= 0).nonzero().squeeze(1)
        owner = gt_of_key.index_select(0, positive)
        iou = paired_iou(inputs.pred_boxes.reshape(-1, 4).index_select(0, positive).double(),
                         gts.boxes.double().index_select(0, owner))
        quality = torch.zeros(len(gt_of_key), dtype=torch.float32, device=gt_of_key.device)
        quality[positive] = iou.float()  # step 6
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key),
                           quality=quality.view(gts.num_images, gts.num_points))

    def pair_costs(
        self, inputs: MatchInputs, gts: BatchGTs, gt: torch.Tensor, key: torch.Tensor,
        costs: ClassSummedCost, distance: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The ranking key ``ln(c + 1 + 1e-7 iou_weight)`` (P,) float64 of the cost of
        pairs given by batch GT (P,) and flat point key (P,); ``inf`` where the cost is
        not a number (non-finite predictions). ``distance`` (P,) float64: d, if known."""
        boxes = gts.boxes.double().index_select(0, gt)
        iou = paired_iou(inputs.pred_boxes.reshape(-1, 4).index_select(0, key).double(), boxes)
        if distance is None:
            distance = self._distance(inputs, gts, gt, key)
        exponent = distance - self.soft_center_radius
        offset = 1.0 + self.iou_weight * IOU_EPS  # > -(the lowest IoU cost)
        rest = costs(key, gts.classes.index_select(0, gt), iou) - self.iou_weight * torch.log(
            iou + IOU_EPS)
        rank = torch.logaddexp(torch.log(rest + offset), exponent * LN10)
        return torch.where(torch.isnan(rank), torch.full_like(rank, float("inf")), rank)

    @staticmethod
    def _distance(inputs: MatchInputs, gts: BatchGTs, gt: torch.Tensor, key: torch.Tensor,
                  centers: Optional[torch.Tensor] = None) -> torch.Tensor:
        """d, the distance from the point to the GT's centre in strides of the point's
        level, of pairs given by batch GT (P,) and flat point key (P,) -> (P,) float64;
        ``centers`` (M, 2) float64: the GT centres, if at hand."""
        if centers is None:
            centers = box_centers(gts.boxes.double())
        point = key % gts.num_points
        offset = inputs.points.index_select(0, point).double() - centers.index_select(0, gt)
        return torch.hypot(offset[:, 0], offset[:, 1]) / inputs.strides.index_select(0, point)

    def _select_among_overlaps(
        self, inputs: MatchInputs, gts: BatchGTs, valid: torch.Tensor, costs: ClassSummedCost
    ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor, ...]]:
        """Step 3 and, for most GTs, step 4 from the pairs with ``u > 0`` in V: (M,) k
        (0 for the GTs of an image whose V is empty), (M,) float64 the radius to search
        all of V with for a GT whose selection is not settled (0 if settled or k = 0),
        and the settled selections as batch GT, flat key and ranking key.

        A GT's selection among its overlapping points of V within the first search
        radius is its selection among all of V when its k-th cost is below the IoU cost
        of ``u = 0`` (every other point of V costs more) and the locality bound holds at
        that radius."""
        radius = self.soft_center_radius + INITIAL_REACH
        centers = box_centers(gts.boxes.double())
        k = torch.ones(len(gts), dtype=torch.long, device=valid.device)
        parts = []
        for pairs in pairs_with_overlap(inputs, gts, among=valid):  # whole GTs per part
            k = torch.maximum(k, dynamic_k(pairs.gt, pairs.iou, len(gts), self.topk))
            distance = self._distance(inputs, gts, pairs.gt, pairs.key, centers)
            near = (distance <= radius).nonzero().squeeze(1)
            gt, key, distance = (x.index_select(0, near) for x in (pairs.gt, pairs.key, distance))
            parts.append((gt, key, self.pair_costs(inputs, gts, gt, key, costs, distance)))
        has_v = valid.view(gts.num_images, gts.num_points).any(dim=1)
        k = torch.where(has_v.index_select(0, gts.image), k, torch.zeros_like(k))
        empty = k[:0]
        gt, key, rank = (torch.cat(c) for c in zip(*parts)) if parts else (
            empty, empty, empty.double())
        top = first_k_per_group(gt, rank, key, k)
        gt, key, rank = gt.index_select(0, top), key.index_select(0, top), rank.index_select(0, top)
        kth = torch.full((len(k),), float("inf"), dtype=torch.float64, device=k.device)
        kth = kth.scatter_reduce_(0, gt, rank, "amax", include_self=False)
        without_overlap = self._without_overlap()
        enough = torch.bincount(gt, minlength=len(k)) >= k
        bound = self.soft_center_radius + kth / LN10  # kth: at least the k-th of all of V
        settled = enough & (kth < without_overlap) & (bound <= radius)
        keep = settled.index_select(0, gt).nonzero().squeeze(1)
        rest = torch.where(enough, bound.clamp(min=radius), torch.full_like(bound, radius))
        rest = torch.where(settled | (k == 0), torch.zeros_like(rest), rest)
        return k, rest, tuple(x.index_select(0, keep) for x in (gt, key, rank))

    def _select(
        self, inputs: MatchInputs, gts: BatchGTs, valid: torch.Tensor, k: torch.Tensor,
        costs: ClassSummedCost, active: torch.Tensor, radius: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 4 for the ``active`` GTs (batch indices): each one's ``k_g`` lowest-cost
        points of V, as batch GT (S,), flat point key (S,) and ranking key (S,), searched
        in squares from ``radius`` (M,) strides, grown until the locality bound holds
        (class docstring); one host synchronisation per growth step."""
        levels = inputs.num_points_per_level
        level_strides = level_maxima(inputs.strides.double(), levels)  # (L,)
        centers = box_centers(gts.boxes.double())
        low, high = inputs.points.double().amin(dim=0), inputs.points.double().amax(dim=0)
        farthest = torch.maximum(centers - low, high - centers).abs().amax(dim=1)
        whole_image = farthest / level_strides.min() + 1  # (M,) a radius covering every point
        radius = radius.minimum(whole_image)
        index = WindowIndex(inputs.points, levels)
        chosen: List[Tuple[torch.Tensor, ...]] = []
        while len(active):
            reach = (radius.index_select(0, active)[:, None] * level_strides)[..., None]
            middle = centers.index_select(0, active)[:, None]
            windows = widen(torch.cat([middle - reach, middle + reach], dim=2))  # (A, L, 4)
            count = torch.zeros_like(k)
            parts = []
            for row, point in index.pairs(windows):
                gt = active.index_select(0, row)
                key = gts.keys(gt, point)
                in_v = valid.index_select(0, key).nonzero().squeeze(1)
                gt, key = gt.index_select(0, in_v), key.index_select(0, in_v)
                distance = self._distance(inputs, gts, gt, key, centers)
                near = (distance <= radius.index_select(0, gt)).nonzero().squeeze(1)
                gt, key, distance = (x.index_select(0, near) for x in (gt, key, distance))
                rank = self.pair_costs(inputs, gts, gt, key, costs, distance)  # V in the disc
                count += torch.bincount(gt, minlength=len(k))
                top = first_k_per_group(gt, rank, key, k)
                parts.append((gt[top], key[top], rank[top]))
            gt, key, rank = (torch.cat(c) for c in zip(*parts)) if parts else (
                k[:0], k[:0], radius[:0])
            kth = torch.full_like(radius, float("inf")).scatter_reduce_(
                0, gt, rank, "amax", include_self=False)
            bound = self.soft_center_radius + kth / LN10
            enough = count >= k
            done = (enough & (bound <= radius)) | (radius >= whole_image)
            keep = done.index_select(0, gt)
            chosen.append((gt[keep], key[keep], rank[keep]))
            active = active[~done.index_select(0, active)]
            grown = torch.where(enough, bound, 2 * radius).minimum(whole_image)
            radius = torch.where(done, radius, grown)
        gt, key, rank = (torch.cat(c) for c in zip(*chosen)) if chosen else (k[:0], k[:0],
                                                                             radius[:0])
        return gt, key, rank

    def _resolve(
        self, inputs: MatchInputs, gts: BatchGTs, gt: torch.Tensor, key: torch.Tensor,
        rank: torch.Tensor, costs: ClassSummedCost,
    ) -> torch.Tensor:
        """Step 5 -> (N * R,) batch GT of every point or ``BACKGROUND``. A point selected
        once keeps its GT; one selected several times goes to the lowest cost among the
        GTs of its image that can cost less than its lowest selected key: when that key
        is below the IoU cost of ``u = 0``, only the GTs its predicted box overlaps
        (``stages/overlaps.py``); otherwise those whose centre lies within the locality
        bound of the key. Duplicate GTs compete as their first one
        (``BatchGTs.first_duplicates``): their equal costs may round differently."""
        flat_points = gts.num_images * gts.num_points
        times = torch.bincount(key, minlength=flat_points)
        alone = times.index_select(0, key) == 1
        gt_of_key = torch.full((flat_points,), BACKGROUND, dtype=torch.long, device=key.device)
        gt_of_key[key[alone]] = gt[alone]
        contested = (times >= 2).nonzero().squeeze(1)  # (C,) flat keys
        if len(contested) == 0:
            return gt_of_key
        lowest = torch.full(gt_of_key.shape, float("inf"), dtype=torch.float64,
                            device=key.device).scatter_reduce_(0, key, rank, "amin")
        best = BestGTTiesToLowestIndex(flat_points, torch.float64, key.device)
        first_duplicate = gts.first_duplicates()  # duplicates tie: the first one stands for all
        overlap_decided = torch.zeros_like(times, dtype=torch.bool)
        overlap_decided[contested] = lowest.index_select(0, contested) < self._without_overlap()
        for pairs in pairs_with_overlap(inputs, gts, among=overlap_decided):
            best.add(first_duplicate.index_select(0, pairs.gt), pairs.key,
                     -self.pair_costs(inputs, gts, pairs.gt, pairs.key, costs))
        far = contested[~overlap_decided.index_select(0, contested)]  # (F,) flat keys
        bound = self.soft_center_radius + lowest.index_select(0, far) / LN10
        point = far % gts.num_points
        image = torch.div(far, gts.num_points, rounding_mode="floor")
        xy = inputs.points.double().index_select(0, point)
        reach = (bound * inputs.strides.double().index_select(0, point))[:, None]
        windows = widen(torch.cat([xy - reach, xy + reach], dim=1))[:, None]  # (F, 1, 4)
        centers = box_centers(gts.boxes.double())
        strip = ImagesSideBySide.around(centers)
        index = WindowIndex(strip.place(centers, gts.image), [len(gts)])
        for row, candidate in index.pairs(strip.windows(windows, image)):
            at = far.index_select(0, row)
            best.add(first_duplicate.index_select(0, candidate), at,
                     -self.pair_costs(inputs, gts, candidate, at, costs))
        gt_of_key[contested] = best.gt_index().index_select(0, contested)
        return gt_of_key

    def _without_overlap(self) -> float:
        """The ranking key of the IoU cost at ``u = 0`` (no class or prior cost): every
        pair whose predicted box misses the GT ranks above it."""
        return math.log(self.iou_weight * -math.log(IOU_EPS) + 1 + self.iou_weight * IOU_EPS)
