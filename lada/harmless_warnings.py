"""Third-party warnings that carry no action for a user of lada, declared once, and the
context managers that silence each one where lada's own code triggers it.

Each is matched by its exact message and category, only inside the ``with`` block of
the call that triggers it (never a process-wide filter), so the same warning raised by
a user's own code still shows:

* :data:`MESHGRID`: detectron2 v0.6's ``DefaultAnchorGenerator`` calls ``torch.meshgrid``
  without ``indexing=``; torch's default, ``"ij"``, is what it needs
  (:mod:`lada.modeling.meta_arch`, the point grid of every forward).
* :data:`NON_WRITABLE_ARRAY`: detectron2's image reader returns the read-only array of
  Pillow's ``np.asarray`` and fvcore's flip wraps it with ``torch.from_numpy`` before
  flipping into a new tensor; nothing writes to it (:mod:`lada.data.mapper`).
* :data:`TYPED_STORAGE`: detectron2's ``comm.all_gather`` / ``gather`` serialise through
  ``torch.ByteStorage`` when several processes train or evaluate together
  (:mod:`lada.engine.launch`, around each training process).
* :data:`BROADCAST_BUFFERS`: detectron2's trainers build ``DistributedDataParallel`` with
  ``broadcast_buffers=False``, which torch deprecates in favour of an argument whose
  behaviour differs at initialisation (:mod:`lada.compat`, lada's ``create_ddp_model``).
* :data:`NO_CUDA_RUNTIME`: a log record, not a warning: torch logs "No CUDA runtime is
  found, using CUDA_HOME=..." when detectron2's environment report imports
  ``torch.utils.cpp_extension`` on a machine with a CUDA toolkit folder but no GPU; the
  report's "GPU available" row says the same, and a CUDA device asked for without one is
  refused with its own message (:mod:`lada.engine.setup`).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Iterator

__all__ = [
    "BROADCAST_BUFFERS",
    "HarmlessLogRecord",
    "HarmlessWarning",
    "MESHGRID",
    "NON_WRITABLE_ARRAY",
    "NO_CUDA_RUNTIME",
    "TYPED_STORAGE",
    "ignoring",
    "ignoring_log_record",
]


@dataclass(frozen=True)
class HarmlessWarning:
    """A third-party warning lada silences where it triggers it: ``message``, a regular
    expression matched at the start of the message (``warnings.filterwarnings``'s rule),
    and its ``category``."""

    message: str
    category: type[Warning]


MESHGRID = HarmlessWarning(
    r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing "
    r"argument", UserWarning)
NON_WRITABLE_ARRAY = HarmlessWarning(r"The given NumPy array is not writable", UserWarning)
TYPED_STORAGE = HarmlessWarning(r"TypedStorage is deprecated", UserWarning)
BROADCAST_BUFFERS = HarmlessWarning(r"`broadcast_buffers` is deprecated", FutureWarning)


@dataclass(frozen=True)
class HarmlessLogRecord:
    """A third-party log record lada drops where it triggers it: the ``logger`` that
    emits it and the start of its message."""

    logger: str
    message_start: str


NO_CUDA_RUNTIME = HarmlessLogRecord("torch.utils.cpp_extension", "No CUDA runtime is found")


@contextlib.contextmanager
def ignoring(*harmless: HarmlessWarning) -> Iterator[None]:
    """Inside the block, the warnings ``harmless`` are not shown; any other warning is."""
    with warnings.catch_warnings():
        for warning in harmless:
            warnings.filterwarnings("ignore", message=warning.message, category=warning.category)
        yield


class _DropRecord(logging.Filter):
    def __init__(self, record: HarmlessLogRecord):
        super().__init__()
        self.start = record.message_start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


@contextlib.contextmanager
def ignoring_log_record(record: HarmlessLogRecord) -> Iterator[None]:
    """Inside the block, the log record ``record`` is dropped; other records of its
    logger are kept."""
    logger = logging.getLogger(record.logger)
    drop = _DropRecord(record)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
