"""Dynamic k (OTA section 3.3, YOLOX's SimOTA, RTMDet's DSL): how many positives a GT
box gets, estimated from the IoUs of its pairs' predicted boxes with it,

    k_g = max(1, floor(sum of the q largest u(p, g) over the GT's point set)),

all of them when the set holds fewer than q. The set is the method's (OTA: the centre
prior; SimOTA: the image's candidate points; DSL: the points inside some GT); pairs of
IoU 0 add nothing, so a caller may pass only the pairs whose predicted box overlaps the
GT (``overlaps.pairs_with_overlap``). The q values are summed in float64, largest first,
one column at a time: a fixed order, so that the floor never depends on the batch, the
GT order or the device's reduction order.
"""
from __future__ import annotations

import torch

from .ranking import first_k_per_group

__all__ = ["dynamic_k"]

_IOU_BINS = 64
"""Bins of the histogram over [0, 1] that first narrows each GT's IoUs to about q."""


def dynamic_k(gt: torch.Tensor, iou: torch.Tensor, num_gts: int, q: int) -> torch.Tensor:
    """``k_g = max(1, floor(sum of the q largest IoUs of g's pairs))`` (module docstring)
    for pairs given as gt (P,) long in [0, num_gts) and iou (P,) in [0, 1], any float
    dtype, compared exactly; non-finite IoUs count as 0. -> (num_gts,) long, at least 1
    (also for a GT without pairs: the caller decides what such a GT supplies).

    A histogram of each GT's IoUs first keeps its pairs from the bin of its q-th largest
    up, so that about q pairs per GT are ranked (``ranking.first_k_per_group``) however
    many it has. The work covers the GTs from the lowest to the highest index in ``gt``,
    not all ``num_gts``: a caller may pass its pairs in parts of consecutive GTs."""
    k = torch.ones(num_gts, dtype=torch.long, device=gt.device)
    if len(gt):
        low, high = int(gt.min()), int(gt.max())
        k[low : high + 1] = _dynamic_k_of_range(gt - low, iou, high - low + 1, q)
    return k


def _dynamic_k_of_range(gt: torch.Tensor, iou: torch.Tensor, num_gts: int, q: int) -> torch.Tensor:
    """:func:`dynamic_k` of GTs numbered from 0 to ``num_gts - 1``."""
    iou = torch.where(torch.isfinite(iou), iou, torch.zeros_like(iou))
    bins = (iou * _IOU_BINS).long().clamp(min=0, max=_IOU_BINS - 1)  # (P,) monotone in u
    histogram = torch.bincount(gt * _IOU_BINS + bins, minlength=num_gts * _IOU_BINS)
    at_or_above = histogram.view(num_gts, _IOU_BINS).flip(1).cumsum(1).flip(1)
    lowest_bin = ((at_or_above >= q).sum(dim=1) - 1).clamp(min=0)  # the q-th largest's bin
    kept = (bins >= lowest_bin.index_select(0, gt)).nonzero().squeeze(1)
    gt, iou = gt.index_select(0, kept), iou.index_select(0, kept)
    q_of_gt = torch.full((num_gts,), q, dtype=torch.long, device=gt.device)
    top = first_k_per_group(gt, -iou, None, q_of_gt,  # (gt, rank) order, equal IoUs in any
                            every_group=True)  # each GT keeps the pairs of its q-th's bin
    gt, iou = gt.index_select(0, top), iou.index_select(0, top).double()
    counts = torch.bincount(gt, minlength=num_gts)
    rank = torch.arange(len(gt), device=gt.device) - (counts.cumsum(0) - counts).index_select(0, gt)
    largest = iou.new_zeros((num_gts, q))  # (G, q) largest first, zero-padded
    largest[gt, rank] = iou
    total = largest.new_zeros(num_gts)
    for column in largest.unbind(dim=1):  # largest first: a fixed summation order
        total = total + column
    return total.floor().long().clamp(min=1)
