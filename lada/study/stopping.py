"""Stopping a study: Ctrl-C, SIGTERM or SIGHUP (a closed terminal) reach the study, and
each running training gets exactly one SIGINT from it.

Every run's ``train_net.py`` runs in its own session (:mod:`lada.study.runs`), so that a
terminal's Ctrl-C reaches the study only; on the study's first signal, :class:`StudyStop`
starts no further run and sends SIGINT to the process group of each running one (its
ranks and data-loader workers too, as a terminal would): each finishes its iteration,
saves a checkpoint and exits (:mod:`lada.engine.interrupt`), and the study ends with
:class:`StudyStopped` once they have, so that running the same command again continues
them. A second signal sends a second SIGINT, which stops the trainings at once (their
last complete checkpoint stays). Without the own sessions a Ctrl-C would reach the
trainings twice, once from the terminal and once from the study, and a study stopped by
a signal to its own process only (an IDE's stop button, ``kill -INT``) would wait for
its trainings to end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import List, Optional, Set

__all__ = ["STUDY_SIGNALS", "StudyStop", "StudyStopped"]

STUDY_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a study."""


class StudyStopped(Exception):
    """The study stopped on a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StudyStop:
    """The study's signal handlers while its runs train, and its running processes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: Set[subprocess.Popen] = set()
        self._previous: dict = {}
        self.signals: List[int] = []

    @property
    def requested(self) -> bool:
        return bool(self.signals)

    def install(self) -> None:
        """Installs the handlers (in the main thread; elsewhere Python refuses and the
        study keeps the default handling)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in STUDY_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def started(self, process: subprocess.Popen) -> None:
        """Registers a run's process (in its own session); one started after the stop was
        asked for is stopped at once."""
        with self._lock:
            self._running.add(process)
            if self.signals:
                _interrupt(process)

    def finished(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(process)

    def _handle(self, number: int, frame) -> None:
        with self._lock:
            self.signals.append(number)
            running = list(self._running)
        for process in running:
            _interrupt(process)

    def signal_name(self) -> Optional[str]:
        return signal.Signals(self.signals[0]).name if self.signals else None


def _interrupt(process: subprocess.Popen) -> None:
    """SIGINT to the process group of ``process`` (its own session), if it still runs."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:  # it ended meanwhile
            pass
