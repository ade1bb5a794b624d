"""The (GT, point) pairs whose predicted box overlaps the GT, found exactly without a
(G, R) matrix, and the dynamic k that methods derive from their IoUs.

A method that ranks every point of the image by the IoU ``u`` of its predicted box with
a GT (TAL's top m, the dynamic k of DSL, OTA and SimOTA) needs only the pairs with
``u > 0``: the others rank last. A predicted box ``b`` of a point ``p`` lies in the
square ``p +- d``, ``d`` the largest distance from ``p`` to a side of ``b`` (its
*reach*), so ``b`` can overlap a GT only if ``p`` lies in the GT grown by ``d`` on every
side. :func:`pairs_with_overlap` groups each image's points by level and by reach (in
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

from ..contract import MatchInputs
from .batch import BatchGTs, ImagesSideBySide
from .geometry import paired_iou
from .pairs import WindowIndex, widen
from .ranking import first_k_per_group

__all__ = ["REACH_EDGES", "OverlapPairs", "box_reach", "dynamic_k", "level_reach", "pairs_with_overlap"]

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
    (..., R, 4) -> (..., R) float64; 0 where a box is not finite (its IoU with any box is
    0, ``paired_iou``)."""
    xy = points.double()
    boxes = boxes.double()
    reach = torch.cat([xy - boxes[..., :2], boxes[..., 2:] - xy], dim=-1).abs().amax(dim=-1)
    return torch.where(torch.isfinite(reach), reach, torch.zeros_like(reach))


def pairs_with_overlap(
    inputs: MatchInputs, gts: BatchGTs, among: Optional[torch.Tensor] = None,
    max_pairs: Optional[int] = None,
) -> Iterator[OverlapPairs]:
    """Every (GT, point) pair of the batch whose point's predicted box overlaps the GT
    (``u > 0``), exactly (module docstring), in parts of consecutive whole GT boxes
    holding about ``max_pairs`` (``pairs.MAX_CHUNK_ELEMENTS``) searched points each.
    ``among`` (N * R,) bool: only the points (flat keys) where it is True; all if None."""
    points, strides = inputs.points.double(), inputs.strides.double()
    num_images, num_points = gts.num_images, gts.num_points
    levels = inputs.num_points_per_level
    num_groups = len(levels) * (len(REACH_EDGES) + 1)
    reach = box_reach(inputs.points, inputs.pred_boxes).reshape(-1)  # (N * R,)
    edges = torch.tensor(REACH_EDGES, dtype=torch.float64, device=points.device)
    level = torch.repeat_interleave(
        torch.arange(len(levels), device=points.device),
        torch.tensor(levels, device=points.device), output_size=num_points,
    ).repeat(num_images)
    group = level * (len(REACH_EDGES) + 1) + torch.bucketize(reach / strides.repeat(num_images),
                                                             edges)  # (N * R,)
    image = torch.arange(num_images, device=points.device).repeat_interleave(num_points)
    searched = torch.isfinite(inputs.pred_boxes).all(dim=-1).reshape(-1)  # else u = 0
    if among is not None:
        searched &= among
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
    placed = strip.place(points.index_select(0, order % num_points),
                         torch.div(order, num_points, rounding_mode="floor"))
    index = WindowIndex(placed, counts)
    boxes = gts.boxes.double()
    grown = group_reach.index_select(0, gts.image)[:, :, None]  # (M, groups, 1)
    windows = torch.cat([boxes[:, None, :2] - grown, boxes[:, None, 2:] + grown], dim=2)
    windows = strip.windows(widen(windows), gts.image)
    flat_boxes = inputs.pred_boxes.reshape(-1, 4)
    for gt, entry in index.pairs(windows, max_pairs):
        key = order.index_select(0, entry)
        predicted = flat_boxes.index_select(0, key)
        overlapping = _overlaps(predicted, gts.boxes.index_select(0, gt)).nonzero().squeeze(1)
        gt, key = gt.index_select(0, overlapping), key.index_select(0, overlapping)
        iou = paired_iou(predicted.index_select(0, overlapping), gts.boxes.index_select(0, gt))
        yield OverlapPairs(gt=gt, key=key, iou=iou)


def _overlaps(predicted: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Whether finite predicted boxes (P, 4) overlap their GT boxes (P, 4) with positive
    area, i.e. ``u > 0`` (a finite union holds the positive overlap): comparisons only,
    exact in any precision; an inverted prediction has ``u = 0`` (a non-finite one too,
    but those are not searched)."""
    x0, y0, x1, y1 = predicted.unbind(dim=-1)
    u0, v0, u1, v1 = gt_boxes.unbind(dim=-1)
    return ((torch.minimum(x1, u1) > torch.maximum(x0, u0))
            & (torch.minimum(y1, v1) > torch.maximum(y0, v0)))


def dynamic_k(gt: torch.Tensor, iou: torch.Tensor, key: torch.Tensor, num_gts: int,
              q: int) -> torch.Tensor:
    """The dynamic k of OTA, SimOTA and DSL for every GT: ``max(1, floor(s))``, ``s`` the
    sum of the ``q`` largest IoUs among its pairs (all of them when fewer), summed in
    float64, largest first. gt (P,), iou (P,), key (P,) of the pairs with ``u > 0`` of
    all GTs, which may come from several parts -> (num_gts,) long. A histogram of each
    GT's IoUs first keeps the pairs from the bin of its q-th largest up."""
    bin_of_pair = (iou * _IOU_BINS).long().clamp(min=0, max=_IOU_BINS - 1)  # monotone in u
    histogram = torch.bincount(gt * _IOU_BINS + bin_of_pair, minlength=num_gts * _IOU_BINS)
    at_or_above = histogram.view(num_gts, _IOU_BINS).flip(1).cumsum(1).flip(1)
    lowest_bin = ((at_or_above >= q).sum(dim=1) - 1).clamp(min=0)  # holds the q-th largest
    kept = (bin_of_pair >= lowest_bin.index_select(0, gt)).nonzero().squeeze(1)
    gt, iou, key = gt.index_select(0, kept), iou.index_select(0, kept), key.index_select(0, kept)
    q_of_gt = torch.full((num_gts,), q, dtype=torch.long, device=gt.device)
    top = first_k_per_group(gt, -iou, key, q_of_gt, exact=False)  # (gt, rank) order
    gt, iou = gt.index_select(0, top), iou.index_select(0, top).double()
    counts = torch.bincount(gt, minlength=num_gts)
    rank = torch.arange(len(gt), device=gt.device) - (counts.cumsum(0) - counts).index_select(0, gt)
    largest = iou.new_zeros((num_gts, q))
    largest[gt, rank] = iou
    total = largest[:, 0]
    for column in range(1, q):  # largest first, in a fixed order on every device
        total = total + largest[:, column]
    return total.floor().long().clamp(min=1)


_IOU_BINS = 64
"""Bins of :func:`dynamic_k`'s histogram of the IoUs in (0, 1]."""


def level_reach(inputs: MatchInputs) -> torch.Tensor:
    """(N, L) float64: per image and level, the largest reach of the points' predicted
    boxes (0 for an empty level)."""
    reach = box_reach(inputs.points, inputs.pred_boxes)  # (N, R)
    return torch.stack([
        part.amax(dim=1) if part.shape[1] else part.new_zeros(len(part))
        for part in reach.split(list(inputs.num_points_per_level), dim=1)
    ], dim=1)
