"""The short end-of-run summary of ``train_net.py`` and ``tools/lazyconfig_train_net.py``:
the warnings of the run that matter, repeated (a method / detector mismatch, boxes left
untrained, dropped data: every warning of lada's own loggers, which a long log buries),
where the outputs went, and, for a shipped quick config trained on its own data, the
README's figure for it beside this run's.

The README's figure is read from the README's "Results" table itself
(:func:`readme_figure`), its one place: the summary repeats what the README says."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, Optional

from detectron2.evaluation.testing import flatten_results_dict

from ..paths import REPO

__all__ = ["ReadmeFigure", "WarningCollector", "log_summary", "readme_figure", "summary_lines"]

README = REPO / "README.md"
# The README table of the quick configs: its heading, and the columns repeated.
QUICK_RESULTS_HEADING = "### Quick configs on the embedded dataset"
FIGURE_COLUMNS = ("AP", "AP50", "AP@ar>=3")
MAX_LINES_PER_WARNING = 3

logger = logging.getLogger(__name__)


class WarningCollector(logging.Handler):
    """Keeps the messages of the WARNING (and worse) records of the ``lada`` loggers while
    it is entered, for the summary."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "WarningCollector":
        logging.getLogger("lada").addHandler(self)
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        logging.getLogger("lada").removeHandler(self)


@dataclass(frozen=True)
class ReadmeFigure:
    """The README's "Results" row of a quick config: ``name`` (its first cell) and the
    cells of :data:`FIGURE_COLUMNS`, as written (``36.6 ± 0.5``); ``stale``: the README
    says above the table that it is to be re-measured."""

    name: str
    cells: dict[str, str]
    stale: bool = False

    def text(self) -> str:
        figures = ", ".join(f"{column} {value}" for column, value in self.cells.items())
        return figures + (" (marked there as to be re-measured)" if self.stale else "")


def readme_figure(config_file: str, readme: Path = README) -> Optional[ReadmeFigure]:
    """The README's figure for ``config_file`` when it is a shipped quick config
    (``configs/quick/<name>.yaml`` or its LazyConfig twin ``configs/lazy/quick_<name>.py``)
    with a row in the README's quick-configs table; None otherwise (or without a README)."""
    path = Path(config_file).resolve()
    if path.parent == REPO / "configs" / "quick" and path.suffix == ".yaml":
        name = path.stem
    elif path.parent == REPO / "configs" / "lazy" and path.stem.startswith("quick_"):
        name = path.stem[len("quick_"):]
    else:
        return None
    if not readme.is_file():
        return None
    lines = readme.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(QUICK_RESULTS_HEADING))
    except StopIteration:
        return None
    header: Optional[list[str]] = None
    stale = False
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if header is not None:
                break
            stale = stale or "to be re-measured" in line
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif cells[0] == f"`{name}`":
            row = dict(zip(header, cells))
            return ReadmeFigure(name, {c: row[c] for c in FIGURE_COLUMNS if c in row}, stale)
    return None


def summary_lines(
    output_dir: str,
    warnings: list[str],
    results: Optional[Mapping[str, Any]] = None,
    figure: Optional[ReadmeFigure] = None,
    iterations: Optional[tuple[int, int]] = None,
) -> list[str]:
    """The summary: ``warnings`` (messages, each cut to its first lines), the outputs that
    exist in ``output_dir``, this run's ``results`` (detectron2's nested dict) and the
    README's ``figure``; ``iterations``: (this run's, the config's) training iterations,
    said when they differ (the figure is then not comparable)."""
    out = Path(output_dir).resolve()
    lines = ["Summary of the run"]
    distinct = list(dict.fromkeys(warnings))
    if distinct:
        lines.append(f"  {len(distinct)} warning(s) during the run, repeated:")
        for message in distinct:
            parts = message.splitlines()
            more = f" [... {len(parts) - MAX_LINES_PER_WARNING} more lines in the log]" \
                if len(parts) > MAX_LINES_PER_WARNING else ""
            lines.append("  - " + "\n    ".join(parts[:MAX_LINES_PER_WARNING]) + more)
    else:
        lines.append("  no warning from lada during the run")
    outputs = [(name, out / name) for name in
               ("model_final.pth", "metrics.json", "eval_results.json", "config.yaml", "log.txt")]
    found = [f"{name} {path}" for name, path in outputs if path.exists()]
    if (out / "inference").is_dir():
        found.append(f"detections (coco_instances_results.json) under {out / 'inference'}")
    if any(out.glob("events.out.tfevents.*")):
        found.append(f"TensorBoard: tensorboard --logdir {out}")
    lines += [f"  {entry}" for entry in found]
    metrics = flatten_results_dict(dict(results)) if results else {}
    if metrics:
        shown = {k: v for k, v in metrics.items() if k.split("/")[-1] in FIGURE_COLUMNS}
        lines.append("  this run: " + ", ".join(f"{k} {float(v):.1f}" for k, v in shown.items()))
    if figure is not None:
        lines.append(f"  README, Results (its conditions are there), `{figure.name}`: "
                     f"{figure.text()}")
        if iterations is not None and iterations[0] != iterations[1]:
            lines.append(f"  (this run trained {iterations[0]} of the config's {iterations[1]} "
                         "iterations: not comparable)")
    return lines



def log_summary(lines: list[str]) -> None:
    """Logs the summary as one record (console and ``OUTPUT_DIR/log.txt``)."""
    logger.info("\n".join(lines))
