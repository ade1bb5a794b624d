"""The loss contract: what a loss module of ``LadaFCOS`` is (``DetectionLoss``) and what
it returns (``LossOutput``). Letters: N images, R anchor points, C classes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Protocol, TypeVar

import torch

from ...matchers.contract import MatchResult

__all__ = ["DetectionLoss", "LossOutput"]

TargetsT = TypeVar("TargetsT")


@dataclass(frozen=True)
class LossOutput:
    """The result of one loss evaluation.

    Attributes:
        losses: named () losses, weights applied; their sum is the training loss.
        normalizers: named () detached normalisers this step divided by (already
            averaged over workers where the loss does so), for the event storage.
    """

    losses: Dict[str, torch.Tensor]
    normalizers: Dict[str, torch.Tensor]


class DetectionLoss(Protocol[TargetsT]):
    """A loss module: ``targets`` turns a ``MatchResult`` into its own targets (refusing
    the kind of result it cannot consume), and calling it on the predictions and those
    targets returns a ``LossOutput``. It keeps no per-step results on itself."""

    def targets(
        self, match: MatchResult, gt_boxes: List[torch.Tensor], gt_classes: List[torch.Tensor]
    ) -> TargetsT:
        """Targets of ``match``; gt_boxes per image (G_i, 4), gt_classes per image (G_i,)."""

    def __call__(
        self,
        points: torch.Tensor,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        pred_aux: torch.Tensor,
        targets: TargetsT,
    ) -> LossOutput:
        """points (R, 2); pred_logits (N, R, C); pred_boxes (N, R, 4) decoded, XYXY
        pixels; pred_aux (N, R) auxiliary-branch logits."""
