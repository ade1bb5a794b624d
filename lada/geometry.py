"""Box geometry shared by the matchers and the losses. Boxes are XYXY pixels; every
function broadcasts, so ``points[None]`` against ``boxes[:, None]`` gives ``(G, R)``."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

__all__ = ["box_areas", "box_centers", "clamp_inverted", "clamped_areas", "iou_from_parts",
           "overlap_sides", "overlap_sides_of_coordinates", "paired_iou", "side_distances"]


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) boxes -> (..., 2) centres."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) boxes -> (...) areas."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def side_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances (l, t, r, b) from points (..., 2) to the sides of boxes (..., 4),
    broadcast to (..., 4); all positive when the point is inside the box."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


def clamp_inverted(boxes: torch.Tensor) -> torch.Tensor:
    """Predicted boxes (..., 4) with ``x1 = max(x0, x1)`` and ``y1 = max(y0, y1)``, as the
    official PAA code does before its GIoU: an inverted prediction counts as an empty box
    at its (x0, y0) corner, so its IoU is 0 and its GIoU loss at most 2. Differentiable."""
    top_left = boxes[..., :2]
    return torch.cat([top_left, torch.maximum(top_left, boxes[..., 2:])], dim=-1)


def paired_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of broadcast box pairs (..., 4), (..., 4) -> (...); 0 for empty unions. An
    inverted box (predictions may be) has area 0, as after :func:`clamp_inverted`.
    Written per coordinate, so that no (..., 2) intermediate is built."""
    width, height = overlap_sides(boxes1, boxes2)
    return iou_from_parts(width.clamp(min=0) * height.clamp(min=0), clamped_areas(boxes1),
                          clamped_areas(boxes2))


def overlap_sides(
    boxes1: torch.Tensor, boxes2: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Width and height (...) of the intersection of broadcast box pairs (..., 4),
    (..., 4), negative where they do not overlap: both are positive exactly when the
    boxes overlap with positive area (a difference of floats is 0 only if they are
    equal)."""
    return overlap_sides_of_coordinates(boxes1.unbind(dim=-1), boxes2.unbind(dim=-1))


def overlap_sides_of_coordinates(
    coordinates1: Sequence[torch.Tensor], coordinates2: Sequence[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`overlap_sides` of boxes given as their four coordinates (x0, y0, x1, y1),
    each (...): contiguous columns, where a caller gathers them per pair."""
    x0, y0, x1, y1 = coordinates1
    u0, v0, u1, v1 = coordinates2
    width = torch.minimum(x1, u1) - torch.maximum(x0, u0)
    return width, torch.minimum(y1, v1) - torch.maximum(y0, v0)


def clamped_areas(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) boxes -> (...) areas, 0 for an inverted box."""
    x0, y0, x1, y1 = boxes.unbind(dim=-1)
    return (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)


def iou_from_parts(
    overlap: torch.Tensor, area1: torch.Tensor, area2: torch.Tensor
) -> torch.Tensor:
    """:func:`paired_iou` from the pairs' intersection areas and their boxes'
    :func:`clamped_areas` (...): the same values to the bit, for a caller that has the
    parts at hand."""
    union = area1 + area2 - overlap
    return torch.where(union > 0, overlap / union.clamp(min=1e-12), torch.zeros_like(union))
