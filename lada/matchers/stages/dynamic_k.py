"""Dynamic k (OTA section 3.3, YOLOX's SimOTA, RTMDet's DSL): how many positives a GT
box gets, estimated from the IoUs of its pairs' predicted boxes with it,

    k_g = max(1, floor(sum of the q largest u(p, g) over the GT's point set)),

all of them when the set holds fewer than q. The set is the method's (OTA: the centre
prior; SimOTA: the image's candidate points); pairs of IoU 0 add nothing, so a caller
may pass only the pairs whose predicted box intersects the GT. The q values are summed in
float64, largest first, one column at a time: a fixed order, so that the floor never
depends on the batch, the GT order or the device's reduction order.
"""
from __future__ import annotations

import torch

__all__ = ["dynamic_k", "top_values_per_group"]


def top_values_per_group(
    group: torch.Tensor, values: torch.Tensor, num_groups: int, q: int
) -> torch.Tensor:
    """The ``q`` largest ``values`` of each group, in descending order, zero-padded where a
    group has fewer: group (P,) long in [0, num_groups), values (P,) -> (num_groups, q),
    the dtype of ``values``. One sort of the P pairs (of an int64 key made of the group
    and the float32 bits for non-negative float32 values; two sorts otherwise), no
    (groups, P) matrix."""
    order = _group_then_descending_order(group, values)
    sorted_group = group.index_select(0, order)
    counts = torch.bincount(sorted_group, minlength=num_groups)
    rank = torch.arange(len(order), device=group.device) - (counts.cumsum(0) - counts).index_select(
        0, sorted_group
    )  # (P,) position of each value within its group, largest first
    keep = (rank < q).nonzero().squeeze(1)
    top = values.new_zeros((num_groups, q))
    top[sorted_group.index_select(0, keep), rank.index_select(0, keep)] = values.index_select(
        0, order.index_select(0, keep))
    return top


def _group_then_descending_order(group: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Permutation sorting P pairs by group (P,) ascending, then values (P,) descending."""
    if values.dtype == torch.float32 and len(values) and bool((values >= 0).all()):
        bits = (values + 0.0).view(torch.int32).long()  # monotone for values >= 0
        return ((group << 31) | (0x7FFFFFFF - bits)).argsort()
    order = values.argsort(descending=True, stable=True)
    return order.index_select(0, group.index_select(0, order).argsort(stable=True))


def dynamic_k(gt: torch.Tensor, iou: torch.Tensor, num_gts: int, q: int) -> torch.Tensor:
    """``k_g = max(1, floor(sum of the q largest IoUs of g's pairs))`` (module docstring)
    for pairs given as gt (P,) long in [0, num_gts) and iou (P,) in [0, 1]; non-finite
    IoUs count as 0. -> (num_gts,) long, at least 1 (also for a GT without pairs: the
    caller decides what such a GT supplies).

    A histogram of each GT's IoUs first keeps its pairs from the bin of its q-th largest
    up, so that about q pairs per GT are sorted however many it has."""
    iou = torch.where(torch.isfinite(iou), iou, torch.zeros_like(iou))
    bins = (iou * _IOU_BINS).long().clamp(min=0, max=_IOU_BINS - 1)  # (P,)
    histogram = torch.bincount(gt * _IOU_BINS + bins, minlength=num_gts * _IOU_BINS)
    at_or_above = histogram.view(num_gts, _IOU_BINS).flip(1).cumsum(1).flip(1)
    lowest_bin = ((at_or_above >= q).sum(dim=1) - 1).clamp(min=0)  # the q-th largest's bin
    kept = (bins >= lowest_bin.index_select(0, gt)).nonzero().squeeze(1)
    top = top_values_per_group(gt.index_select(0, kept), iou.index_select(0, kept), num_gts,
                               q).double()
    total = top.new_zeros(num_gts)
    for column in top.unbind(dim=1):  # largest first: a fixed summation order
        total = total + column
    return total.floor().long().clamp(min=1)


_IOU_BINS = 64
"""Bins of the histogram of :func:`dynamic_k` over [0, 1]."""
