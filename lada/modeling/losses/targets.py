"""Dense per-point training targets built from a ``MatchResult``; the losses read
these and never which matcher produced them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from ...matchers import MatchResult
from ...matchers.stages.geometry import paired_iou, side_distances

__all__ = ["DenseTargets", "centerness_targets", "gather_targets", "iou_targets"]


@dataclass
class DenseTargets:
    """Attributes:
    labels: (N, R) long, the matched GT's class, ``num_classes`` for background.
    boxes: (N, R, 4) the matched GT box (zeros for background).
    foreground: (N, R) bool.
    cls_quality: (N, R) soft classification target of foreground points, or None.
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    foreground: torch.Tensor
    cls_quality: torch.Tensor | None = None


def gather_targets(
    match: MatchResult,
    gt_boxes: List[torch.Tensor],
    gt_classes: List[torch.Tensor],
    num_classes: int,
) -> DenseTargets:
    """Looks up each point's matched GT box and class, for all images at once."""
    gt_index = match.gt_index  # (N, R)
    counts = torch.tensor([len(b) for b in gt_boxes], device=gt_index.device)
    offsets = torch.cumsum(counts, dim=0) - counts  # (N,)
    # One extra row, addressed by background points, holds the background target.
    all_boxes = torch.cat([*gt_boxes, gt_boxes[0].new_zeros((1, 4))])
    all_labels = torch.cat([*gt_classes, gt_index.new_full((1,), num_classes)])
    flat = torch.where(match.foreground, gt_index + offsets[:, None], len(all_boxes) - 1)
    return DenseTargets(
        labels=all_labels[flat],
        boxes=all_boxes[flat],
        foreground=match.foreground,
        cls_quality=match.cls_target_quality,
    )


def centerness_targets(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS centerness sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of points
    (P, 2) inside their boxes (P, 4) -> (P,)."""
    left, top, right, bottom = side_distances(points, boxes).unbind(dim=-1)
    horizontal = torch.minimum(left, right) / torch.maximum(left, right)
    vertical = torch.minimum(top, bottom) / torch.maximum(top, bottom)
    return torch.sqrt(horizontal * vertical)


def iou_targets(pred_boxes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of detached predicted boxes (P, 4) with their GT boxes (P, 4) -> (P,)."""
    return paired_iou(pred_boxes.detach(), boxes)
