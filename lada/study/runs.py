"""The runs of a study: one ``train_net.py`` process per (config, seed), resumable.

Each run trains and evaluates exactly as a user's ``train_net.py --config-file CONFIG
SEED s OUTPUT_DIR dir KEY VALUE ...`` does (same entry point, trainer and evaluator), in
its own process. Its directory gets a record, ``study_run.json``: written as "started"
with the run's arguments and the git commit of the code before the process starts (a
resumed run records the commit that finished it), "done" with the final evaluation
metrics and the wall time after it ends. A study run again skips done runs, continues an
interrupted one from its last checkpoint (``--resume``), and refuses a directory whose
record holds other arguments (a changed schedule would mix two studies). A done run can be
re-evaluated (its final model, on the current test data, by ``train_net.py --eval-only``):
its record then holds the new metrics, what they were evaluated on, and the metrics of
the end of its training.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..data import DatasetError, register_coco_datasets
from ..engine.results import EVAL_RESULTS
from ..engine.setup import build_cfg
from ..paths import REPO
from .stopping import StudyStop

__all__ = [
    "RECORD", "REEVALUATION", "RunStopped", "StudyError", "StudyRun", "final_metrics",
    "plan_runs", "reevaluate_study_run", "run_study_run",
]

RECORD = "study_run.json"
CONSOLE = "study_console.txt"
REEVALUATION = "reevaluation"  # a run's re-evaluation OUTPUT_DIR, inside its own
TRAIN_NET = REPO / "train_net.py"


class StudyError(RuntimeError):
    """A run that failed, or a study directory that holds another study."""


class RunStopped(Exception):
    """A run's process ended after the study was asked to stop (``returncode``: 130 or
    143 after saving a checkpoint, :mod:`lada.engine.interrupt`)."""

    def __init__(self, run: "StudyRun", returncode: int):
        super().__init__(f"{run.name} seed {run.seed}")
        self.run, self.returncode = run, returncode


def _start(command: List[str], console, stop: Optional[StudyStop]) -> subprocess.Popen:
    """``command`` in its own session (:mod:`lada.study.stopping`), output to ``console``."""
    process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT,
                               start_new_session=True)
    if stop is not None:
        stop.started(process)
    return process


def _ended(process: subprocess.Popen, run: "StudyRun", stop: Optional[StudyStop]) -> int:
    """The exit code of a run's ended process; :class:`RunStopped` when it ended on the
    study's stop."""
    if stop is not None:
        stop.finished(process)
        if stop.requested and process.returncode != 0:
            raise RunStopped(run, process.returncode)
    return process.returncode


@dataclass(frozen=True)
class StudyRun:
    """One training of one config with one seed.

    Attributes:
        name: the config's row in the study (its file name without ``.yaml``).
        seed: detectron2's ``SEED``.
        output_dir: the run's ``OUTPUT_DIR``.
        train_args: ``train_net.py`` arguments (config file, ``--num-gpus`` above 1,
            datasets, ``KEY VALUE`` overrides, seed, output dir), without ``--resume``.
        max_iter: ``SOLVER.MAX_ITER`` of the merged config (for the progress bar).
    """

    name: str
    seed: int
    output_dir: Path
    train_args: tuple
    max_iter: int

    @property
    def record_path(self) -> Path:
        return self.output_dir / RECORD

    def write_record(self, record: dict) -> None:
        """Writes ``record`` atomically (a temporary file renamed over it): the report of a
        study with ``--jobs`` above 1 reads every record while other runs write theirs."""
        partial = self.record_path.with_name(self.record_path.name + ".tmp")
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, self.record_path)

    def load_record(self) -> Optional[dict]:
        """The run's record, or None; raises :class:`StudyError` if the record holds other
        arguments than this run's."""
        if not self.record_path.is_file():
            return None
        record = json.loads(self.record_path.read_text())
        if record.get("train_args") != list(self.train_args):
            raise StudyError(
                f"{self.output_dir} holds a run with other settings:\n  recorded: "
                f"{record.get('train_args')}\n  this study: {list(self.train_args)}\n"
                "choose another --output-dir (or delete that directory to train it again)"
            )
        return record

    def is_done(self) -> bool:
        record = self.load_record()
        return record is not None and record.get("status") == "done"


