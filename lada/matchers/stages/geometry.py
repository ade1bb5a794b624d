"""Point and box geometry of the matchers: the inside test and anchor boxes, and the
box geometry they share with the losses (``lada/geometry.py``, re-exported here). Boxes
are XYXY pixels; all functions broadcast, so ``points[None]`` against ``boxes[:, None]``
gives ``(G, R)``."""
from __future__ import annotations

import torch

from ...geometry import box_areas, box_centers, clamp_inverted, paired_iou, side_distances

__all__ = [
    "INSIDE_EPS",
    "anchor_boxes",
    "box_areas",
    "box_centers",
    "clamp_inverted",
    "is_inside",
    "paired_iou",
    "rows_at",
    "side_distances",
]

INSIDE_EPS = 0.01
"""A point is inside a box when all four side distances exceed this (docs/methods/README.md,
"Conventions shared by the methods")."""


def is_inside(points: torch.Tensor, boxes: torch.Tensor, eps: float = INSIDE_EPS) -> torch.Tensor:
    """Whether points (..., 2) lie strictly inside boxes (..., 4), by more than ``eps``
    on every side; broadcast to (...). Needs no (..., 4) intermediate."""
    x, y = points[..., 0], points[..., 1]
    return (
        (x - boxes[..., 0] > eps)
        & (y - boxes[..., 1] > eps)
        & (boxes[..., 2] - x > eps)
        & (boxes[..., 3] - y > eps)
    )


def anchor_boxes(points: torch.Tensor, strides: torch.Tensor, scale: float) -> torch.Tensor:
    """The square anchor box of side ``scale * stride`` centred on each point:
    (R, 2), (R,) -> (R, 4). ATSS's single anchor uses ``scale = 8``."""
    half = (scale * strides / 2)[:, None]
    return torch.cat([points - half, points + half], dim=1)


def rows_at(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a table (R, ...) and an index of any shape (...) long ->
    (index shape, ...): the same values by ``index_select``, which gathers rows 2-3x
    faster than advanced indexing on the CPU (at 100,000+ rows, as the (M, K)
    candidates of ATSS at thousands of GTs)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])
