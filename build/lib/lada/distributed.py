"""Collectives over detectron2's process group (``detectron2.utils.comm``), shared by the
losses."""
from __future__ import annotations

import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["all_reduce_mean"]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` (any shape) over all workers, as a new tensor; ``value`` itself
    with one worker or without a process group."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world_size
