"""``python -m lada.study.compare``: one table and chart from several studies, such as a
baseline and interventions that differ only in their overrides (docs/studies/running.md).

    python -m lada.study.compare output/study_paa output/study_paa_anchor4 \
        --labels "paa" "paa, ANCHOR_SCALE 4" --output-dir output/paa_interventions

Each study's ``study.json`` (written by ``python -m lada.study``) gives its done runs; a
row is one config of one study, labelled ``<config> (<study folder>)`` unless
``--labels`` names each study (then ``<label>`` when the study holds one config, else
``<label>: <config>``). Writes ``compare.md`` (the study table, with the pairwise
Welch t-tests, after a header listing each study's command and test data) and
``compare.png``.

Rows evaluated on different test data (another dataset, or the same name with other
images or boxes) are not comparable: their differences and t-tests would compare
different images. Such studies are refused, naming each one's test data, unless
``--allow-different-test-data`` (the header then says so). Runs from before the test
data was recorded count as unknown, and the header says that too.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional, Sequence

from .report import bar_chart, datasets_text, markdown_report, summarize, table_metrics


def load_study(folder: Path) -> dict:
    """The ``study.json`` of a study's output folder; a clear error when it is missing
    or has no done run."""
    path = folder / "study.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no study.json (is {folder} a lada.study output?)")
    study = json.loads(path.read_text())
    if not study.get("runs"):
        raise ValueError(f"{path}: the study has no done run yet")
    return study


def test_data(record: dict) -> Optional[str]:
    """The test data a run's metrics come from (of its re-evaluation, if any), as
    ``name (images, boxes)``, datasets joined by ", "; None when not recorded."""
    evaluation = record.get("evaluation")
    datasets = evaluation["datasets"] if evaluation else record.get("datasets")
    return datasets_text(datasets) if datasets else None


def _study_test_data(study: dict) -> str:
    described = sorted({test_data(r) or "not recorded" for r in study["runs"]})
    return "; ".join(described)


def config_names(study: dict) -> List[str]:
    """The configs of a study's runs, in their first order."""
    return list(dict.fromkeys(r["name"] for r in study["runs"]))


def labelled_records(studies: Sequence[dict], labels: Sequence[str]) -> List[dict]:
    """Every study's done runs, each renamed to its row label (module docstring)."""
    records = []
    for study, label in zip(studies, labels):
        single = len(config_names(study)) == 1
        for run in study["runs"]:
            name = label if single else f"{label}: {run['name']}"
            records.append({**run, "name": name})
    return records


def compare(folders: Sequence[Path], output_dir: Path,
            labels: Optional[Sequence[str]] = None,
            allow_different_test_data: bool = False) -> Path:
    """Writes ``compare.md`` and ``compare.png`` into ``output_dir``; returns the first.
    Studies whose runs were evaluated on different test data are refused unless
    ``allow_different_test_data`` (module docstring)."""
    if labels is not None and len(labels) != len(folders):
        raise ValueError(f"--labels: {len(labels)} labels for {len(folders)} studies")
    studies = [load_study(Path(f)) for f in folders]
    if labels is None:
        labels = [f"{names[0]} ({Path(folder).name})" if len(names) == 1 else Path(folder).name
                  for folder, names in zip(folders, map(config_names, studies))]
    records = labelled_records(studies, labels)
    if len({r["name"] for r in records}) < len(studies):
        raise ValueError(f"the labels {list(labels)} do not tell the studies apart")
    known = {test_data(r) for study in studies for r in study["runs"]} - {None}
    if len(known) > 1 and not allow_different_test_data:
        listed = "; ".join(f"{label}: {_study_test_data(study)}"
                           for label, study in zip(labels, studies))
        raise ValueError(
            f"the runs were evaluated on different test data ({listed}): their differences "
            "and t-tests would compare different images. Compare studies of one test set, "
            "re-evaluate them on one (python -m lada.study ... --reevaluate), or pass "
            "--allow-different-test-data")
    summaries = summarize(records)
    metrics = table_metrics(list(records[0]["metrics"]))
    header = ["Studies compared (mean ± sample standard deviation over each row's seeds):", ""]
    for folder, study, label in zip(folders, studies, labels):
        commits = sorted({r.get("commit") or "unrecorded" for r in study["runs"]})
        header.append(f"- {label}: `{folder}`, {len(study['runs'])} runs, commit "
                      f"{', '.join(commits)}, test data {_study_test_data(study)}; "
                      f"`{study['command']}`")
    if len(known) > 1:
        header += ["", "**The rows were evaluated on different test data** "
                   "(`--allow-different-test-data`): differences and t-tests between rows of "
                   "different test data compare different images."]
    output_dir.mkdir(parents=True, exist_ok=True)
    report = output_dir / "compare.md"
    report.write_text(markdown_report(summaries, metrics, "\n".join(header)))
    bar_chart(summaries, metrics, output_dir / "compare.png",
              f"mean ± std over seeds ({len(records)} runs, {len(studies)} studies)")
    return report


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", type=Path, help="output folders of lada.study")
    parser.add_argument("--labels", nargs="+", help="one row label per study")
    parser.add_argument("--output-dir", type=Path, default=Path("output/compare"))
    parser.add_argument("--allow-different-test-data", action="store_true",
                        help="compare studies evaluated on different test data (the report "
                             "says so); refused otherwise")
    args = parser.parse_args(argv)
    try:
        report = compare(args.studies, args.output_dir, args.labels,
                         args.allow_different_test_data)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"lada.study.compare: {error}") from None
    print(report.read_text())
    return report


if __name__ == "__main__":
    main()
