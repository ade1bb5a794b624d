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
import shlex
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

from detectron2.config import get_cfg

from ..config import add_lada_config
from ..data.synthetic import SyntheticSpec, generate
from .report import write_reports
from .runs import plan_runs
from .schedule import run_study

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
    dataset_args, opts = quick_setup(output, args.opts) if args.quick else ([], list(args.opts))
    runs = plan_runs(configs, seeds, output, dataset_args, opts)
    done = {run for run in runs if run.is_done()}  # is_done refuses changed settings
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m lada.study " + " ".join(shlex.quote(a) for a in argv)
    print(f"{len(runs)} runs ({len(configs)} configs x {len(seeds)} seeds), "
          f"{len(done)} already done; output in {output}", flush=True)
    run_study(runs, done, args.python, args.jobs, args.reevaluate,
              on_run_done=lambda: write_reports(runs, output, command, opts))
    return write_reports(runs, output, command, opts)


def quick_setup(output: Path, opts: Sequence[str]) -> Tuple[List[str], List[str]]:
    """--quick: generates the tiny dataset into ``<output>/data``; returns the
    ``train_net.py --dataset`` arguments that register it and ``opts`` after the tiny
    schedule (so that the user's overrides win)."""
    data = generate(output / "data", QUICK_DATA)
    dataset_args = [
        "--dataset", "study_quick_train", str(data["train"]), str(data["train_images"]),
        "--dataset", "study_quick_val", str(data["val"]), str(data["val_images"]),
    ]
    return dataset_args, [*QUICK_OPTS, *opts]


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


if __name__ == "__main__":
    print(main())
