"""Training targets built from a ``MatchResult``: dense per-point targets of hard
assignments, pairwise targets of soft ones. The losses read these and never which
matcher produced them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from ...geometry import paired_iou, side_distances
from ...matchers import MatchResult

__all__ = [
    "DenseTargets",
    "PairTargets",
    "centerness_targets",
    "gather_pair_targets",
    "gather_targets",
    "iou_quality",
    "iou_targets",
]


@dataclass
class DenseTargets:
    """Attributes:
    labels: (N, R) long, the matched GT's class, ``num_classes`` for background.
    boxes: (N, R, 4) the matched GT box (zeros for background).
    foreground: (N, R) bool.
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    foreground: torch.Tensor


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
    )


@dataclass
class PairTargets:
    """Targets of a soft assignment; P positive (point, GT) pairs over the batch.

    Attributes:
    image, point: (P,) long, the image and the point of each pair.
    labels: (P,) long, the class of the pair's GT.
    boxes: (P, 4) the pair's GT box.
    weight: (P,) detached weight of the pair's positive terms.
    neg_weight: (N, R, C) detached weight of each (point, class) negative term.
    pos_normalizer, neg_normalizer: () this worker's normalisers.
    """

    image: torch.Tensor
    point: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    weight: torch.Tensor
    neg_weight: torch.Tensor
    pos_normalizer: torch.Tensor
    neg_normalizer: torch.Tensor


def gather_pair_targets(
    match: MatchResult, gt_boxes: List[torch.Tensor], gt_classes: List[torch.Tensor]
) -> PairTargets:
    """Looks up the GT box and class of every pair of a soft ``MatchResult``."""
    if not match.is_soft:
        raise ValueError(
            "MODEL.FCOS.LOSS weighted_pairs needs a soft matcher (MatchResult.soft "
            "PairWeights, e.g. MODEL.MATCHER.NAME dw); this matcher gave hard targets only: "
            "use MODEL.FCOS.LOSS dense"
        )
    soft = match.soft
    image, point, gt = soft.pair_index.unbind(dim=1)
    counts = torch.tensor([len(b) for b in gt_boxes], device=image.device)
    flat = (torch.cumsum(counts, dim=0) - counts)[image] + gt
    return PairTargets(
        image=image,
        point=point,
        labels=torch.cat(gt_classes)[flat],
        boxes=torch.cat(gt_boxes)[flat],
        weight=soft.pair_weight.detach(),
        neg_weight=soft.neg_weight.detach(),
        pos_normalizer=soft.pos_normalizer.detach(),
        neg_normalizer=soft.neg_normalizer.detach(),
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


def iou_quality(targets: DenseTargets, pred_boxes: torch.Tensor) -> torch.Tensor:
    """The QFL/VFL soft class target of the P foreground points of ``targets``, in
    row-major order: the IoU of each one's detached predicted box with its GT, whatever
    the matcher (CIoU-ATSS's PIoU). pred_boxes (N, R, 4) -> (P,) float32."""
    fg = targets.foreground
    return iou_targets(pred_boxes[fg].float(), targets.boxes[fg].float())
