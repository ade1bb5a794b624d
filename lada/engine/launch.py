"""Process launch of ``train_net.py``: one training process per device, on one or several
machines, through ``torch.distributed`` and detectron2's ``comm``.

* ``--dist-url env://``: the processes were started by ``torchrun`` or a SLURM-style
  launcher, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT`` (and, torchrun, ``LOCAL_WORLD_SIZE``) in each process; nothing is
  spawned. NCCL with CUDA, gloo without.
* Otherwise (``tcp://HOST:PORT``, ``auto``): with CUDA, detectron2's ``launch`` (one
  process per GPU, NCCL); without CUDA, ``--num-gpus`` processes per machine over gloo
  (detectron2 v0.6's workers require CUDA and NCCL; upstream's later launcher also falls
  back to gloo).

When the spawned processes stop on Ctrl-C or SIGTERM (each saves a checkpoint and exits
with 128 + the signal, :mod:`lada.engine.interrupt`), the process that spawned them, which
got the terminal's Ctrl-C too, waits for them and exits with that code, without the
``KeyboardInterrupt`` or ``ProcessExitedException`` traceback of its wait.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

from ..compat import create_local_process_group
from ..harmless_warnings import TYPED_STORAGE, ignoring
from .interrupt import STOPPED_EXIT_CODES

__all__ = ["EnvLayout", "launch"]

ENV_URL = "env://"
TIMEOUT = timedelta(minutes=30)  # detectron2's DEFAULT_TIMEOUT


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
) -> None:
    """Runs ``main_func(*args)`` in every training process: spawns
    ``num_machines * num_gpus_per_machine`` processes in all, or, with ``env://``, is
    itself one of the processes an external launcher started."""
    main_func = functools.partial(_without_harmless_warnings, main_func)
    if dist_url == ENV_URL:
        layout = EnvLayout.from_environ(os.environ, num_gpus_per_machine, num_machines, machine_rank)
        _env_worker(layout, main_func, tuple(args))
        return
    _refuse_launcher_environment(os.environ)
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:  # no process is spawned: this one trains
        detectron2_launch(main_func, num_gpus_per_machine, num_machines=num_machines,
                          machine_rank=machine_rank, dist_url=dist_url, args=args)
        return
    if torch.cuda.is_available():
        _spawning(lambda: detectron2_launch(
            main_func, num_gpus_per_machine, num_machines=num_machines,
            machine_rank=machine_rank, dist_url=dist_url, args=args))
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    worker_args = (main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args))
    if num_gpus_per_machine == 1:  # one process on this machine: this one
        _cpu_worker(0, *worker_args)
    else:
        _spawning(lambda: mp.spawn(_cpu_worker, nprocs=num_gpus_per_machine, args=worker_args,
                                   daemon=False))


def _spawning(spawn_and_wait: Callable[[], None]) -> None:
    """Runs ``spawn_and_wait`` (it starts the training processes and waits for them);
    when they stop on a signal, exits with their ``128 + signal`` instead of a traceback:
    on Ctrl-C, which reached them too, after waiting for them (multiprocessing joins its
    non-daemonic processes at exit) to write their checkpoint. A process that exits
    otherwise (a refusal's one line, ``SystemExit``, or a crash) has said why in its own
    output: this one adds a line naming it and exits with its status (``128 + signal``
    for a signal), not with the traceback of its wait."""
    try:
        spawn_and_wait()
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None
    except mp.ProcessExitedException as error:
        if error.exit_code in STOPPED_EXIT_CODES:
            raise SystemExit(error.exit_code) from None
        code = 128 - error.exit_code if error.exit_code < 0 else error.exit_code
        how = (f"on signal {error.signal_name}" if error.signal_name
               else f"with exit status {error.exit_code}")
        print(f"training process {error.error_index} exited {how}; its output above says why",
              file=sys.stderr, flush=True)
        raise SystemExit(code) from None


@dataclass(frozen=True)
class EnvLayout:
    """Where this process sits, as an external launcher describes it in the environment."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        num_gpus_per_machine: int = 1,
        num_machines: int = 1,
        machine_rank: int = 0,
    ) -> "EnvLayout":
        """Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (required, with ``MASTER_ADDR``
        and ``MASTER_PORT``) and ``LOCAL_WORLD_SIZE`` (set by torchrun; otherwise
        ``--num-gpus`` gives the processes per machine). ``--num-gpus``,
        ``--num-machines`` and ``--machine-rank`` may be left at their defaults; when
        given they must agree with the environment. Ranks of one machine must be
        consecutive (``RANK = machine * LOCAL_WORLD_SIZE + LOCAL_RANK``), as torchrun and
        SLURM's block distribution number them; detectron2's per-machine group needs it."""
        required = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        missing = [name for name in required if not environ.get(name)]
        if missing:
            raise ValueError(
                f"--dist-url env:// reads the process layout from the environment, but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start "
                "train_net.py with torchrun, or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR "
                "and MASTER_PORT in each process (see docs/scale-out.md)."
            )
        values = {name: _env_int(environ, name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        local_world = (
            _env_int(environ, "LOCAL_WORLD_SIZE") if environ.get("LOCAL_WORLD_SIZE")
            else num_gpus_per_machine
        )
        layout = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], local_world)
        layout._check(num_gpus_per_machine, num_machines, machine_rank)
        return layout

    @property
    def machine_rank(self) -> int:
        return self.rank // self.local_world_size

    @property
    def num_machines(self) -> int:
        return self.world_size // self.local_world_size

    def _check(self, num_gpus_per_machine: int, num_machines: int, machine_rank: int) -> None:
        problems = []
        if not 0 <= self.rank < self.world_size:
            problems.append(f"RANK {self.rank} is not in [0, WORLD_SIZE = {self.world_size})")
        if not 0 <= self.local_rank < self.local_world_size:
            problems.append(
                f"LOCAL_RANK {self.local_rank} is not below the {self.local_world_size} processes "
                "per machine (LOCAL_WORLD_SIZE, or --num-gpus when it is not set)"
            )
        elif self.world_size % self.local_world_size or (
            self.rank % self.local_world_size != self.local_rank
        ):
            problems.append(
                f"RANK {self.rank}, LOCAL_RANK {self.local_rank}, WORLD_SIZE {self.world_size} "
                f"do not form machines of {self.local_world_size} processes with consecutive ranks"
            )
        if num_gpus_per_machine != 1 and num_gpus_per_machine != self.local_world_size:
            problems.append(
                f"--num-gpus {num_gpus_per_machine} but LOCAL_WORLD_SIZE is {self.local_world_size}"
            )
        if not problems and num_machines != 1 and num_machines != self.num_machines:
            problems.append(f"--num-machines {num_machines} but the environment has {self.num_machines}")
        if not problems and machine_rank != 0 and machine_rank != self.machine_rank:
            problems.append(f"--machine-rank {machine_rank} but RANK {self.rank} is on machine {self.machine_rank}")
        if problems:
            raise ValueError("--dist-url env://: " + "; ".join(problems))


