#!/usr/bin/env python
"""Assignment statistics of finished runs over the iterations, as a PNG (LADA's Fig. 9
plots the mean number of positives per GT during training).

Reads the ``assign/*`` scalars every step logs to ``OUTPUT_DIR/metrics.json``
(``lada/modeling/statistics.py``) from one or more runs and plots, one line per run:
positives per GT (mean; for a single run the batch's min-max range shaded), positives
per image, the share of the batch's GT boxes left without a positive, and each FPN
level's share of the positives averaged over the last fifth of the run; the mean share
without a positive over the run is printed per run.

    python tools/plot_assignment_stats.py output/quick/fcos output/quick/lada \\
        --output assignment_stats.png

A run is its output directory or its ``metrics.json``; its label is the directory's
name (``--labels`` to choose).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

PREFIX = "assign/"


def read_assignment_stats(path: Path) -> Dict[str, np.ndarray]:
    """{"iteration": (T,), "assign/...": (T,)} from a metrics.json (one json object a
    line, detectron2's JSONWriter); lines without ``assign/`` keys (evaluation results)
    are skipped, as are keys missing from some lines (NaN there)."""
    metrics = path / "metrics.json" if path.is_dir() else path
    if not metrics.is_file():
        raise SystemExit(f"{path}: no metrics.json (give a run's OUTPUT_DIR or its metrics.json)")
    records = []
    for number, line in enumerate(metrics.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"{metrics}, line {number}: not json ({error})") from error
        if "iteration" in record and any(key.startswith(PREFIX) for key in record):
            records.append(record)
    if not records:
        raise SystemExit(f"{metrics}: no assign/* statistics (a LadaFCOS training run writes them)")
    keys = sorted({key for record in records for key in record if key.startswith(PREFIX)})
    stats = {"iteration": np.array([record["iteration"] for record in records], dtype=float)}
    for key in keys:
        stats[key] = np.array([record.get(key, np.nan) for record in records], dtype=float)
    return stats


def untrained_share(stats: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
    """(T,) share of each logged step's GT boxes left without a positive; None for a run
    that logged only their count (older runs: the count alone does not give the share)."""
    return stats.get(PREFIX + "gts_without_pos_share")


def plot(runs: Dict[str, Dict[str, np.ndarray]], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    for index, (label, stats) in enumerate(runs.items()):
        colour = f"C{index % 10}"
        steps = stats["iteration"]
        if f"{PREFIX}pos_per_gt_mean" in stats:
            axes[0].plot(steps, stats[f"{PREFIX}pos_per_gt_mean"], color=colour, label=label)
            if len(runs) == 1 and f"{PREFIX}pos_per_gt_max" in stats:
                axes[0].fill_between(steps, stats[f"{PREFIX}pos_per_gt_min"],
                                     stats[f"{PREFIX}pos_per_gt_max"], color=colour, alpha=0.12)
        if PREFIX + "pos_per_image" in stats:
            axes[1].plot(steps, stats[PREFIX + "pos_per_image"], color=colour, label=label)
        share = untrained_share(stats)
        if share is not None:
            axes[2].plot(steps, 100 * share, color=colour, label=label)
    _level_shares(axes[3], runs)
    titles = [("positives per GT (mean" + ("; batch min-max shaded)" if len(runs) == 1 else ")"),
               "positives"),
              ("positives per image", "positives"),
              ("GT boxes without a positive (share of the batch's)", "% of GT boxes")]
    for axis, (title, ylabel) in zip(axes, titles):
        axis.set(title=title, xlabel="iteration", ylabel=ylabel)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    plt.close(figure)


def _level_shares(axis, runs: Dict[str, Dict[str, np.ndarray]]) -> None:
    """Stacked bars: each level's share of the positives over the last fifth of each run."""
    labels = list(runs)
    levels = sorted({key for stats in runs.values() for key in stats
                     if key.startswith(f"{PREFIX}pos_share_level")},
                    key=lambda key: int(key.rsplit("level", 1)[1]))
    bottom = np.zeros(len(labels))
    for level_key in levels:
        shares = []
        for stats in runs.values():
            values = stats.get(level_key, np.array([np.nan]))
            tail = values[len(values) - max(1, len(values) // 5):]
            shares.append(float(np.nanmean(tail)) if np.isfinite(tail).any() else 0.0)
        level = int(level_key.rsplit("level", 1)[1])
        axis.bar(labels, shares, bottom=bottom, label=f"P{level + 3}")
        bottom += np.array(shares)
    axis.set(title="share of positives per level (last fifth)", ylabel="share", ylim=(0, 1.05))
    axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    axis.legend(fontsize=7, ncol=len(levels))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="OUTPUT_DIRs or metrics.json files")
    parser.add_argument("--labels", nargs="+", help="one per run (default: directory names)")
    parser.add_argument("--output", type=Path, default=Path("output/assignment_stats.png"))
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels: {len(args.labels)} labels for {len(args.runs)} runs")
    labels: List[str] = args.labels or [
        (run if run.is_dir() else run.parent).resolve().name for run in args.runs
    ]
    runs = {label: read_assignment_stats(run) for label, run in zip(labels, args.runs)}
    plot(runs, args.output)
    for label, stats in runs.items():
        share = untrained_share(stats)
        if share is not None:
            print(f"{label}: {100 * np.nanmean(share):.1f} % of the GT boxes without a positive "
                  f"(mean over {len(share)} logged steps)")
    print(f"wrote {args.output}")
    return args.output


if __name__ == "__main__":
    main()
