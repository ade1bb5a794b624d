"""The study's run scheduler: the runs still to do, a few at a time, with a progress bar.

Each run is a ``train_net.py`` process (:mod:`lada.study.runs`); a thread per slot waits
on one. After each finished run ``on_run_done`` is called (the study rewrites its report
then), one call at a time. The first failure stops the study: queued runs do not start,
running ones finish, and the failure is raised. A signal stops it too
(:mod:`lada.study.stopping`): queued runs do not start, running ones save a checkpoint,
and :class:`~lada.study.stopping.StudyStopped` is raised.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Collection, Dict, List, Sequence

from ..engine.interrupt import STOPPED_EXIT_CODES
from ..progress import progress_bar
from .runs import RunStopped, StudyRun, reevaluate_study_run, run_study_run
from .stopping import StudyStop, StudyStopped

__all__ = ["run_study"]


class _Progress:
    """One progress bar over the study (``lada.progress``: in a log file, a line at most
    every 30 s), its postfix the state of each running run (thread-safe; ``lock`` also
    serialises the callers' per-run work)."""

    def __init__(self, total: int, initial: int, reevaluate: bool):
        self.bar = progress_bar(total=total, initial=initial, unit="run", dynamic_ncols=True)
        self.reevaluate = reevaluate
        self.lock = threading.Lock()
        self.running: Dict[StudyRun, str] = {}

    def show(self, run: StudyRun, iteration: int) -> None:
        with self.lock:
            self.running[run] = "evaluating" if self.reevaluate else (
                f"iter {min(iteration, run.max_iter)}/{run.max_iter}")
            self.bar.set_postfix_str(", ".join(
                f"{r.name} seed {r.seed} {state}" for r, state in self.running.items()
            ), refresh=False)
            self.bar.update(0)  # redrawn as often as the bar's interval allows

    def finish(self, run: StudyRun) -> None:
        """Caller holds ``lock``."""
        del self.running[run]
        self.bar.update(1)


def run_study(
    runs: Sequence[StudyRun],
    done: Collection[StudyRun],
    python: str,
    jobs: int,
    reevaluate: bool,
    on_run_done: Callable[[], object],
) -> None:
    """Trains the runs of ``runs`` not in ``done`` (``reevaluate``: evaluates those in
    ``done`` again instead), ``jobs`` at a time, with interpreter ``python``; calls
    ``on_run_done`` after each one."""
    if reevaluate:
        to_do = [r for r in runs if r in done]
        print(f"re-evaluating the {len(to_do)} done runs; not trained: "
              f"{', '.join(f'{r.name} seed {r.seed}' for r in runs if r not in done) or 'none'}",
              flush=True)
        progress = _Progress(len(to_do), 0, reevaluate)
    else:
        to_do = [r for r in runs if r not in done]
        progress = _Progress(len(runs), len(done), reevaluate)
    failed = threading.Event()  # after a failure, queued runs do not start
    stop = StudyStop()
    stopped: List[RunStopped] = []

    def execute(run: StudyRun) -> None:
        if failed.is_set() or stop.requested:
            return
        progress.show(run, 0)
        try:
            if reevaluate:
                reevaluate_study_run(run, python, stop)
            else:
                run_study_run(run, python, lambda iteration: progress.show(run, iteration),
                              stop=stop)
        except RunStopped as ended:
            stopped.append(ended)
            return
        except BaseException:
            failed.set()
            raise
        with progress.lock:
            progress.finish(run)
            on_run_done()

    pool = ThreadPoolExecutor(max_workers=jobs)
    stop.install()
    try:
        for future in as_completed([pool.submit(execute, r) for r in to_do]):
            future.result()  # the first failure stops the study; running trainings finish
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        stop.restore()
        progress.bar.close()
    if stop.requested:
        raise StudyStopped(_stopped_message(stop.signal_name(), stopped, reevaluate),
                           stop.signals[0])


def _stopped_message(signal_name: str, stopped: List[RunStopped], reevaluate: bool) -> str:
    """What the stop left: each run stopped while running, and how to continue."""
    if not stopped:
        left = "no run was running"
    elif reevaluate:
        left = "stopped: " + ", ".join(str(s) for s in stopped)
    else:
        left = "; ".join(
            f"{s} saved a checkpoint" if s.returncode in STOPPED_EXIT_CODES else
            f"{s} stopped (exit code {s.returncode}) and continues from its last complete "
            "checkpoint" for s in stopped)
    return f"stopped by {signal_name}: {left}. Run the same command again to continue"