def _env_int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def _refuse_launcher_environment(environ: Mapping[str, str]) -> None:
    """torchrun without ``--dist-url env://`` would start independent trainings that all
    write to one OUTPUT_DIR: refuse."""
    world = environ.get("WORLD_SIZE", "")
    if environ.get("LOCAL_RANK") and world.isdigit() and int(world) > 1:
        raise ValueError(
            f"this process was started by a launcher (WORLD_SIZE={world}, LOCAL_RANK is set), "
            "but --dist-url is not env://: add `--dist-url env://` so that its processes "
            "train together."
        )


def _env_worker(layout: EnvLayout, main_func: Callable, args: tuple) -> None:
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        if layout.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {layout.local_rank}, but this machine has "
                f"{torch.cuda.device_count()} CUDA devices (one process per device)"
            )
        torch.cuda.set_device(layout.local_rank)
    else:
        _share_cores(layout.local_world_size)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo", init_method=ENV_URL,
        world_size=layout.world_size, rank=layout.rank, timeout=TIMEOUT,
    )
    _run(main_func, args, layout.local_world_size)


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args):
    _share_cores(per_machine)
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size,
        rank=machine_rank * per_machine + local_rank, timeout=TIMEOUT,
    )
    _run(main_func, args, per_machine)


def _run(main_func: Callable, args: tuple, per_machine: int) -> None:
    """In an initialised process group: detectron2's per-machine group, then training."""
    create_local_process_group(per_machine)
    comm.synchronize()
    main_func(*args)
    comm.synchronize()  # no process leaves while another still communicates
    dist.destroy_process_group()


def _without_harmless_warnings(main_func: Callable, *args):
    """``main_func(*args)`` without the ``TypedStorage`` warning of detectron2's gathers
    between processes (:mod:`lada.harmless_warnings`)."""
    with ignoring(TYPED_STORAGE):
        return main_func(*args)


def _share_cores(per_machine: int) -> None:
    """The processes of a machine share its cores, unless OMP_NUM_THREADS says otherwise
    (torchrun sets 1)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
