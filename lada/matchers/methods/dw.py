"""``dw``: Dual Weighting (Li et al., "A Dual Weighting Label Assignment Scheme for Object
Detection", CVPR 2022; docs/methods/dw.md). A soft assignment: every (point, GT) pair of a
GT's bag gets a positive weight, every (point, class) slot a negative weight."""
from __future__ import annotations

from typing import List, Tuple

import torch
from detectron2.config import configurable
from torchvision.ops import generalized_box_iou_loss

from ..contract import MatchInputs, MatchResult, PairWeights, ResultKind
from ..declaration import MatcherBase, MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import best_gt_ties_to_smallest_box
from ..stages.geometry import box_areas, clamp_inverted, is_inside, paired_iou
from ..stages.pairs import WindowIndex, widen
from ..stages.priors import gaussian_center_prior
from ..stages.soft import min_max_per_gt, min_per_point_class, normalise_per_gt
from ..validation import require_in_range, require_nonnegative, require_one_of, require_positive

__all__ = ["DWMatcher", "VARIANTS"]

VARIANTS = ("official", "paper")
EPS = 1e-12
"""The official code's guard in its normalisations."""


@register_matcher
class DWMatcher(MatcherBase):
    """Dual Weighting, vectorised over the GT boxes of the batch; both variants of
    docs/methods/dw.md.

    For a GT of class c and a point p of its bag, with
    ``s = sigmoid(cls logit of c) * sigmoid(centerness logit)`` (the joint score,
    section 3.5) and ``IoU`` of p's detached predicted box with the GT:

    * bag: the points strictly inside the GT on every level, each weighted by the fixed
      Gaussian centre prior ``exp(-||(p - centre) / stride||^2 / (2 prior_sigma^2))``
      (Table 4's soft centre prior; the official ``CenterPrior`` with sigma 1.11);
    * consistency ``t`` (Eq. 3): ``paper`` ``s * IoU^beta``; ``official``
      ``s * exp(-beta * GIoU_loss)`` (the code's stand-in for ``IoU^beta``);
    * positive weight (Eq. 4): ``paper`` ``exp(mu t) t prior`` normalised to sum 1 over
      the bag; ``official`` ``exp(mu t) t prior / sum_bag exp(mu_norm t) t prior``
      (mu 5 vs mu_norm 3 in the code: a GT's weights sum to between 1 and e^2);
    * probability of being negative (Eq. 5-6): ``paper`` the line
      ``(0.95^g - IoU^g) / (0.95^g - 0.5^g)``, ``g = gamma1``, through (0.5, 1) and
      (0.95, 0), clipped to [0, 1]; ``official`` ``(1 - IoU^g) / (1 - 0.5^g)`` (through
      (0.5, 1) and (1, 0)) min-max rescaled within the bag, ``(x - min + eps) /
      (min(1, max) - min + eps)``, so the bag's best-IoU point gets 0, then 1 wherever
      ``IoU < 0.5``.

    ``P_neg`` is written to the (point, c) slot; **[reading]** a point in the bags of
    several GT boxes of class c keeps the smallest (the official code keeps whichever
    GT it writes last). Slots outside every bag of their class: ``official`` 1 (the
    term ``s^2 BCE(s, 0)``); ``paper`` ``1 - focal_alpha`` (Eq. 12's ``FL(s, 0)`` with
    FL's alpha 0.25 and gamma 2 is ``(1 - alpha) s^2 BCE(s, 0)``; ``focal_alpha`` is
    ``MODEL.MATCHER.DW.FOCAL_ALPHA``, the matcher's own key; **[reading]** the classes
    of an in-bag point other than its GT's are "outside the bag" too). The
    importance ``I_neg = s^gamma2`` (Eq. 7) carries gradient, so the loss applies it
    (``MODEL.FCOS.WEIGHTED_PAIRS.NEG_POWER``).

    Normalisers (the official code's for both variants; **[reading]** the paper states
    none): positives by the number of GT boxes, negatives by the sum of ``1 - P_neg``
    over the in-bag (point, class) slots; the loss averages both over all workers.
    ``gt_index`` is each point's highest-weighted GT (equal weights: the smaller box),
    ``BACKGROUND`` outside every bag.

    Arguments (keys ``MODEL.MATCHER.DW.*``):
        variant: "official" (the authors' code, which gave the paper's numbers) or
            "paper" (section 3's text).
        prior_sigma: sigma of the Gaussian centre prior, in strides (the code's 1.11;
            Table 4's ``exp(-r^2)`` is 0.7071).
        beta: of Eq. 3 (``t = s * IoU^beta``; official ``s * exp(-beta * GIoU loss)``),
            Table 2: 5.
        mu: of Eq. 4 (``w_pos = exp(mu t) t``), Table 2: 5.
        mu_norm: official only: the exponent in the sum normalising ``w_pos`` over the
            bag (``exp(mu_norm t) t``; the code's 3, so a GT's weights sum to between 1
            and e^2).
        gamma1: of Eq. 6, the power of IoU in ``P_neg`` (Table 3: 2).
        focal_alpha: "paper" only: alpha of Eq. 12's focal loss ``FL(s, 0)``, whose
            weight ``1 - alpha`` the slots outside every bag get (the paper's FL: 0.25).
    """

    METHOD = MethodSpec(name="dw", result=ResultKind.PAIRS, detector={
        "BOX_BIAS_INIT": 4.0, "BOX_ACTIVATION": "relu", "TEST_SCORE": "product",
    })  # the pairwise loss on the joint score, ReLU side distances from 4 strides

    @configurable
    def __init__(
        self,
        *,
        variant: str = "official",
        prior_sigma: float = 1.11,
        beta: float = 5.0,
        mu: float = 5.0,
        mu_norm: float = 3.0,
        gamma1: float = 2.0,
        focal_alpha: float = 0.25,
    ):
        require_one_of("variant", variant, VARIANTS)
        require_positive("prior_sigma", prior_sigma)
        require_positive("beta", beta)
        require_nonnegative("mu", mu)
        require_nonnegative("mu_norm", mu_norm)
        require_positive("gamma1", gamma1)
        require_in_range("focal_alpha", focal_alpha, 0, 1)
        self.variant = variant
        self.prior_sigma = float(prior_sigma)
        self.beta = float(beta)
        self.mu = float(mu)
        self.mu_norm = float(mu_norm)
        self.gamma1 = float(gamma1)
        self.outside_neg_weight = 1.0 if variant == "official" else 1.0 - focal_alpha

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        if inputs.pred_aux is None:
            raise ValueError(
                "MODEL.MATCHER.NAME dw: the joint score needs the auxiliary (centerness) "
                "logits, MatchInputs.pred_aux is None"
            )
        num_images, num_points, num_classes = inputs.pred_logits.shape
        gts = BatchGTs.of(inputs)
        gt, key, weight, p_neg = self.bag_pairs(inputs, gts)
        flat_points = num_images * num_points
        best = best_gt_ties_to_smallest_box(
            weight, key, gt, box_areas(gts.boxes.float()), flat_points
        )
        # a NaN slot is outside the bags too
        slots, neg_normalizer = min_per_point_class(p_neg, key, gts.classes.index_select(0, gt),
                                                    flat_points, num_classes, self.outside_neg_weight)
        image = gts.image.index_select(0, gt)
        local_gt = gt - gts.first.index_select(0, image)
        soft = PairWeights(
            pair_index=torch.stack([image, key - image * num_points, local_gt], dim=1),
            pair_weight=weight,
            neg_weight=slots.view(num_images, num_points, num_classes),
            pos_normalizer=torch.tensor(float(len(gts)), device=inputs.points.device),
            neg_normalizer=neg_normalizer,
        )
        return MatchResult(gt_index=gts.local_gt_index(best), soft=soft)

    def bag_pairs(
        self, inputs: MatchInputs, gts: BatchGTs
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every bag pair of the batch: its batch GT index (P,), flat point key
        ``image * R + point`` (P,), positive weight (P,) and ``P_neg`` (P,). The pairs are
        found by ``WindowIndex`` in chunks of whole GT boxes, so that each GT's
        normalisations see its whole bag while memory stays bounded."""
        points, levels = inputs.points, inputs.num_points_per_level
        boxes = gts.boxes.float()
        windows = widen(boxes[:, None].expand(-1, len(levels), -1))  # (M, L, 4)
        parts: List[Tuple[torch.Tensor, ...]] = []
        for gt, point in WindowIndex(points, levels).pairs(windows):
            inside = is_inside(points.index_select(0, point), boxes.index_select(0, gt))
            gt, point = gt[inside], point[inside]
            key = gts.keys(gt, point)
            parts.append((gt, key, *self.pair_weights(inputs, boxes, gts.classes, gt, point, key)))
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=points.device)
            return empty, empty, empty.float(), empty.float()
        gt, key, weight, p_neg = (torch.cat(columns) for columns in zip(*parts))
        return gt, key, weight, p_neg

    def pair_weights(
        self,
        inputs: MatchInputs,
        boxes: torch.Tensor,
        classes: torch.Tensor,
        gt: torch.Tensor,
        point: torch.Tensor,
        key: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Positive weights (P,) and ``P_neg`` (P,) of bag pairs given by their batch GT
        (P,), point (P,) and flat point key (P,), holding whole bags. ``boxes`` (M, 4) and
        ``classes`` (M,) are the batch's GT boxes."""
        num_classes = inputs.pred_logits.shape[-1]
        pair_boxes = boxes.index_select(0, gt)
        prior = gaussian_center_prior(
            inputs.points.index_select(0, point), inputs.strides.index_select(0, point),
            pair_boxes, self.prior_sigma,
        )
        logit = inputs.pred_logits.reshape(-1).index_select(
            0, key * num_classes + classes.index_select(0, gt))
        aux_logit = inputs.pred_aux.reshape(-1).index_select(0, key)
        score = logit.float().sigmoid() * aux_logit.float().sigmoid()
        predicted = inputs.pred_boxes.reshape(-1, 4).index_select(0, key).float()
        iou = paired_iou(predicted, pair_boxes)
        if self.variant == "official":
            giou_loss = generalized_box_iou_loss(clamp_inverted(predicted), pair_boxes)
            t = score * torch.exp(-self.beta * giou_loss)
        else:
            t = score * iou.pow(self.beta)
        numerator = torch.exp(self.mu * t) * t * prior
        if self.variant == "official":
            denominator = torch.exp(self.mu_norm * t) * t * prior
        else:
            denominator = numerator
        weight = normalise_per_gt(numerator, denominator, gt, len(boxes), eps=EPS)
        return weight, self.negative_probability(iou, gt, len(boxes))

    def negative_probability(self, iou: torch.Tensor, gts: torch.Tensor, num_gts: int) -> torch.Tensor:
        """``P_neg`` of the pairs (Eq. 5-6) from their IoUs (P,) and GTs (P,) -> (P,)."""
        power = iou.pow(self.gamma1)
        half = 0.5**self.gamma1
        if self.variant == "paper":
            top = 0.95**self.gamma1
            return ((top - power) / (top - half)).clamp(min=0, max=1)
        raw = (1 - power) / (1 - half)
        low, high = min_max_per_gt(raw, gts, num_gts)
        low, high = low.index_select(0, gts), high.clamp(max=1).index_select(0, gts)
        rescaled = (raw - low + EPS) / (high - low + EPS)
        return torch.where(iou < 0.5, torch.ones_like(rescaled), rescaled)

