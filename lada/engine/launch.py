"""Process launch: detectron2's ``launch`` with CUDA; without CUDA, one process per
``--num-gpus`` communicating over gloo (detectron2 v0.6's workers require CUDA and NCCL;
upstream's later launcher also falls back to gloo)."""
from __future__ import annotations

import os
import socket
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

from ..compat import create_local_process_group

__all__ = ["launch"]


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
) -> None:
    """Runs ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes."""
    world_size = num_machines * num_gpus_per_machine
    if torch.cuda.is_available() or world_size == 1:
        detectron2_launch(main_func, num_gpus_per_machine, num_machines=num_machines,
                          machine_rank=machine_rank, dist_url=dist_url, args=args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args)),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args):
    # The processes of a machine share its cores.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size,
        rank=machine_rank * per_machine + local_rank,
    )
    create_local_process_group(per_machine)
    comm.synchronize()
    main_func(*args)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
