"""The (GT, point) pairs whose predicted box overlaps the GT, found exactly without a
(G, R) matrix.

A method that ranks every point of the image by the IoU ``u`` of its predicted box with
a GT (TAL's top m) or sums its largest IoUs (the dynamic k of DSL and SimOTA,
``dynamic_k.py``) needs only the pairs with ``u > 0``: the others rank last and add
nothing. A predicted box ``b`` of a point ``p`` lies in the square ``p +- d``, ``d`` the
largest distance from ``p`` to a side of ``b`` (its *reach*, :func:`box_reach`), so ``b``
can overlap a GT only if ``p`` lies in the GT grown by ``d`` on every side.
:func:`pairs_with_overlap` groups each image's points by level and by reach (in
strides: up to 1, 2, 4, 8, 16 and beyond), grows every GT by the largest reach of each
group of its image and finds the points of those windows with ``WindowIndex``; then it
keeps the pairs with ``u > 0``. A few points with huge boxes (untrained predictions)
widen only the window of their own group, which holds few points, so the search stays
proportional to the pairs found plus the columns the windows span; the GT chunks of
``WindowIndex`` bound the memory whatever the boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from ...geometry import clamped_areas, iou_from_parts, overlap_sides_of_coordinates
from ..contract import MatchInputs
from .batch import BatchGTs, ImagesSideBySide
from .pairs import WindowIndex, widen

__all__ = ["DENSE_SUBSET", "REACH_EDGES", "OverlapPairs", "box_reach", "pairs_with_overlap"]

DENSE_SUBSET = 0.8
"""Above this fraction of the searchable points, :func:`pairs_with_overlap` searches all
of them and keeps the subset's pairs after: a subset's scattered points lose the full
grid's one row search per window, which then costs more than the pairs outside it
(measured at G = 1,000 and 5,000: equal near 80 %, the subset search 2-9x faster at
1-20 %)."""

REACH_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0)
"""Upper edges, in strides of the point's level, of the reach groups of
:func:`pairs_with_overlap`; a last group holds the larger reaches."""


@dataclass
class OverlapPairs:
    """Pairs of some GT boxes of the batch, each GT's pairs all in one part.

    Attributes:
        gt: (P,) batch GT index (``BatchGTs``).
        key: (P,) flat point key ``image * R + point``.
        iou: (P,) IoU ``u > 0`` of the point's predicted box with the GT, in the
            inputs' dtype (``paired_iou``, as the losses compute it).
    """

    gt: torch.Tensor
    key: torch.Tensor
    iou: torch.Tensor


def box_reach(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The largest distance from each point to a side of its box: points (R, 2), boxes
    (..., R, 4) -> (..., R) float64; not finite exactly where the box is not (its IoU
    with any box is then 0, ``paired_iou``)."""
    return (boxes.double() - points.double().repeat(1, 2)).abs().amax(dim=-1)


def pairs_with_overlap(
    inputs: MatchInputs, gts: BatchGTs, among: Optional[torch.Tensor] = None,
    max_pairs: Optional[int] = None,
) -> Iterator[OverlapPairs]:
    """Every (GT, point) pair of the batch whose point's predicted box overlaps the GT
    (``u > 0``), exactly (module docstring), in parts of consecutive whole GT boxes
    holding about ``max_pairs`` (``pairs.MAX_CHUNK_ELEMENTS``) searched points each.
    ``among`` (N * R,) bool: only the points (flat keys) where it is True; all if None.
    A sparse ``among`` is searched alone, a dense one (``DENSE_SUBSET``) filters the
    pairs of the full search."""
    points, strides = inputs.points.double(), inputs.strides.double()
    num_images, num_points = gts.num_images, gts.num_points
    levels = inputs.num_points_per_level
    num_groups = len(levels) * (len(REACH_EDGES) + 1)
    reach = box_reach(inputs.points, inputs.pred_boxes).reshape(-1)  # (N * R,)
    searched = torch.isfinite(reach)  # else u = 0
    edges = torch.tensor(REACH_EDGES, dtype=torch.float64, device=points.device)
    level = torch.repeat_interleave(
        torch.arange(len(levels), device=points.device),
        torch.tensor(levels, device=points.device), output_size=num_points,
    ).repeat(num_images)
    group = level * (len(REACH_EDGES) + 1) + torch.bucketize(reach / strides.repeat(num_images),
                                                             edges)  # (N * R,)
    image = torch.arange(num_images, device=points.device).repeat_interleave(num_points)
    kept = None if among is None else searched & among
    if kept is not None:
        subset, searchable = torch.stack([kept.sum(), searched.sum()]).tolist()  # one sync
        if subset <= DENSE_SUBSET * searchable:
            searched, kept = kept, None
    entries = searched.nonzero().squeeze(1)
    reach = torch.where(searched, reach, torch.zeros_like(reach))
    # the largest reach of each image's group: how far that group's boxes extend
    group_reach = reach.new_zeros(num_images * num_groups).scatter_reduce_(
        0, image * num_groups + group, reach, "amax"
    ).view(num_images, num_groups)
    strip = ImagesSideBySide.around(points)  # one index serves the batch
    entry_group = group.index_select(0, entries)
    order = entries.index_select(0, entry_group.argsort(stable=True))  # grouped as levels
    counts = torch.bincount(entry_group, minlength=num_groups).tolist()
    present = [group for group, count in enumerate(counts) if count]  # empty ones find nothing
    placed = strip.place(points.index_select(0, order % num_points),
                         torch.div(order, num_points, rounding_mode="floor"))
    index = WindowIndex(placed, [counts[group] for group in present])
    boxes = gts.boxes.double()
    group_reach = group_reach[:, torch.tensor(present, dtype=torch.long, device=points.device)]
    grown = group_reach.index_select(0, gts.image)[:, :, None]  # (M, present groups, 1)
    windows = torch.cat([boxes[:, None, :2] - grown, boxes[:, None, 2:] + grown], dim=2)
    windows = strip.windows(widen(windows), gts.image)
    flat_boxes = inputs.pred_boxes.reshape(-1, 4)
    predicted_area, gt_area = clamped_areas(flat_boxes), clamped_areas(gts.boxes)
    # the coordinates as columns, gathered per pair into contiguous (P,) tensors
    predicted_columns, gt_columns = flat_boxes.t().contiguous(), gts.boxes.t().contiguous()
    for gt, key in index.pairs(windows, max_pairs, point_values=order):
        width, height = overlap_sides_of_coordinates(
            [column.index_select(0, key) for column in predicted_columns],
            [column.index_select(0, gt) for column in gt_columns])
        # u > 0 exactly: a positive-area overlap (an inverted prediction has none; the
        # non-finite ones are not searched), whose finite union holds it
        overlapping = (width > 0) & (height > 0)
        if kept is not None:
            overlapping &= kept.index_select(0, key)
        overlapping = overlapping.nonzero().squeeze(1)
        gt, key = gt.index_select(0, overlapping), key.index_select(0, overlapping)
        overlap = width.index_select(0, overlapping) * height.index_select(0, overlapping)
        iou = iou_from_parts(overlap, predicted_area.index_select(0, key),
                             gt_area.index_select(0, gt))
        yield OverlapPairs(gt=gt, key=key, iou=iou)
