"""Spatial priors of (point, GT box) pairs: where around a box a point may be assigned
(centre regions, FCOS size ranges) and DW's soft Gaussian centre prior.

Every function broadcasts points (..., 2), strides (...) and boxes (..., 4), so that the
same expression serves the sparse pairs of ``pairs.py`` and, with ``points[None]`` and
``boxes[:, None]``, the dense ``(G, R)`` form.

Centre regions: the rectangle of half sides ``reach = (reach_x, reach_y)`` around the
box centre, in one of three shapes (``r`` the radius in strides, ``s`` the point's
stride, ``W, H`` the box's width and height):

- ``SQUARE``: ``reach = (r s, r s)``, FCOS centre sampling and LADA's CP;
- ``ASPECT_EQUAL_AREA``: ``reach = r s (sqrt(W / H), sqrt(H / W))``, the square's area
  with the box's aspect ratio (the ``fcos`` matcher's ``CENTER_PRIOR epcp``);
- ``ASPECT_STRETCHED``: ``reach = r s (W, H) / min(W, H)``, the square stretched along
  the box's long side, the short side kept (LADA's EPCP, Eq. 1-2; the ``lada``
  matcher's ``CENTER_PRIOR epcp``).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from .geometry import box_centers, side_distances

__all__ = [
    "ASPECT_EQUAL_AREA",
    "ASPECT_STRETCHED",
    "CENTER_REGION_SHAPES",
    "SQUARE",
    "center_region_reach",
    "fcos_size_ranges",
    "gaussian_center_prior",
    "in_center_region",
    "in_fcos_size_range",
]

SQUARE = "square"
ASPECT_EQUAL_AREA = "aspect_equal_area"
ASPECT_STRETCHED = "aspect_stretched"
CENTER_REGION_SHAPES = (SQUARE, ASPECT_EQUAL_AREA, ASPECT_STRETCHED)


def center_region_reach(
    strides: torch.Tensor, boxes: torch.Tensor, radius: float, shape: str
) -> torch.Tensor:
    """Half sides (x, y) of the centre region of ``shape`` (module docstring) around each
    box's centre: strides (...), boxes (..., 4), broadcast -> (..., 2). Also what the
    window search of the ``fcos`` matcher and the assignment visualiser use."""
    if shape not in CENTER_REGION_SHAPES:
        raise ValueError(
            f"centre region shape must be one of {CENTER_REGION_SHAPES}, got {shape!r}"
        )
    reach = (radius * strides)[..., None]
    sizes = boxes[..., 2:] - boxes[..., :2]  # (..., 2) = (W, H)
    if shape == ASPECT_EQUAL_AREA:
        reach = reach * (sizes / sizes.flip(dims=[-1])).sqrt()
    elif shape == ASPECT_STRETCHED:
        reach = reach * sizes / sizes.amin(dim=-1, keepdim=True)
    return reach.expand(torch.broadcast_shapes(reach.shape, sizes.shape))


def in_center_region(
    points: torch.Tensor,
    strides: torch.Tensor,
    boxes: torch.Tensor,
    radius: float,
    shape: str,
    closed: bool = False,
) -> torch.Tensor:
    """Whether each point lies in its box's centre region of ``shape``:
    ``|p - c| < reach`` on both axes (``closed``: ``<=``), c the box centre, reach
    :func:`center_region_reach`. FCOS samples in the open region (Chebyshev distance),
    LADA's C1 in the closed one. points (..., 2), strides (...), boxes (..., 4),
    broadcast -> (...) bool."""
    offsets = (points - box_centers(boxes)).abs()  # (..., 2)
    reach = center_region_reach(strides, boxes, radius, shape)
    inside = offsets <= reach if closed else offsets < reach
    return inside.all(dim=-1)


def fcos_size_ranges(
    strides: torch.Tensor, num_points_per_level: List[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each point's FCOS size range ``(4 s, 8 s)``, open below on the first level and
    above on the last: (R,) -> lower (R,), upper (R,)."""
    lower = strides * 4
    lower[: num_points_per_level[0]] = 0
    upper = strides * 8
    upper[-num_points_per_level[-1]:] = float("inf")
    return lower, upper


def in_fcos_size_range(
    points: torch.Tensor, boxes: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """FCOS multi-level rule: the largest side distance of the point to the box lies in
    its level's range ``(lower, upper)`` (:func:`fcos_size_ranges`). points (..., 2),
    boxes (..., 4), lower and upper (...), broadcast -> (...) bool."""
    largest = side_distances(points, boxes).amax(dim=-1)
    return (largest > lower) & (largest < upper)


def gaussian_center_prior(
    points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, sigma: float
) -> torch.Tensor:
    """DW's fixed soft centre prior (docs/methods/dw.md; DW paper Table 4, "soft center prior"):
    ``exp(-||(p - c) / s||^2 / (2 sigma^2))`` with c the box centre and s the point's
    stride, the product of one Gaussian per axis. Broadcasts points (..., 2), strides
    (...), boxes (..., 4) -> (...). It does not zero points outside the box."""
    offsets = (points - box_centers(boxes)) / strides[..., None]
    return torch.exp(-(offsets**2).sum(dim=-1) / (2 * sigma**2))
