"""``python -m lada.study``: train configs for several seeds on one schedule, through
``train_net.py``, and compare them (docs/studies/running.md).

    python -m lada.study                                  # every quick matcher config, seeds 0 1 2
    python -m lada.study --jobs 2                         # two trainings at a time
    python -m lada.study --num-gpus 8 --configs configs/COCO-Detection/DW-Table6/*.yaml
    python -m lada.study --configs configs/quick/paa.yaml configs/quick/atss.yaml
    python -m lada.study SOLVER.MAX_ITER 1400 SOLVER.STEPS "(1100, 1300)"   # for every run
    python -m lada.study --quick --output-dir /tmp/smoke  # smoke test: tiny data and schedule
    python -m lada.study --reevaluate                     # done runs' final models, current test data
    python -m lada.study --dataset mine_train TRAIN.json IMAGES \\
        --dataset mine_val VAL.json IMAGES --methods lada atss   # own-data configs, your data

Writes ``<output-dir>/<config>/seed<s>/`` (each a train_net.py OUTPUT_DIR), and after each
run ``study.md`` (mean ± std table, pairwise Welch t-tests), ``study.png`` (bar chart with
error bars) and ``study.json`` (every run's metrics). Run it again to resume.

The default configs are those of ``configs/quick/`` that train on the embedded data's
schedule: not ``Base-*`` and not a config whose own-data recipe (``RECIPE.ENABLED``)
picks its own schedule and data. With ``--dataset`` (registered as by train_net.py), they
are the own-data configs of every registered method (``--methods``: of those named),
whose recipe picks the sizes and schedule from the training set; the first ``--dataset``
trains and the others test, unless the overrides set ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..data.synthetic import SyntheticSpec, generate
from ..engine.setup import add_dataset_argument, merged_cfg
from ..matchers import MATCHER_REGISTRY
from ..modeling.presets import method_config
from ..paths import REPO
from .report import write_reports
from .runs import StudyError, plan_runs
from .schedule import run_study
from .stopping import StudyStopped

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
                        "and the own-data recipe's; with --dataset, the own-data configs)")
    add_dataset_argument(parser, help=(
        "register a COCO-format dataset under NAME, as train_net.py does (repeatable): the "
        "study then runs the own-data configs on it; the first --dataset trains and the "
        "others test, unless the overrides set DATASETS.TRAIN / DATASETS.TEST"))
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="with --dataset: the own-data configs of these methods "
                        "(configs/quick/own_data_<method>.yaml; default: every registered "
                        "method's). Put another option after it, before the overrides")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="detectron2 SEED of each run (default: 0 1 2; --quick: 0 1)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="default: output/study (--quick: output/study_quick; "
                        "--dataset: output/study_<the first dataset's NAME>)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny synthetic dataset, 3 iterations of 2 images")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time (default 1; on a CPU, set OMP_NUM_THREADS "
                        "so that jobs x threads <= cores)")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="train_net.py --num-gpus of each run: the GPUs (processes) of one "
                        "training, the first N visible ones (default 1); runs at a time "
                        "(--jobs) would share them, so keep --jobs 1 with N > 1")
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
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be at least 1, got {args.num_gpus}")
    if args.quick and args.dataset:
        parser.error("--quick makes its own tiny dataset: give --quick or --dataset, not both")
    if args.methods and (args.configs or not args.dataset):
        parser.error("--methods picks the own-data configs of methods, for --dataset; without "
                     "--dataset (or with --configs) name the config files with --configs")
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    if args.quick:
        output = args.output_dir or Path("output/study_quick")
        datasets, opts = quick_setup(output, args.opts)
    elif args.dataset:
        output = args.output_dir or Path(f"output/study_{args.dataset[0][0]}")
        datasets, opts = args.dataset, own_data_opts(args.dataset, args.opts)
    else:
        output = args.output_dir or Path("output/study")
        datasets, opts = [], list(args.opts)
    if args.configs:
        configs = args.configs
    else:
        configs = own_data_configs(args.methods) if args.dataset else default_configs()
    runs = plan_runs(configs, seeds, output, datasets, opts, args.num_gpus)
    done = {run for run in runs if run.is_done()}  # is_done refuses changed settings
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m lada.study " + " ".join(shlex.quote(a) for a in argv)
    print(f"{len(runs)} runs ({len(configs)} configs x {len(seeds)} seeds), "
          f"{len(done)} already done; output in {output}", flush=True)
    if args.dataset:
        chosen = dict(zip(opts[0::2], opts[1::2]))  # own_data_opts set both keys
        print(f"own data: DATASETS.TRAIN {chosen['DATASETS.TRAIN']} DATASETS.TEST "
              f"{chosen['DATASETS.TEST']}; iterations of each run (SOLVER.MAX_ITER, the "
              "own-data recipe's unless set): " + ", ".join(
                  f"{r.name} {r.max_iter}" for r in runs if r.seed == seeds[0]), flush=True)
    run_study(runs, done, args.python, args.jobs, args.reevaluate,
              on_run_done=lambda: write_reports(runs, output, command, opts))
    return write_reports(runs, output, command, opts)


def quick_setup(output: Path, opts: Sequence[str]) -> Tuple[List[List[str]], List[str]]:
    """--quick: generates the tiny dataset into ``<output>/data``; returns the
    ``[name, json_file, image_root]`` registrations of its two splits and ``opts`` after
    the tiny schedule (so that the user's overrides win)."""
    data = generate(output / "data", QUICK_DATA)
    datasets = [
        ["study_quick_train", str(data["train"]), str(data["train_images"])],
        ["study_quick_val", str(data["val"]), str(data["val_images"])],
    ]
    return datasets, [*QUICK_OPTS, *opts]


def own_data_opts(datasets: Sequence[Sequence[str]], opts: Sequence[str]) -> List[str]:
    """--dataset: ``opts`` preceded by ``DATASETS.TRAIN`` (the first dataset) and
    ``DATASETS.TEST`` (the others), each unless ``opts`` sets it."""
    keys = set(opts[0::2])
    chosen: List[str] = []
    if "DATASETS.TRAIN" not in keys:
        chosen += ["DATASETS.TRAIN", repr((datasets[0][0],))]
    if "DATASETS.TEST" not in keys:
        tests = tuple(entry[0] for entry in datasets[1:])
        if not tests:
            raise SystemExit(
                f"--dataset {datasets[0][0]} trains, and no other --dataset tests: the study "
                "compares the runs' evaluations, so give the test set as a second --dataset "
                "(or set DATASETS.TEST)")
        chosen += ["DATASETS.TEST", repr(tests)]
    return [*chosen, *opts]


def own_data_configs(methods: Optional[Sequence[str]] = None) -> List[Path]:
    """The own-data config of each method of ``methods`` (default: every registered
    matcher with one), where :func:`lada.modeling.presets.method_config` puts it."""
    registered = [name for name, _ in MATCHER_REGISTRY]
    unknown = [m for m in methods or () if m not in registered]
    if unknown:
        raise SystemExit(f"--methods: unknown method(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(registered)}")
    paths = {m: REPO / method_config(m, own_data=True) for m in methods or registered}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if methods and missing:
        raise SystemExit(f"--methods: no own-data config {', '.join(missing)}")
    return [path for path in paths.values() if path.is_file()]


def default_configs() -> List[Path]:
    """configs/quick/*.yaml on the embedded data's schedule (module docstring)."""
    configs = []
    for path in sorted(QUICK_CONFIGS.glob("*.yaml")):
        if path.name.startswith("Base-"):
            continue
        if not merged_cfg(str(path)).RECIPE.ENABLED:
            configs.append(path)
    return configs


if __name__ == "__main__":
    try:
        print(main())
    except StudyError as error:  # its message names the run, config or dataset
        raise SystemExit(f"lada.study: {error}")
    except StudyStopped as stopped:  # Ctrl-C, SIGTERM or SIGHUP: the runs saved checkpoints
        print(f"lada.study: {stopped}", file=sys.stderr)
        raise SystemExit(stopped.exit_code)
