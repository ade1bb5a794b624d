"""Ctrl-C (SIGINT) and SIGTERM during training: the run finishes the iteration in progress,
saves a checkpoint that ``--resume`` continues from and exits with ``128 + signal``
(130, 143); a second signal aborts at once, as without lada.

* :data:`STOP_SIGNALS` holds the process's handlers. Installed before the data loader's
  worker processes are forked (:class:`lada.engine.Trainer`'s constructor,
  :func:`lada.engine.lazy.do_train`), so that those workers, which get a terminal's Ctrl-C
  too, inherit them and ignore it: they keep feeding the iteration in progress, and every
  process of a multi-process run reaches its end (a worker that died would leave its
  process waiting for data while the others wait for it). Workers must be forked for that:
  in a process started by ``spawn`` (the ranks of detectron2's ``launch``), whose workers
  would be spawned too, the default start method becomes ``fork`` on Linux, as in the
  processes torchrun starts. Before training starts (and after it ends) the handlers do what the
  previous ones did (``KeyboardInterrupt``).
* :class:`StopOnSignal`, a hook, is the one place that acts: after each iteration, once
  every process of the run has seen whether a signal arrived (detectron2's ``comm``: a
  signal that reached one rank only stops all ranks at the same iteration), it saves
  ``model_<iteration>.pth`` (the main process writes, atomically, as the periodic
  checkpointer does) and stops the loop. The iteration in progress includes its periodic
  evaluation, if one runs. After the last iteration the run ends as usual (the final
  checkpoint is written): a signal then interrupts the final evaluation at once.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Optional

from detectron2.engine import HookBase
from detectron2.utils import comm

from .resume import LAST_CHECKPOINT

__all__ = ["STOP_SIGNALS", "STOPPED_EXIT_CODES", "StopOnSignal", "StopSignals"]

logger = logging.getLogger(__name__)


STOPPED_EXIT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)
"""The exit codes of a training process that stopped on a signal after its checkpoint."""


class StopSignals:
    """The SIGINT and SIGTERM handlers of a training process (see the module docstring).
    ``armed`` while a training loop runs; ``received``: the first signal number then."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._previous: dict[int, object] = {}
        self._owner: Optional[int] = None  # pid of the process that installed them
        self.armed = False
        self.received: Optional[int] = None

    def install(self) -> bool:
        """Installs the handlers (once per process; Python allows it in the main thread
        only); False when they could not be."""
        if self._owner == os.getpid():
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        self._owner = os.getpid()
        if multiprocessing.get_start_method(allow_none=True) == "spawn" and sys.platform == "linux":
            multiprocessing.set_start_method("fork", force=True)  # workers inherit the handlers
        return True

    def restore(self) -> None:
        """Puts the previous handlers back (in the process that installed them)."""
        if self._owner != os.getpid():
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._owner, self.armed, self.received = None, False, None

    def arm(self) -> bool:
        """Makes the first signal a stop request; False if the handlers are not installed."""
        self.armed, self.received = self._owner == os.getpid(), None
        return self.armed

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._owner:  # a forked data loader worker: the trainer decides
            if signum != signal.SIGINT:
                self._previous_handler(signum, frame)
            return
        if not self.armed or self.received is not None:
            self._previous_handler(signum, frame)  # before training, or the second signal
            return
        self.received = signum
        # not through logging: a handler runs between two bytecodes of the main thread,
        # which may be inside a write to the same stream
        os.write(2, (
            f"\n{signal.Signals(signum).name}: stopping after the iteration in progress, with a "
            "checkpoint to --resume from; send it again to abort at once (no checkpoint)\n"
        ).encode())

    def _previous_handler(self, signum: int, frame) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)  # Python's SIGINT handler raises KeyboardInterrupt
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


STOP_SIGNALS = StopSignals()


class StopOnSignal(HookBase):
    """Stops training after the iteration during which SIGINT or SIGTERM arrived (in any
    process of the run), with a checkpoint (``checkpointer.save``, the main process
    writes), by ``SystemExit(128 + signal)``; the last line logged names the checkpoint.
    Runs after the other hooks of the iteration (register it last)."""

    def __init__(
        self, checkpointer, signals: StopSignals = STOP_SIGNALS, file_prefix: str = "model"
    ):
        self.checkpointer = checkpointer
        self.signals = signals
        self.file_prefix = file_prefix
        self._stopped: Optional[tuple[int, str]] = None

    def before_train(self) -> None:
        if not self.signals.arm():
            logger.info("no checkpoint on SIGINT/SIGTERM: the handlers were not installed "
                        "(Python installs them from the main thread only)")

    def after_step(self) -> None:
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self.signals.armed = False  # the run ends now: a signal interrupts its evaluation
            return
        signum = self._agreed_signal()
        if signum is None:
            return
        iteration = self.trainer.iter
        name = f"{self.file_prefix}_{iteration:07d}"
        path = os.path.join(self.checkpointer.save_dir, f"{name}.pth")
        if comm.is_main_process() and not self._saved_already(name):
            self.checkpointer.save(name, iteration=iteration)
        comm.synchronize()  # no process exits before the checkpoint is written
        self._stopped = (signum, path)
        raise SystemExit(128 + signum)

    def after_train(self) -> None:
        self.signals.armed = False
        if self._stopped is None:
            return
        signum, path = self._stopped
        logger.warning(
            f"stopped by {signal.Signals(signum).name} after iteration {self.trainer.iter}: "
            f"checkpoint {path} saved; continue with the same command and --resume"
        )

    def _saved_already(self, name: str) -> bool:
        """Whether the periodic checkpointer saved this iteration just now."""
        try:
            with open(os.path.join(self.checkpointer.save_dir, LAST_CHECKPOINT)) as f:
                return f.read().strip() == f"{name}.pth"
        except OSError:
            return False

    def _agreed_signal(self) -> Optional[int]:
        """The signal received by any process of the run (the lowest rank's), else None."""
        received = self.signals.received if self.signals.armed else None
        if comm.get_world_size() > 1:
            received = next((s for s in comm.all_gather(received) if s is not None), None)
        return received
