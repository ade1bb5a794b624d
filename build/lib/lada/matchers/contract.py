"""The matcher contract: what a matcher receives, what it returns, and what a matcher
is (docs/methods/README.md, "The matcher contract").

Letters: N images, R anchor points over all FPN levels (highest resolution first),
C classes, G_i ground-truth boxes of image i, P positive (point, GT) pairs over the
batch. Per-image matcher tensors are oriented ``(G, R)``, like detectron2's
``pairwise_iou(gt, anchors)``.

Softness has one declaration: a matcher class's ``SOFT``. The loss is chosen from it at
model construction, before any result exists (``lada/modeling/losses/__init__.py::
loss_name``); a result's ``MatchResult.is_soft`` is not a declaration but a fact about
its content (``soft`` is set), and ``check_result_kind`` holds every result to its
matcher's declaration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional, Protocol

import torch

__all__ = [
    "BACKGROUND",
    "MatchInputs",
    "MatchResult",
    "Matcher",
    "PairWeights",
    "check_result_kind",
    "declared_soft",
]

BACKGROUND = -1
"""``MatchResult.gt_index`` of a point assigned to no GT box."""


def _raise_failed(owner: str, checks) -> None:
    """Raises ``ValueError`` naming ``owner`` and the message of the first failed check
    of ``checks``, (ok, message) pairs."""
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{owner}: {message}")


@dataclass(frozen=True)
class MatchInputs:
    """Everything a matcher may use; predictions are detached. Frozen: a variant of
    some inputs is ``dataclasses.replace(inputs, field=value)``, which checks it again.

    Attributes:
        points: (R, 2) anchor-point centres in input-image pixels, levels concatenated.
        strides: (R,) stride of each point's level.
        num_points_per_level: points per level, sums to R.
        gt_boxes: per image, (G_i, 4) GT boxes, XYXY pixels.
        gt_classes: per image, (G_i,) GT class ids in [0, C).
        pred_logits: (N, R, C) classification logits.
        pred_boxes: (N, R, 4) decoded predicted boxes, XYXY pixels.
        pred_aux: (N, R) logits of the auxiliary branch (IoU or centerness), or None.
        iteration, max_iter: training progress, for schedule-aware matchers.
    """

    points: torch.Tensor
    strides: torch.Tensor
    num_points_per_level: List[int]
    gt_boxes: List[torch.Tensor]
    gt_classes: List[torch.Tensor]
    pred_logits: torch.Tensor
    pred_boxes: torch.Tensor
    pred_aux: Optional[torch.Tensor] = None
    iteration: int = 0
    max_iter: int = 1

    def __post_init__(self) -> None:
        num_points = self.points.shape[0]
        checks = [
            (self.points.dim() == 2 and self.points.shape[1] == 2, "points must be (R, 2)"),
            (self.strides.shape == (num_points,), "strides must be (R,)"),
            (sum(self.num_points_per_level) == num_points,
             "num_points_per_level must sum to R"),
            (len(self.gt_boxes) == len(self.gt_classes) == self.num_images,
             "gt_boxes and gt_classes need one entry per image of pred_logits"),
            (self.pred_logits.dim() == 3 and self.pred_logits.shape[1] == num_points,
             "pred_logits must be (N, R, C)"),
            (self.pred_boxes.shape == (self.num_images, num_points, 4),
             "pred_boxes must be (N, R, 4)"),
            (self.pred_aux is None or self.pred_aux.shape == (self.num_images, num_points),
             "pred_aux must be (N, R) or None"),
        ]
        for index, (boxes, classes) in enumerate(zip(self.gt_boxes, self.gt_classes)):
            checks.append((boxes.dim() == 2 and boxes.shape[1] == 4,
                           f"gt_boxes[{index}] must be (G, 4), got {tuple(boxes.shape)}"))
            checks.append((classes.shape == boxes.shape[:1],
                           f"gt_classes[{index}] must be (G,) matching gt_boxes[{index}]"))
        _raise_failed("MatchInputs", checks)

    @property
    def num_images(self) -> int:
        return self.pred_logits.shape[0]

    @property
    def num_points(self) -> int:
        return self.points.shape[0]


@dataclass(frozen=True)
class PairWeights:
    """The soft part of a result (DW): a loss weight for every (point, GT) pair trained
    as positive, so that a point inside several GT boxes has a term for each, a loss
    weight for every (point, class) negative term, and the normalisers of both sums.
    All five are required and detached.

    Attributes:
        pair_index: (P, 3) long rows ``(image, point, gt)``, ``gt`` indexing
            ``gt_boxes[image]``.
        pair_weight: (P,) float, the weight of each pair's positive classification and
            box terms.
        neg_weight: (N, R, C) float, the weight of each (point, class) negative
            classification term.
        pos_normalizer: () float, this worker's normaliser of the positive terms (the
            loss averages it over all workers).
        neg_normalizer: () float, this worker's normaliser of the negative terms.
    """

    pair_index: torch.Tensor
    pair_weight: torch.Tensor
    neg_weight: torch.Tensor
    pos_normalizer: torch.Tensor
    neg_normalizer: torch.Tensor

    def __post_init__(self) -> None:
        num_pairs = self.pair_index.shape[0]
        _raise_failed("PairWeights", [
            (self.pair_index.dim() == 2 and self.pair_index.shape[1] == 3,
             f"pair_index must be (P, 3), got {tuple(self.pair_index.shape)}"),
            (self.pair_weight.shape == (num_pairs,),
             f"pair_weight must be (P,) like pair_index, got {tuple(self.pair_weight.shape)} "
             f"for P = {num_pairs}"),
            (self.neg_weight.dim() == 3,
             f"neg_weight must be (N, R, C), got {tuple(self.neg_weight.shape)}"),
            (self.pos_normalizer.dim() == 0 and self.neg_normalizer.dim() == 0,
             "pos_normalizer and neg_normalizer must be 0-dim tensors"),
        ])


@dataclass(frozen=True)
class MatchResult:
    """What a matcher returns. A hard result is ``gt_index`` alone; a soft one (DW) also
    carries its ``PairWeights``, and its ``gt_index`` is each point's highest-weighted
    GT (``BACKGROUND`` outside every GT's pairs), which the assignment statistics read.

    Attributes:
        gt_index: (N, R) long, index of the GT box each point is assigned to, or
            ``BACKGROUND``. Positives are ``gt_index >= 0``.
        soft: the pairwise weights of a soft matcher, or None (hard matcher).
    """

    gt_index: torch.Tensor
    soft: Optional[PairWeights] = None

    def __post_init__(self) -> None:
        checks = [(self.gt_index.dim() == 2,
                   f"gt_index must be (N, R), got {tuple(self.gt_index.shape)}")]
        if self.soft is not None:
            checks.append((self.soft.neg_weight.shape[:2] == self.gt_index.shape,
                           f"soft.neg_weight must be (N, R, C) like gt_index "
                           f"{tuple(self.gt_index.shape)}, got {tuple(self.soft.neg_weight.shape)}"))
        _raise_failed("MatchResult", checks)

    @property
    def foreground(self) -> torch.Tensor:
        """(N, R) bool, points assigned to some GT box."""
        return self.gt_index >= 0

    @property
    def is_soft(self) -> bool:
        """Whether this result carries pairwise weights (``soft`` is set)."""
        return self.soft is not None


class Matcher(Protocol):
    """A label-assignment method (``lada/matchers/registry.py`` builds them by name).

    ``SOFT`` declares, on the class, whether its results carry ``PairWeights``: the
    loss that consumes them is chosen from it before any result exists. Calls run
    without gradients, and a batch without GT boxes gives an all-background result.
    """

    SOFT: ClassVar[bool]

    def __call__(self, inputs: MatchInputs) -> MatchResult:
        ...


def declared_soft(matcher: Any) -> bool:
    """The ``SOFT`` declaration of a matcher class, or of an instance's class; a
    ``TypeError`` naming the class when it declares none."""
    owner = matcher if isinstance(matcher, type) else type(matcher)
    soft = getattr(owner, "SOFT", None)
    if not isinstance(soft, bool):
        raise TypeError(
            f"matcher class {owner.__name__} must declare the class attribute SOFT (True when "
            "its MatchResults carry PairWeights, else False)"
        )
    return soft


def check_result_kind(result: MatchResult, soft: bool) -> None:
    """Refuses ``result`` when its kind contradicts its matcher's declaration ``soft``
    (``declared_soft``): the loss chosen from the declaration could not consume it."""
    if result.is_soft != soft:
        kind = "soft (PairWeights set)" if result.is_soft else "hard (no PairWeights)"
        raise TypeError(f"the matcher declares SOFT = {soft} but returned a {kind} MatchResult")
