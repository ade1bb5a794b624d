"""``tal``: TOOD's task-aligned assignment (Feng et al., "TOOD: Task-aligned One-stage
Object Detection", ICCV 2021, section 3.2; docs/methods/tal.md)."""
from __future__ import annotations

import torch
from detectron2.config import configurable
from torch.nn import functional as F

from ..base import BatchMatcher
from ..contract import MatchInputs, MatchResult, ResultKind
from ..declaration import MethodSpec
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import BestGTTiesToLowestIndex
from ..stages.geometry import is_inside
from ..stages.overlaps import pairs_with_overlap
from ..stages.ranking import first_k_per_group
from ..validation import require, require_nonnegative, require_positive, require_positive_int
from .atss import ATSSMatcher

__all__ = ["TALMatcher"]

NORMALISATION_EPS = 1e-7
"""Added to a GT's largest alignment metric before dividing by it (TOOD's ``10e-8``)."""


@register_matcher
class TALMatcher(BatchMatcher):
    """Task-aligned assignment. For a GT ``g`` of class ``c`` and a point ``p``, with
    ``s = sigmoid(z_{p, c})`` and ``u`` the IoU of p's detached predicted box with g:

    1. alignment metric ``t = s^alpha * u^beta`` (paper Eq. 2), ranked by
       ``alpha * logsigmoid(z) + beta * ln u`` (no underflow); ``t = 0`` iff ``u = 0``;
    2. candidates: the ``topk`` points of largest ``t`` over all points of every level
       (equal t: the lower point index);
    3. positives: the candidates with ``t > 0`` that lie inside g (``> 0.01``);
       candidates outside the box are dropped, not replaced;
    4. a point positive for several GTs goes to the one of largest ``u`` (equal: the
       lower GT index);
    5. quality target of a final positive of g: ``t / (max t + 1e-7) * max u``, maxima
       over g's final positives (TOOD's normalised ``t^``); 0 at background points.

    Only the pairs with ``u > 0`` can rank (``stages/overlaps.py`` finds them exactly,
    without a (G, R) matrix), so step 2 keeps, per GT, the ``topk`` largest of those.

    Warm-up (TOOD's first epochs): while ``iteration * schedule_epochs <
    initial_epochs * max_iter``, the result is ATSS's (``initial_topk`` points per level,
    anchors of ``anchor_scale`` strides; conflicts to the highest anchor IoU) without a
    quality target, which the loss then trains with TOOD's initial losses
    (``MODEL.FCOS.LOSS_WITHOUT_QUALITY``). ``initial_epochs = 0`` disables it.

    Arguments (keys ``MODEL.MATCHER.TAL.*``):
        topk: m, candidates per GT (13).
        alpha, beta: exponents of the alignment metric (1, 6).
        initial_epochs, schedule_epochs: the warm-up is the first ``initial_epochs`` of
            ``schedule_epochs`` epochs of the schedule (TOOD: 4 of 12), as a fraction of
            ``SOLVER.MAX_ITER``.
        initial_topk: ATSS's candidates per level during the warm-up (9).
        anchor_scale: side of ATSS's anchor boxes during the warm-up, in strides (8).
    """

    METHOD = MethodSpec(name="tal", result=ResultKind.QUALITY, detector={
        "AUX_BRANCH": "none", "CLS_LOSS": "qfl", "BOX_LOSS_WEIGHTING": "quality",
        "NORMALIZER": "quality_sum", "LOSS_WITHOUT_QUALITY": "focal_centerness",
        "BOX_ACTIVATION": "relu", "BOX_BIAS_INIT": 1.0,
    })  # TOOD's losses on the FCOS head: no auxiliary branch, QFL on t^, GIoU weighted by t^

    @configurable
    def __init__(
        self,
        *,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        initial_epochs: int = 4,
        schedule_epochs: int = 12,
        initial_topk: int = 9,
        anchor_scale: float = 8.0,
    ):
        require_positive_int("topk", topk)
        require_nonnegative("alpha", alpha)
        require_positive("beta", beta)
        require(isinstance(initial_epochs, int) and not isinstance(initial_epochs, bool)
                and initial_epochs >= 0, "initial_epochs", "must be an integer >= 0",
                initial_epochs)
        require_positive_int("schedule_epochs", schedule_epochs)
        self.topk = int(topk)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.initial_epochs = int(initial_epochs)
        self.schedule_epochs = int(schedule_epochs)
        self._warmup = ATSSMatcher(topk=initial_topk, anchor_scale=anchor_scale)
        self.initial_topk = self._warmup.topk
        self.anchor_scale = self._warmup.anchor_scale

    def in_warmup(self, inputs: MatchInputs) -> bool:
        """Whether the step ``inputs.iteration`` (0-based) of ``inputs.max_iter`` falls in
        the first ``initial_epochs`` of ``schedule_epochs``; compared in integers."""
        return inputs.iteration * self.schedule_epochs < self.initial_epochs * inputs.max_iter

    def empty_result(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        """All background; without a quality target during the warm-up, as its ATSS steps."""
        if self.in_warmup(inputs):
            return MatchResult(gt_index=gts.background())
        return super().empty_result(inputs, gts)

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        if self.in_warmup(inputs):
            return self._warmup.match(inputs, gts)
        gt, key, iou, log_t = self._positive_pairs(inputs, gts)
        flat_points = gts.num_images * gts.num_points
        best = BestGTTiesToLowestIndex(flat_points, torch.float64, inputs.points.device)
        best.add(gt, key, iou)  # step 4
        gt_of_key = best.gt_index()
        final = gt_of_key.index_select(0, key) == gt
        quality = self._normalised_metric(
            gt[final], log_t[final], iou[final], len(gts)
        )  # step 5
        target = torch.zeros(flat_points, dtype=torch.float32, device=inputs.points.device)
        target[key[final]] = quality.float()
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key),
                           quality=target.view(gts.num_images, gts.num_points))

    def _positive_pairs(self, inputs: MatchInputs, gts: BatchGTs):
        """Steps 1-3 for the batch: the positive (GT, point) pairs as batch GT (P,), flat
        point key (P,), IoU (P,) and ln t (P,), float64."""
        num_classes = inputs.pred_logits.shape[-1]
        logits = inputs.pred_logits.reshape(-1)
        topk = torch.full((len(gts),), self.topk, dtype=torch.long, device=inputs.points.device)
        parts = []
        for pairs in pairs_with_overlap(inputs, gts):
            gt, key, iou = pairs.gt, pairs.key, pairs.iou
            logit = logits.index_select(0, key * num_classes + gts.classes.index_select(0, gt))
            iou = iou.double()
            log_t = self.alpha * F.logsigmoid(logit.double()) + self.beta * torch.log(iou)
            top = first_k_per_group(gt, -log_t, key, topk)  # step 2; NaN ranks last
            gt, key, iou, log_t = (x.index_select(0, top) for x in (gt, key, iou, log_t))
            point = key % gts.num_points
            positive = is_inside(inputs.points.index_select(0, point),
                                 gts.boxes.index_select(0, gt)) & (log_t > float("-inf"))
            positive = positive.nonzero().squeeze(1)  # step 3; t > 0, a non-finite logit never
            parts.append(tuple(x.index_select(0, positive) for x in (gt, key, iou, log_t)))
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=inputs.points.device)
            return empty, empty, empty.double(), empty.double()
        gt, key, iou, log_t = (torch.cat(column) for column in zip(*parts))
        return gt, key, iou, log_t

    @staticmethod
    def _normalised_metric(
        gt: torch.Tensor, log_t: torch.Tensor, iou: torch.Tensor, num_gts: int
    ) -> torch.Tensor:
        """``t / (max t + 1e-7) * max u`` of each final positive, maxima over its GT's
        final positives: gt (P,), ln t (P,), u (P,) -> (P,) float64 in [0, 1]."""
        t = torch.exp(log_t)
        largest_t = t.new_zeros(num_gts).scatter_reduce_(0, gt, t, "amax")
        largest_iou = iou.new_zeros(num_gts).scatter_reduce_(0, gt, iou, "amax")
        return t / (largest_t.index_select(0, gt) + NORMALISATION_EPS) * largest_iou.index_select(0, gt)

