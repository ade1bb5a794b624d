"""``python -m lada.study``: train configs for several seeds on one schedule, through
``train_net.py``, and compare them (docs/studies/running.md).

    python -m lada.study                                  # every quick matcher config, seeds 0 1 2
    python -m lada.study --jobs 2                         # two trainings at a time
    python -m lada.study --configs configs/quick/paa.yaml configs/quick/atss.yaml
    python -m lada.study SOLVER.MAX_ITER 1400 SOLVER.STEPS "(1100, 1300)"   # for every run
    python -m lada.study --quick --output-dir /tmp/smoke  # smoke test: tiny data and schedule
    python -m lada.study --reevaluate                     # done runs' final models, current test data

Writes ``<output-dir>/<config>/seed<s>/`` (each a train_net.py OUTPUT_DIR), and after each
run ``study.md`` (mean ± std table, pairwise Welch t-tests), ``study.png`` (bar chart with
error bars) and ``study.json`` (every run's metrics). Run it again to resume.

The default configs are those of ``configs/quick/`` that train on the embedded data's
schedule: not ``Base-*`` and not a config whose own-data recipe (``RECIPE.ENABLED``)
picks its own schedule and data.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import List, Sequence

from detectron2.config import get_cfg

import torch
from tqdm import tqdm

from ..config import add_lada_config
from ..data.synthetic import SyntheticSpec, generate
from .report import bar_chart, markdown_report, summarize, table_metrics
from .runs import StudyRun, plan_runs, reevaluate_study_run, run_study_run

REPO = Path(__file__).resolve().parents[2]
QUICK_CONFIGS = REPO / "configs" / "quick"
#: --quick: a tiny synthetic dataset and schedule, to check the whole path in seconds per
#: run; the numbers mean nothing (score threshold 0 so that an untrained model detects).
QUICK_DATA = SyntheticSpec(num_train=8, num_val=4)
QUICK_OPTS = (
    "DATASETS.REGISTER_COCO", "[]",
    "DATASETS.TRAIN", "('study_quick_train',)",
    "DATASETS.TEST", "('study_quick_val',)",
    "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", "3",
    "SOLVER.STEPS", "(2,)",
    "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.CHECKPOINT_PERIOD", "1000",
    "MODEL.FCOS.SCORE_THRESH_TEST", "0.0",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lada.study", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", nargs="+", type=Path, default=None,
                        help="config files (default: every configs/quick/*.yaml but Base-* "
                        "and the own-data recipe's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="detectron2 SEED of each run (default: 0 1 2; --quick: 0 1)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="default: output/study (--quick: output/study_quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny synthetic dataset, 3 iterations of 2 images")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time (default 1; on a CPU, set OMP_NUM_THREADS "
                        "so that jobs x threads <= cores)")
    parser.add_argument("--reevaluate", action="store_true",
                        help="train nothing: evaluate the final model of every done run again "
                        "(train_net.py --eval-only) on its config's current test data, and "
                        "report those metrics (after the test data changed, for example)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs train_net.py (default: this one)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides applied to every run (the schedule)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Runs the study; returns the path of its markdown report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    configs = args.configs or default_configs()
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    output = args.output_dir or Path("output/study_quick" if args.quick else "output/study")
    dataset_args: List[str] = []
    opts = list(args.opts)
    if args.quick:
        data = generate(output / "data", QUICK_DATA)
        dataset_args = [
            "--dataset", "study_quick_train", str(data["train"]), str(data["train_images"]),
            "--dataset", "study_quick_val", str(data["val"]), str(data["val_images"]),
        ]
        opts = [*QUICK_OPTS, *opts]
    runs = plan_runs(configs, seeds, output, dataset_args, opts)
    done = {run for run in runs if run.is_done()}  # is_done refuses changed settings
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m lada.study " + " ".join(shlex.quote(a) for a in argv)
    print(f"{len(runs)} runs ({len(configs)} configs x {len(seeds)} seeds), "
          f"{len(done)} already done; output in {output}", flush=True)
    if args.reevaluate:
        to_do = [r for r in runs if r in done]
        print(f"re-evaluating the {len(to_do)} done runs; not trained: "
              f"{', '.join(f'{r.name} seed {r.seed}' for r in runs if r not in done) or 'none'}",
              flush=True)
        progress = tqdm(total=len(to_do), unit="run", dynamic_ncols=True)
    else:
        to_do = [r for r in runs if r not in done]
        progress = tqdm(total=len(runs), initial=len(done), unit="run", dynamic_ncols=True)
    lock = threading.Lock()
    running: dict = {}
    failed = threading.Event()  # after a failure, queued runs do not start

    def train(run: StudyRun) -> None:
        if failed.is_set():
            return
        def show(iteration: int) -> None:
            with lock:
                running[run] = "evaluating" if args.reevaluate else (
                    f"iter {min(iteration, run.max_iter)}/{run.max_iter}")
                progress.set_postfix_str(", ".join(
                    f"{r.name} seed {r.seed} {state}" for r, state in running.items()
                ))

        show(0)
        try:
            if args.reevaluate:
                reevaluate_study_run(run, args.python)
            else:
                run_study_run(run, args.python, show)
        except BaseException:
            failed.set()
            raise
        with lock:
            del running[run]
            progress.update(1)
            write_reports(runs, output, command, opts)

    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        for future in as_completed([pool.submit(train, r) for r in to_do]):
            future.result()  # the first failure stops the study; running trainings finish
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    progress.close()
    return write_reports(runs, output, command, opts)


def _commits(records: Sequence[dict]) -> List[str]:
    """Each git commit that trained runs, with the runs it trained when there are several."""
    by_commit: dict = {}
    for r in records:
        by_commit.setdefault(r.get("commit") or "unrecorded", []).append(f"{r['name']} {r['seed']}")
    if len(by_commit) == 1:
        return list(by_commit)
    return [f"{commit} ({', '.join(runs)})" for commit, runs in by_commit.items()]


def _evaluations(records: Sequence[dict]) -> str:
    """Which metrics the table holds: those of the end of training, or of a re-evaluation
    (on which test data, when, by which commit), with the runs of each when they differ."""
    by_kind: dict = {}
    for r in records:
        e = r.get("evaluation")
        kind = "at the end of training" if e is None else (
            "re-evaluated (--reevaluate) on " + ", ".join(
                f"{name} ({d['images']} images, {d['annotations']} boxes)"
                for name, d in e["datasets"].items()
            ) + f" at commit {e['commit']}"
        )
        by_kind.setdefault(kind, []).append(f"{r['name']} {r['seed']}")
    if len(by_kind) == 1:
        return next(iter(by_kind))
    return "; ".join(f"{kind} ({', '.join(runs)})" for kind, runs in by_kind.items())


def default_configs() -> List[Path]:
    """configs/quick/*.yaml on the embedded data's schedule (module docstring)."""
    configs = []
    for path in sorted(QUICK_CONFIGS.glob("*.yaml")):
        if path.name.startswith("Base-"):
            continue
        cfg = add_lada_config(get_cfg())
        cfg.merge_from_file(str(path))
        if not cfg.RECIPE.ENABLED:
            configs.append(path)
    return configs


def write_reports(
    runs: Sequence[StudyRun], output: Path, command: str, opts: Sequence[str]
) -> Path:
    """study.json, study.md and study.png from the runs done so far."""
    records = []
    for run in runs:
        record = run.load_record()
        if record and record.get("status") == "done":
            records.append({"name": run.name, "seed": run.seed, **record})
    output.mkdir(parents=True, exist_ok=True)
    (output / "study.json").write_text(json.dumps({"command": command, "runs": records}, indent=1))
    if not records:
        return output / "study.md"
    summaries = summarize(records)
    metrics = table_metrics(list(records[0]["metrics"]))
    seeds = sorted({r["seed"] for r in records})
    header = "\n".join([
        f"Comparison study, {len(records)} of {len(runs)} runs done; seeds {seeds}; "
        "mean ± sample standard deviation over seeds.",
        "",
        f"- command: `{command}`",
        f"- schedule overrides for every run: `{' '.join(opts) or 'none (each config as it is)'}`",
        f"- machine: {machine_description()}; load average at the start of the runs "
        f"{min(r['load_average_at_start'] for r in records):.1f} to "
        f"{max(r['load_average_at_start'] for r in records):.1f}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- code: commit {', '.join(_commits(records))}",
        f"- finished: {max(r['finished'] for r in records)}; total train + eval wall time "
        f"{sum(r['wall_seconds'] for r in records) / 3600:.2f} h",
        f"- evaluation: {_evaluations(records)}",
        "- `AP@<band>`: box AP on the GT boxes whose long / short side ratio lies in the band "
        "(others ignored, COCO's way; `TEST.ASPECT_RATIO_EDGES`)",
    ])
    report = output / "study.md"
    report.write_text(markdown_report(summaries, metrics, header))
    bar_chart(summaries, metrics, output / "study.png",
              f"mean ± std over seeds {seeds} ({len(records)} runs)")
    return report


def machine_description() -> str:
    """CPU model and cores, torch version: what the study's times depend on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


if __name__ == "__main__":
    print(main())
