#!/usr/bin/env python
"""Cost of one assignment step for every registered matcher, side by side.

For each box-size distribution (``--max-sides``: GT boxes of 4 to 124 pixels a side,
mostly small, as in aerial images; 4 to 304, a mix) and each number of GT boxes G, on
one 800x1333 image (P3-P7, R = 22,300 points, 80 classes, seeded random boxes and
predictions; ``benchmarks/measure.py``): the median wall time over ``--repeats`` calls
after one warm-up call, the matchers timed in turns (one call each per round,
synchronised on CUDA), the median CPU time of the process (CPU device; less sensitive
to other processes), the peak memory of the tensors the call allocates, the ratio of
the time to ``fcos``'s and ``atss``'s, and the positives found. ``paa_sklearn_gmm`` is
``paa`` with one scikit-learn GMM fit per GT (the official PAA code's approach), the
reference of the batched GMM, timed up to ``--sklearn-max-gts`` GTs (seconds per call
beyond); the GMM alone is also timed on G random candidate sets of up to
``--candidates`` scores, with the number of GTs whose positives agree.

    python benchmarks/matchers.py                 # G = 1 ... 5000, every matcher
    python benchmarks/matchers.py --quick         # G = 1, 10; one repeat (a smoke test)

Writes ``matchers.csv``, ``gmm.csv``, ``matchers.json`` (machine, load, command, date),
``matchers.md`` (the tables) and ``matchers.png`` (log-log time, ratio to ``fcos`` and
memory vs G, one row per box-size distribution; ``--plot`` to write it elsewhere) to
``--output-dir`` (``benchmarks/results``; ``output/benchmarks`` with ``--quick``). CUDA is measured too when a GPU is present (``--devices`` to choose).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys
from pathlib import Path
from typing import Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from tqdm import tqdm

import lada  # noqa: F401  (registers the matchers)
from benchmarks.measure import (
    LoadMonitor,
    add_output_dir_argument,
    crowded_inputs,
    machine_description,
    output_dir,
    peak_memory_bytes,
    round_robin_seconds,
)
from benchmarks.sklearn_paa import SklearnPAAMatcher, random_candidates, sklearn_separation
from detectron2.config import get_cfg
from lada.config import add_lada_config
from lada.custom_imports import import_custom
from lada.matchers import MATCHER_REGISTRY, build_matcher
from lada.matchers.stages.gmm import paa_separation

FULL_GTS = (1, 10, 100, 1000, 5000)
QUICK_GTS = (1, 10)
MAX_SIDES = (124, 304)
"""Largest GT side of the two box-size distributions: mostly small boxes as in aerial
images (4-124 px), and a mix of sizes (4-304 px)."""
SKLEARN_PAA = "paa_sklearn_gmm"


def build_matchers(names: List[str], with_sklearn: bool = True) -> Dict[str, object]:
    """Every named matcher with its config defaults, plus (``with_sklearn``, when ``paa``
    is named) the scikit-learn PAA."""
    matchers = {}
    for name in names:
        cfg = add_lada_config(get_cfg())
        cfg.MODEL.MATCHER.NAME = name
        matchers[name] = build_matcher(cfg)
    if with_sklearn and "paa" in names:
        cfg = add_lada_config(get_cfg())
        matchers[SKLEARN_PAA] = SklearnPAAMatcher(cfg)
    return matchers


def measure_matchers(matchers: Dict[str, object], num_gts: List[int], device: str,
                     repeats: int, max_side: float, sklearn_max_gts: int) -> List[dict]:
    """One row per (G, matcher) for boxes of 4 to ``max_side`` pixels: wall and CPU ms
    (the matchers timed in turns), peak MiB, positives, ratios to fcos and atss."""
    rows = []
    for count in tqdm(num_gts, desc=f"matchers on {device}, boxes up to {max_side:g} px", unit="G"):
        inputs = crowded_inputs(count, device, max_side=max_side)
        calls = {name: (lambda m=matcher: m(inputs)) for name, matcher in matchers.items()
                 if name != SKLEARN_PAA or count <= sklearn_max_gts}
        peaks = {name: peak_memory_bytes(call, device) for name, call in calls.items()}
        slow = {SKLEARN_PAA}  # seconds per call: fewer runs, no warm-up
        times = round_robin_seconds(
            calls, device,
            repeats={name: min(repeats, 3) if name in slow else repeats for name in calls},
            warmup={name: 0 if name in slow else 1 for name in calls},
        )
        for name, (result, peak) in peaks.items():
            wall, cpu = times[name]
            rows.append({
                "device": device, "max_side": max_side, "matcher": name, "num_gts": count,
                "points": inputs.num_points, "ms": 1e3 * wall, "cpu_ms": 1e3 * cpu,
                "peak_mib": peak / 2**20, "positives": int(result.foreground.sum()),
            })
    for row in rows:
        same = {r["matcher"]: r for r in rows if r["num_gts"] == row["num_gts"]}
        for reference in ("fcos", "atss"):
            if reference in same:
                row[f"x_{reference}"] = row["ms"] / same[reference]["ms"]
                row[f"cpu_x_{reference}"] = row["cpu_ms"] / same[reference]["cpu_ms"]
    return rows


def measure_gmm(num_gts: List[int], width: int, device: str, repeats: int) -> List[dict]:
    """The batched GMM separation against one scikit-learn fit per GT on G random
    candidate sets, timed in turns: median times (scikit-learn: at most 3 runs) and the
    GTs with identical positives."""
    rows = []
    for count in tqdm(num_gts, desc=f"GMM on {device}", unit="G"):
        values, valid = random_candidates(count, width)
        scores = torch.from_numpy(values).float().to(device)
        mask = torch.from_numpy(valid).to(device)
        times = round_robin_seconds(
            {"torch": lambda: paa_separation(scores, mask),
             "sklearn": lambda: sklearn_separation(scores, mask)},
            device, repeats={"torch": repeats, "sklearn": min(repeats, 3)},
            warmup={"torch": 1, "sklearn": 0},
        )
        expected = sklearn_separation(scores, mask)
        agree = int((paa_separation(scores, mask) == expected).all(dim=1).sum())
        (batched, batched_cpu), (sklearn, sklearn_cpu) = times["torch"], times["sklearn"]
        rows.append({"device": device, "num_gts": count, "candidates": width,
                     "torch_ms": 1e3 * batched, "sklearn_ms": 1e3 * sklearn,
                     "speedup": sklearn / batched, "torch_cpu_ms": 1e3 * batched_cpu,
                     "sklearn_cpu_ms": 1e3 * sklearn_cpu,
                     "cpu_speedup": sklearn_cpu / max(batched_cpu, 1e-9), "agree": agree})
    return rows


def write_csv(path: Path, rows: List[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def markdown_tables(rows: List[dict], gmm_rows: List[dict]) -> str:
    """Per device and box-size distribution: time (x fcos) per matcher and G, then every
    measurement, G descending; then the GMM."""
    def cell(value, digits=1):
        return "" if value is None or value != value else f"{value:.{digits}f}"

    lines = []
    for device, max_side in dict.fromkeys((row["device"], row["max_side"]) for row in rows):
        mine = [r for r in rows if r["device"] == device and r["max_side"] == max_side]
        gts = sorted({r["num_gts"] for r in mine})
        lines += [f"On {device}, GT boxes of 4-{max_side:g} px: median wall ms (x `fcos`) per "
                  "matcher and G:", "",
                  "| matcher | " + " | ".join(f"G = {g:,}" for g in gts) + " |",
                  "|---|" + "---|" * len(gts)]
        for name in dict.fromkeys(r["matcher"] for r in mine):
            by_g = {r["num_gts"]: r for r in mine if r["matcher"] == name}
            lines.append(f"| `{name}` | " + " | ".join(
                f"{cell(by_g[g]['ms'])} ({cell(by_g[g].get('x_fcos'), 1)})" if g in by_g else ""
                for g in gts) + " |")
        lines += ["", "Every measurement (ms: median wall time; cpu ms: median process CPU "
                  "time; x: ratio of ms):", "",
                  "| matcher | G | ms | cpu ms | x fcos | x fcos (cpu) | x atss | peak MiB | "
                  "positives |", "|---|---|---|---|---|---|---|---|---|"]
        for row in sorted(mine, key=lambda r: (-r["num_gts"], r["matcher"])):
            lines.append(f"| `{row['matcher']}` | {row['num_gts']} | {cell(row['ms'])} | "
                         f"{cell(row['cpu_ms'])} | {cell(row.get('x_fcos'), 2)} | "
                         f"{cell(row.get('cpu_x_fcos'), 2)} | {cell(row.get('x_atss'), 2)} | "
                         f"{cell(row['peak_mib'])} | {row['positives']} |")
        lines.append("")
    lines += ["GMM separation, batched torch vs one scikit-learn fit per GT:", "",
              "| device | G | candidates | torch ms | scikit-learn ms | speed-up | torch CPU ms "
              "| scikit-learn CPU ms | CPU-time speed-up | same positives |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in gmm_rows:
        lines.append(f"| {row['device']} | {row['num_gts']} | up to {row['candidates']} | "
                     f"{cell(row['torch_ms'])} | {cell(row['sklearn_ms'], 0)} | "
                     f"{cell(row['speedup'], 0)}x | {cell(row['torch_cpu_ms'])} | "
                     f"{cell(row['sklearn_cpu_ms'], 0)} | {cell(row['cpu_speedup'], 0)}x | "
                     f"{row['agree']} / {row['num_gts']} |")
    return "\n".join(lines) + "\n"


def slope(points: List[dict]) -> float:
    """Slope of log(ms) against log(G) between the two largest G of one matcher's rows
    (1 when time grows linearly with G); NaN with fewer than two."""
    points = sorted(points, key=lambda r: r["num_gts"])[-2:]
    if len(points) < 2 or points[0]["num_gts"] == points[1]["num_gts"]:
        return float("nan")
    return math.log(points[1]["ms"] / points[0]["ms"]) / math.log(
        points[1]["num_gts"] / points[0]["num_gts"])


def plot(path: Path, rows: List[dict], title: str) -> None:
    """One row of panels per device and box-size distribution: log-log time vs G per
    matcher (its slope between the two largest G in the legend), time as a multiple of
    ``fcos``'s (the 3x line dashed), and log-log peak memory (the 256 MiB bound dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups = list(dict.fromkeys((r["device"], r["max_side"]) for r in rows))
    figure, axes = plt.subplots(len(groups), 3, figsize=(14, 4.2 * len(groups)), squeeze=False)
    for (device, max_side), (time_axis, ratio_axis, memory_axis) in zip(groups, axes):
        mine = [r for r in rows if r["device"] == device and r["max_side"] == max_side]
        for name in dict.fromkeys(r["matcher"] for r in mine):
            series = sorted((r for r in mine if r["matcher"] == name), key=lambda r: r["num_gts"])
            gts = [r["num_gts"] for r in series]
            style = "--" if name == SKLEARN_PAA else "-"
            time_axis.plot(gts, [r["ms"] for r in series], style, marker="o", ms=3,
                           label=f"{name} (slope {slope(series):.2f})")
            ratio_axis.plot(gts, [r.get("x_fcos", float("nan")) for r in series], style,
                            marker="o", ms=3, label=name)
            memory_axis.plot(gts, [max(r["peak_mib"], 1e-2) for r in series], style,
                             marker="o", ms=3, label=name)
        ratio_axis.axhline(3, color="grey", linestyle=":", linewidth=1)
        memory_axis.axhline(256, color="grey", linestyle=":", linewidth=1)
        where = f"{device}, GT boxes of 4-{max_side:g} px"
        for axis, ylabel, name in (
            (time_axis, "time per assignment (ms)", "time"),
            (ratio_axis, "time / fcos's time", "time as a multiple of fcos's"),
            (memory_axis, "peak tensor memory (MiB)", "peak memory"),
        ):
            axis.set(xscale="log", yscale="log", xlabel="GT boxes in the image (G)",
                     ylabel=ylabel, title=f"{name}; {where}")
            axis.grid(True, alpha=0.3)
        for axis in (time_axis, ratio_axis, memory_axis):
            axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        time_axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=8)
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.07, top=0.92, wspace=0.25, hspace=0.3)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv=None) -> Dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-gts", type=int, nargs="+", help=f"default {FULL_GTS}")
    parser.add_argument("--max-sides", type=float, nargs="+", default=list(MAX_SIDES),
                        help="largest GT side of each box-size distribution (pixels)")
    parser.add_argument("--matchers", nargs="+", help="default: every registered matcher")
    parser.add_argument("--devices", nargs="+",
                        help="default: cpu, and cuda when a GPU is present")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed calls per measurement (scikit-learn: at most 3)")
    parser.add_argument("--sklearn-max-gts", type=int, default=1000,
                        help="largest G at which paa_sklearn_gmm and the scikit-learn GMM run")
    parser.add_argument("--candidates", type=int, default=45,
                        help="largest number of candidates per GT of the GMM comparison")
    add_output_dir_argument(parser)
    parser.add_argument("--plot", help="where to write the figure (default: "
                        "<output-dir>/matchers.png)")
    parser.add_argument("--quick", action="store_true",
                        help="G = 1, 10 and one repeat: checks the script, measures nothing")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="FILE_OR_MODULE",
                        help="a module registering matchers of your own (as CUSTOM_IMPORTS)")
    args = parser.parse_args(argv)
    import_custom(args.imports)
    num_gts = args.num_gts or list(QUICK_GTS if args.quick else FULL_GTS)
    repeats = 1 if args.quick else args.repeats
    names = args.matchers or sorted(name for name, _ in MATCHER_REGISTRY)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    output = Path(output_dir(args))
    output.mkdir(parents=True, exist_ok=True)

    machine = machine_description(devices[-1])
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    rows, gmm_rows = [], []
    with LoadMonitor() as load:
        for device in devices:
            for max_side in args.max_sides:
                rows += measure_matchers(build_matchers(names), num_gts, device, repeats,
                                         max_side, args.sklearn_max_gts)
            gmm_rows += measure_gmm([g for g in num_gts if g <= args.sklearn_max_gts],
                                    args.candidates, device, repeats)
    print(load.summary())
    meta = {
        "command": " ".join(["python", "benchmarks/matchers.py", *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_before": load.load_before, "load_after": load.load_after,
        "other_processes": [{"command": name, "cpu_share": share} for name, share in load.others],
        "repeats": repeats, "max_sides": args.max_sides,
    }
    paths = {name: output / name for name in
             ("matchers.csv", "gmm.csv", "matchers.json", "matchers.md", "matchers.png")}
    if args.plot:
        paths["matchers.png"] = Path(args.plot)
    write_csv(paths["matchers.csv"], rows)
    write_csv(paths["gmm.csv"], gmm_rows)
    paths["matchers.json"].write_text(json.dumps(meta, indent=2) + "\n")
    tables = markdown_tables(rows, gmm_rows)
    paths["matchers.md"].write_text(tables)
    title = (f"{meta['date']}; {machine['cpu']}, {machine['cores']} cores, "
             f"{machine['torch_threads']} torch threads, torch {machine['torch']}; "
             f"load {load.load_before[0]:.1f} -> {load.load_after[0]:.1f}")
    plot(paths["matchers.png"], rows, title)
    print(tables)
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return paths


if __name__ == "__main__":
    main()
