"""One run per ``OUTPUT_DIR``: an exclusive lock on the folder for the life of a run, so
that a second training (or evaluation) into the same folder stops at once instead of
overwriting the first run's checkpoints, metrics and log.

The lock is an ``flock`` on ``OUTPUT_DIR/.train_net.lock``, which names its holder (pid,
host, start time). The kernel releases it however the process ends (an exception, a
signal, ``kill -9``); a normal end also empties the file. A file that still names a
holder when its lock is free was left by a run that was killed: the next run takes it
over with a warning naming that run. Only the main process (rank 0) takes the lock: it
alone writes the folder's checkpoints and metrics, and the other processes of the same
run (``--num-gpus``, torchrun, other machines with a shared folder) must not refuse
their own run.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from detectron2.utils import comm

__all__ = ["LOCK_FILE", "OutputDirInUseError", "output_dir_lock"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".train_net.lock"


class OutputDirInUseError(RuntimeError):
    """Another run holds the lock of the ``OUTPUT_DIR`` this run was given."""


@contextmanager
def output_dir_lock(output_dir: str | Path) -> Iterator[None]:
    """Holds the exclusive lock of ``output_dir`` (created if missing) while the block
    runs, on the main process; raises :class:`OutputDirInUseError` naming the folder and
    the holder's pid when another run holds it."""
    if comm.get_rank() != 0:
        yield
        return
    path = Path(output_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise OutputDirInUseError(
                f"OUTPUT_DIR {Path(output_dir).resolve()} is in use by another run "
                f"({_holder(fd) or 'its pid is not written yet'}): two runs in one folder "
                "overwrite each other's checkpoints and log. Give this run another "
                "OUTPUT_DIR, or wait until the other one ends."
            ) from None
        left = _holder(fd)
        if left:
            logger.warning(
                "OUTPUT_DIR %s: took over the lock left by a run that did not release it "
                "(%s; it was killed or its machine stopped)", Path(output_dir).resolve(), left,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (
            f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        ).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The lock file's description of its holder ('' if none)."""
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()
