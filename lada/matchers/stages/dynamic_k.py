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
    the dtype of ``values``. One sort of the P values, no (groups, P) matrix."""
    order = values.argsort(descending=True, stable=True)
    order = order.index_select(0, group.index_select(0, order).argsort(stable=True))
    sorted_group = group.index_select(0, order)
    counts = torch.bincount(sorted_group, minlength=num_groups)
    rank = torch.arange(len(order), device=group.device) - (counts.cumsum(0) - counts).index_select(
        0, sorted_group
    )  # (P,) position of each value within its group, largest first
    keep = rank < q
    top = values.new_zeros((num_groups, q))
    top[sorted_group[keep], rank[keep]] = values.index_select(0, order[keep])
    return top


def dynamic_k(gt: torch.Tensor, iou: torch.Tensor, num_gts: int, q: int) -> torch.Tensor:
    """``k_g = max(1, floor(sum of the q largest IoUs of g's pairs))`` (module docstring)
    for pairs given as gt (P,) long in [0, num_gts) and iou (P,); non-finite IoUs count as
    0. -> (num_gts,) long, at least 1 (also for a GT without pairs: the caller decides
    what such a GT supplies)."""
    iou = iou.double()
    iou = torch.where(torch.isfinite(iou), iou, torch.zeros_like(iou))
    top = top_values_per_group(gt, iou, num_gts, q)
    total = top.new_zeros(num_gts)
    for column in top.unbind(dim=1):  # largest first: a fixed summation order
        total = total + column
    return total.floor().long().clamp(min=1)
