"""Which points lie inside at least one GT box of their image, without listing the
(GT, point) pairs: DSL's candidate set V (and any "inside some box" union).

On every level the points are grouped in columns of equal x. A box crosses the columns
strictly between its sides and covers, in each, the open interval between its top and
bottom; a point is inside some box when, among the intervals of its column (and image)
that start strictly above it, one ends strictly below it. Sorting the intervals by
(column, top) and taking the running maximum of their bottoms answers that for every
point with one binary search. The work grows with the columns the boxes span (a few per
box and level) and the points, not with the points inside the boxes.

Coordinates are compared as float32 values (the inputs' precision) through
order-preserving integer keys, so that a point on a box's side is exactly outside.
"""
from __future__ import annotations

from typing import List

import torch

from .ranking import monotone_float32_bits

__all__ = ["inside_some_box"]

_LOW_BITS = 32  # a float32 value's key fits below; a group number above


def inside_some_box(
    points: torch.Tensor,
    num_points_per_level: List[int],
    boxes: torch.Tensor,
    box_image: torch.Tensor,
    num_images: int,
) -> torch.Tensor:
    """(num_images * R,) bool: whether each point of each image lies strictly inside
    (every side distance > 0) at least one of its image's boxes. points (R, 2), levels
    concatenated; boxes (M, 4) XYXY; box_image (M,) the image of each box."""
    device = points.device
    num_levels = len(num_points_per_level)
    level = torch.repeat_interleave(
        torch.arange(num_levels, device=device),
        torch.tensor(num_points_per_level, device=device), output_size=len(points),
    )
    x_bits = monotone_float32_bits(points[:, 0])
    columns, column_of_point = torch.unique((level << _LOW_BITS) | x_bits, sorted=True,
                                            return_inverse=True)  # (level, x) keys
    # each (box, level): the columns strictly between the box's sides
    levels = torch.arange(num_levels, device=device)[None] << _LOW_BITS
    left = torch.searchsorted(columns, levels | monotone_float32_bits(boxes[:, 0])[:, None],
                              side="right")  # (M, L)
    right = torch.searchsorted(columns, levels | monotone_float32_bits(boxes[:, 2])[:, None],
                               side="left")
    counts = (right - left).clamp(min=0).reshape(-1)
    owner = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    column = left.reshape(-1).index_select(0, owner) + (
        torch.arange(len(owner), device=device) - (counts.cumsum(0) - counts).index_select(0, owner))
    box = torch.div(owner, num_levels, rounding_mode="floor")
    # the intervals sorted by (image and column, top); the running maximum of their bottoms
    group = box_image.index_select(0, box) * len(columns) + column
    top = monotone_float32_bits(boxes[:, 1]).index_select(0, box)
    order = ((group << _LOW_BITS) | top).argsort()
    group = group.index_select(0, order)
    run = torch.ones_like(group)
    run[1:] = (group[1:] != group[:-1]).long()
    bottom = monotone_float32_bits(boxes[:, 3]).index_select(0, box).index_select(0, order)
    # a later run's keys exceed every earlier one's, so one running maximum serves all
    reach = torch.cummax((run.cumsum(0) << _LOW_BITS) | bottom, 0)[0] & ((1 << _LOW_BITS) - 1)
    keys = (group << _LOW_BITS) | top.index_select(0, order)
    # each point: the last interval of its column starting strictly above it
    point_group = (torch.arange(num_images, device=device).repeat_interleave(len(points))
                   * len(columns) + column_of_point.repeat(num_images))
    y = monotone_float32_bits(points[:, 1]).repeat(num_images)
    last = torch.searchsorted(keys, (point_group << _LOW_BITS) | y, side="left") - 1
    safe = last.clamp(min=0)
    return ((last >= 0) & (group.index_select(0, safe) == point_group)
            & (reach.index_select(0, safe) > y)) if len(keys) else torch.zeros_like(y, dtype=torch.bool)
