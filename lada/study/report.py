"""The study's outputs: mean and standard deviation over seeds per config, a markdown
table with pairwise Welch t-tests, and a bar chart with error bars; ``write_reports``
writes them (study.md, study.png, study.json) from the runs done so far."""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from .runs import StudyRun  # noqa: E402

__all__ = [
    "ConfigSummary", "bar_chart", "machine_description", "markdown_report", "summarize",
    "table_metrics", "welch_p_value", "write_reports",
]

#: The COCO box-AP table; the slender bands (``AP@...``) follow in the order they appear.
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class ConfigSummary:
    """One config over its seeds. ``values[metric]``: one value per seed (seed order);
    ``mean`` / ``std``: NaN when a seed's value is NaN (metric undefined), ``std`` also
    with a single seed (sample standard deviation, ddof = 1)."""

    name: str
    seeds: List[int]
    values: Dict[str, List[float]]
    wall_seconds: List[float]

    def mean(self, metric: str) -> float:
        return float(np.mean(self.values[metric]))

    def std(self, metric: str) -> float:
        values = self.values[metric]
        return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def table_metrics(metric_names: Sequence[str]) -> List[str]:
    """The COCO metrics, then the slender-object AP of each band (``AP@<band>``, not the
    per-class ``AP-<class>@<band>``), from the names of a run's metrics."""
    bands = [m for m in metric_names if m.startswith("AP@")]
    return [m for m in COCO_METRICS if m in metric_names] + bands


def summarize(records: Sequence[Mapping]) -> List[ConfigSummary]:
    """"done" run records (``lada.study.runs``: name, seed, metrics, wall_seconds) -> one
    summary per config, in the order of first appearance, seeds sorted."""
    summaries: Dict[str, ConfigSummary] = {}
    for record in sorted(records, key=lambda r: r["seed"]):
        name = record["name"]
        summary = summaries.setdefault(name, ConfigSummary(name, [], {}, []))
        summary.seeds.append(record["seed"])
        summary.wall_seconds.append(record["wall_seconds"])
        for metric, value in record["metrics"].items():
            summary.values.setdefault(metric, []).append(value)
    order = list(dict.fromkeys(r["name"] for r in records))
    return [summaries[name] for name in order]


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) that two configs' seeds
    have the same mean; NaN with fewer than two seeds on a side or a NaN value."""
    if min(len(a), len(b)) < 2 or not np.all(np.isfinite(list(a) + list(b))):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def markdown_report(summaries: Sequence[ConfigSummary], metrics: Sequence[str], header: str) -> str:
    """``header`` (markdown), the table of mean ± std per config and metric, and, with at
    least two seeds, the pairwise AP differences with Welch's t-test p-values."""
    lines = [header.rstrip(), ""]
    lines.append("| config | seeds | " + " | ".join(metrics) + " | train min / run |")
    lines.append("|---|---|" + "---|" * len(metrics) + "---|")
    for s in summaries:
        cells = [_cell(s.mean(m), s.std(m)) for m in metrics]
        minutes = np.mean(s.wall_seconds) / 60
        lines.append(f"| `{s.name}` | {len(s.seeds)} | {' | '.join(cells)} | {minutes:.1f} |")
    if len(summaries) >= 2 and any(len(s.seeds) >= 2 for s in summaries):
        for metric in [m for m in metrics if m == "AP" or m.startswith("AP@")]:
            lines += ["", f"{metric}: difference of the means (row - column) and Welch's "
                      "t-test p-value", ""]
            lines += _pairwise_table(summaries, metric)
    return "\n".join(lines) + "\n"


def _pairwise_table(summaries: Sequence[ConfigSummary], metric: str) -> List[str]:
    lines = ["| | " + " | ".join(f"`{s.name}`" for s in summaries) + " |",
             "|---|" + "---|" * len(summaries)]
    for row in summaries:
        cells = []
        for column in summaries:
            difference = row.mean(metric) - column.mean(metric)
            p = welch_p_value(row.values[metric], column.values[metric])
            if column is row:
                cells.append("")
            elif math.isnan(difference):
                cells.append("n/a")
            else:
                p_text = f" (p {p:.2f})" if math.isfinite(p) else ""
                cells.append(f"{difference:+.1f}{p_text}")
        lines.append(f"| `{row.name}` | " + " | ".join(cells) + " |")
    return lines


def bar_chart(
    summaries: Sequence[ConfigSummary], metrics: Sequence[str], path: Path, title: str
):
    """Grouped bars: one group per metric defined for every config, one bar per config
    (its mean over seeds) with an error bar of one standard deviation (none with one
    seed). Saves a PNG at ``path`` and returns the matplotlib Figure."""
    shown = [m for m in metrics if all(np.isfinite(s.mean(m)) for s in summaries)]
    width = 0.8 / max(len(summaries), 1)
    x = np.arange(len(shown))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.5 * len(shown) + 2), 4.0))
    for i, s in enumerate(summaries):
        errors = [0.0 if math.isnan(s.std(m)) else s.std(m) for m in shown]
        axes.bar(x + (i - (len(summaries) - 1) / 2) * width, [s.mean(m) for m in shown], width,
                 yerr=errors, capsize=3, label=s.name, color=f"C{i % 10}")
    axes.set_xticks(x, shown)
    axes.set_ylabel("COCO box AP (%)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, ncols=min(len(summaries), 6), loc="upper center",
                bbox_to_anchor=(0.5, -0.12))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return figure


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


def _commits(records: Sequence[dict]) -> List[str]:
    """Each git commit that trained runs, with the runs it trained when there are several."""
    by_commit: dict = {}
    for r in records:
        by_commit.setdefault(r.get("commit") or "unrecorded", []).append(f"{r['name']} {r['seed']}")
    if len(by_commit) == 1:
        return list(by_commit)
    return [f"{commit} ({', '.join(runs)})" for commit, runs in by_commit.items()]


def datasets_text(datasets: Mapping[str, Mapping]) -> str:
    """Evaluated datasets (``eval_results.json``'s ``datasets``: name -> images and
    annotations) as ``name (N images, M boxes)``, joined by ", " in name order."""
    return ", ".join(f"{name} ({d['images']} images, {d['annotations']} boxes)"
                     for name, d in sorted(datasets.items()))


def _evaluations(records: Sequence[dict]) -> str:
    """Which metrics the table holds: those of the end of training, or of a re-evaluation
    (on which test data, when, by which commit), with the runs of each when they differ."""
    by_kind: dict = {}
    for r in records:
        e = r.get("evaluation")
        kind = "at the end of training" if e is None else (
            f"re-evaluated (--reevaluate) on {datasets_text(e['datasets'])} at commit {e['commit']}"
        )
        by_kind.setdefault(kind, []).append(f"{r['name']} {r['seed']}")
    if len(by_kind) == 1:
        return next(iter(by_kind))
    return "; ".join(f"{kind} ({', '.join(runs)})" for kind, runs in by_kind.items())


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
