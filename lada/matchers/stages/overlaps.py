"""Which (GT, point) pairs can have a predicted box overlapping the GT (IoU ``u > 0``),
so that a dynamic k (SimOTA's, over the image's candidate points) is found exactly
without a (G, R) matrix: pairs of IoU 0 add nothing to a sum of IoUs.

A point's predicted box lies in the square ``p +- d``, ``d`` the largest distance from
``p`` to a side of its box (its *reach*); so it can overlap a GT only if ``p`` lies in
the GT grown by ``d``. Growing each GT, per level, by the largest reach of that level's
points in its image (``level_reach``) gives windows that ``WindowIndex`` searches; the
IoU of the pairs found is then the exact test.
"""
from __future__ import annotations

import torch

from ..contract import MatchInputs

__all__ = ["box_reach", "level_reach"]


def box_reach(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The largest distance from each point to a side of its box: points (R, 2), boxes
    (..., R, 4) -> (..., R) float64; 0 where it is not finite (such a box has IoU 0 with
    every box, ``paired_iou``)."""
    xy = points.double()
    boxes = boxes.double()
    reach = torch.cat([xy - boxes[..., :2], boxes[..., 2:] - xy], dim=-1).abs().amax(dim=-1)
    return torch.where(torch.isfinite(reach), reach, torch.zeros_like(reach))


def level_reach(inputs: MatchInputs) -> torch.Tensor:
    """(N, L) float64: per image and level, the largest reach of the points' predicted
    boxes (0 for an empty level)."""
    reach = box_reach(inputs.points, inputs.pred_boxes)  # (N, R)
    return torch.stack([
        part.amax(dim=1) if part.shape[1] else part.new_zeros(len(part))
        for part in reach.split(list(inputs.num_points_per_level), dim=1)
    ], dim=1)