def plan_runs(
    configs: Sequence[Path],
    seeds: Sequence[int],
    output_root: Path,
    datasets: Sequence[Sequence[str]] = (),
    opts: Sequence[str] = (),
    num_gpus: int = 1,
) -> List[StudyRun]:
    """Every (config, seed) run, config-major. Each config is built here as train_net.py
    will build it (:func:`lada.engine.build_cfg`: ``opts`` merged, the own-data recipe
    applied from the training set), and its test datasets are loaded once, so a bad config,
    override or dataset stops the study before any training, and each run knows its
    ``SOLVER.MAX_ITER`` (the recipe's, with one). ``datasets``: ``[name, json_file,
    image_root]`` entries, passed to train_net as ``--dataset`` arguments; ``num_gpus``
    above 1: each run's ``--num-gpus`` (processes of one training)."""
    names = [Path(c).stem for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"configs with the same file name would share a row and a directory: {duplicates}"
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct, got {list(seeds)}")
    dataset_args = [arg for entry in datasets for arg in ("--dataset", *map(str, entry))]
    # only above 1, so that the records of one-process runs keep their arguments (resume)
    gpu_args = ["--num-gpus", str(num_gpus)] if num_gpus > 1 else []
    runs, loaded = [], set()
    for config, name in zip(configs, names):
        try:
            cfg, _ = build_cfg(str(config), list(opts), datasets)
        except (OSError, DatasetError) as error:  # the own-data recipe reads the training set
            raise StudyError(f"{config}: {error}") from error
        _load_test_datasets(cfg, config, loaded)
        for seed in seeds:
            output_dir = Path(output_root) / name / f"seed{seed}"
            train_args = (
                "--config-file", str(config), *gpu_args, *dataset_args, *opts,
                "SEED", str(seed), "OUTPUT_DIR", str(output_dir),
            )
            runs.append(StudyRun(name, int(seed), output_dir, train_args, int(cfg.SOLVER.MAX_ITER)))
    return runs


def _load_test_datasets(cfg: CfgNode, config: Path, loaded: set) -> None:
    """Loads each test dataset of ``cfg`` not in ``loaded`` (then adds it): the study reads
    every run's final evaluation, so a config without test data, or test data that does
    not load, would fail only after its first training."""
    if not cfg.DATASETS.TEST:
        raise StudyError(f"{config}: DATASETS.TEST is empty, and the study compares the runs' "
                         "final evaluations: name a test dataset (DATASETS.TEST)")
    register_coco_datasets(cfg.DATASETS.REGISTER_COCO)
    for name in cfg.DATASETS.TEST:
        if name in loaded:
            continue
        try:
            DatasetCatalog.get(name)
        except KeyError as error:  # not registered
            raise StudyError(f"{config}: DATASETS.TEST names '{name}', which is not registered "
                             f"(DATASETS.REGISTER_COCO or --dataset): {error}") from error
        except (OSError, DatasetError) as error:
            raise StudyError(f"{config}: test dataset '{name}' does not load: {error}") from error
        loaded.add(name)


def final_metrics(output_dir: Path) -> Dict[str, float]:
    """The box metrics of a run's last evaluation, from its ``metrics.json`` (detectron2's
    JSONWriter: one json object per line), without the ``bbox/`` prefix."""
    path = Path(output_dir) / "metrics.json"
    lines = path.read_text().splitlines() if path.is_file() else []
    evaluations = [e for e in (json.loads(x) for x in lines if x.strip()) if "bbox/AP" in e]
    if not evaluations:
        raise StudyError(f"{path}: no evaluation result (bbox/AP) was written")
    return {k[len("bbox/"):]: float(v) for k, v in evaluations[-1].items() if k.startswith("bbox/")}


def evaluated_datasets(output_dir: Path) -> Optional[Dict[str, dict]]:
    """The test datasets of a run's final evaluation, from its ``eval_results.json``:
    name -> images and annotations; None when the file is missing."""
    path = Path(output_dir) / EVAL_RESULTS
    return json.loads(path.read_text()).get("datasets") if path.is_file() else None


def run_study_run(
    run: StudyRun,
    python: str,
    on_iteration: Callable[[int], None] = lambda iteration: None,
    poll_seconds: float = 2.0,
    stop: Optional[StudyStop] = None,
) -> dict:
    """Trains and evaluates ``run`` with ``python train_net.py --resume ...`` (console
    output to ``study_console.txt``), calling ``on_iteration`` with the last iteration
    logged in metrics.json while it runs; writes and returns the "done" record. With
    ``stop``, the process is registered there and :class:`RunStopped` raised when it
    ended on the study's stop (its record stays "started": it resumes)."""
    if not TRAIN_NET.is_file():
        raise StudyError(
            f"train_net.py not found at {TRAIN_NET} (the study runs the repository's entry point)"
        )
    run.output_dir.mkdir(parents=True, exist_ok=True)
    record = {"status": "started", "train_args": list(run.train_args), "commit": _commit()}
    run.write_record(record)
    command = [python, str(TRAIN_NET), "--resume", *run.train_args]
    start = time.time()
    load = os.getloadavg()[0]
    with open(run.output_dir / CONSOLE, "w") as console:
        process = _start(command, console, stop)
        while True:
            try:
                process.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                on_iteration(_last_iteration(run.output_dir))
            except BaseException:  # this thread failed: stop the training too
                process.kill()
                process.wait()
                raise
    returncode = _ended(process, run, stop)
    if returncode != 0:
        tail = (run.output_dir / CONSOLE).read_text()[-3000:]
        raise StudyError(
            f"run {run.name} seed {run.seed} failed (exit code {returncode}); console output "
            f"in {run.output_dir / CONSOLE}, its end:\n{tail}"
        )
    record.update(
        status="done",
        metrics=final_metrics(run.output_dir),
        datasets=evaluated_datasets(run.output_dir),
        wall_seconds=round(time.time() - start, 1),
        load_average_at_start=round(load, 2),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    run.write_record(record)
    return record


def reevaluate_study_run(run: StudyRun, python: str, stop: Optional[StudyStop] = None) -> dict:
    """Evaluates the final model of the done run ``run`` again, with ``python train_net.py
    --eval-only`` and the run's own arguments (so on its config's current test datasets),
    into ``<run>/reevaluation/``; updates and returns its record: ``metrics`` are the new
    ones, ``training_metrics`` those of the end of training (kept from the first
    re-evaluation on), ``evaluation`` says when, by which commit, on which data."""
    record = run.load_record()
    if not record or record.get("status") != "done":
        raise StudyError(f"run {run.name} seed {run.seed} is not done: nothing to re-evaluate")
    weights = run.output_dir / "model_final.pth"
    if not weights.is_file():
        raise StudyError(f"run {run.name} seed {run.seed}: {weights} not found")
    output_dir = run.output_dir / REEVALUATION
    output_dir.mkdir(exist_ok=True)
    results_path = output_dir / EVAL_RESULTS
    results_path.unlink(missing_ok=True)  # a failed evaluation must not leave old results
    command = [python, str(TRAIN_NET), "--eval-only", *run.train_args,
               "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(output_dir)]
    commit, start = _commit(), time.time()
    with open(output_dir / CONSOLE, "w") as console:
        process = _start(command, console, stop)
        process.wait()
    returncode = _ended(process, run, stop)
    if returncode != 0 or not results_path.is_file():
        tail = (output_dir / CONSOLE).read_text()[-3000:]
        raise StudyError(
            f"re-evaluation of run {run.name} seed {run.seed} failed (exit code {returncode}); "
            f"console output in {output_dir / CONSOLE}, its end:\n{tail}"
        )
    results = json.loads(results_path.read_text())
    record.setdefault("training_metrics", record["metrics"])
    record["metrics"] = {k[len("bbox/"):]: float("nan") if v is None else v  # null: NaN
                         for k, v in results["metrics"].items() if k.startswith("bbox/")}
    record["evaluation"] = {
        "datasets": results["datasets"],
        "commit": commit,
        "wall_seconds": round(time.time() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    run.write_record(record)
    return record


def _commit() -> Optional[str]:
    """The repository's git commit (with "+changes" when the work tree differs from it):
    which code trained the run. None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=TRAIN_NET.parent, capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if changed else "")


def _last_iteration(output_dir: Path) -> int:
    """Iteration of the last line of metrics.json, 0 before the first one."""
    try:
        lines = (output_dir / "metrics.json").read_text().splitlines()
        return int(json.loads(lines[-1])["iteration"]) + 1 if lines else 0
    except (OSError, ValueError, KeyError):  # not written yet, or a line being written
        return 0
