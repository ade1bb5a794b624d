"""``python -m lada.study --quick`` end to end: two configs x two seeds through
train_net.py, the table's numbers against the runs' own metrics.json, the PNG, resuming
and refusing a directory trained with other settings."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from lada.data.synthetic import SyntheticSpec, generate
from lada.study import StudyError, plan_runs
from lada.study import __main__ as study_module
from lada.study.__main__ import default_configs, main as study_main, own_data_opts

CONFIGS = ["configs/quick/fcos.yaml", "configs/quick/paa.yaml"]


def study(output_dir):
    command = [sys.executable, "-m", "lada.study", "--quick", "--configs", *CONFIGS,
               "--output-dir", str(output_dir), "--jobs", "2"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def last_evaluation(run_dir):
    lines = (run_dir / "metrics.json").read_text().splitlines()
    return [json.loads(line) for line in lines if "bbox/AP" in line][-1]


def cell(values):
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def test_quick_study_table_chart_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    done = study(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 runs (2 configs x 2 seeds), 0 already done" in done.stdout

    table = (out / "study.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| config |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:8] == ["config", "seeds", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert columns[8:] == ["AP@ar<3", "AP@ar>=3", "train min / run"]
    for name in ("fcos", "paa"):
        row = next(line for line in table if line.startswith(f"| `{name}` | 2 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        runs = [last_evaluation(out / name / f"seed{seed}") for seed in (0, 1)]
        for column in ("AP", "AP50", "AP@ar>=3"):
            assert cells[columns.index(column)] == cell([r[f"bbox/{column}"] for r in runs])
        assert cells[columns.index("APl")] == "n/a"  # no large object in the tiny data
    assert any(line.startswith("AP@ar>=3: difference of the means") for line in table)
    assert "- command: `python -m lada.study --quick" in "\n".join(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    if commit:  # a git checkout: every run records the commit that trained it
        assert f"- code: commit {commit}" in "\n".join(table)

    image = np.asarray(Image.open(out / "study.png").convert("RGB"))
    # one bar group per metric defined for every run; the figure is 1.5 in per group + 2
    # (at least 6) wide, 4 in high, at 100 dpi
    runs = [last_evaluation(p) for p in sorted(out.glob("*/seed*"))]
    groups = sum(all(np.isfinite(r[f"bbox/{c}"]) for r in runs) for c in columns[2:-1])
    assert groups >= 3  # AP, AP50, AP75 at least
    assert image.shape == (400, int(max(6, 1.5 * groups + 2) * 100), 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # drawn, not blank
    records = json.loads((out / "study.json").read_text())["runs"]
    assert sorted((r["name"], r["seed"]) for r in records) == [
        ("fcos", 0), ("fcos", 1), ("paa", 0), ("paa", 1)]

    # Resuming and refusing run in this process (no training starts: no process to wait for).
    stamps = {p: p.stat().st_mtime for p in out.glob("*/seed*/metrics.json")}
    arguments = ["--quick", "--configs", *CONFIGS, "--output-dir", str(out)]
    monkeypatch.chdir(REPO)
    study_main(arguments)
    assert "4 already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime for p in out.glob("*/seed*/metrics.json")} == stamps
    with pytest.raises(StudyError, match="holds a run with other settings"):
        study_main([*arguments, "SOLVER.MAX_ITER", "4"])

    # --reevaluate: each final model on the (unchanged) test data gives its training's
    # final metrics again; the records and the table say what was evaluated
    done = subprocess.run(
        [sys.executable, "-m", "lada.study", *arguments, "--jobs", "2", "--reevaluate"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "re-evaluating the 4 done runs" in done.stdout
    val = json.loads((out / "data" / "annotations" / "val.json").read_text())
    for record in json.loads((out / "study.json").read_text())["runs"]:
        trained = last_evaluation(out / record["name"] / f"seed{record['seed']}")
        assert record["training_metrics"]["AP"] == pytest.approx(trained["bbox/AP"])
        for key in ("AP", "AP75", "AP@ar<3", "AP@ar>=3"):
            assert record["metrics"][key] == pytest.approx(trained[f"bbox/{key}"], nan_ok=True)
        assert record["evaluation"]["datasets"] == {
            "study_quick_val": {"images": len(val["images"]), "annotations": len(val["annotations"])}
        }
    assert (f"- evaluation: re-evaluated (--reevaluate) on study_quick_val ({len(val['images'])} "
            f"images, {len(val['annotations'])} boxes)") in (out / "study.md").read_text()


def test_default_configs_are_the_quick_matcher_configs():
    names = [p.name for p in default_configs()]
    assert {"fcos.yaml", "atss.yaml", "paa.yaml", "lada.yaml", "aps_plain.yaml"} <= set(names)
    assert "own_data.yaml" not in names  # its recipe picks its own data and schedule
    assert not any(n.startswith("Base-") for n in names)


def test_a_failed_run_stops_the_study_before_queued_runs_start(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "failing"
    with pytest.raises(StudyError, match="failed"):  # an interpreter that always fails
        study_main(["--quick", "--configs", *CONFIGS, "--output-dir", str(out), "--jobs", "2",
                    "--python", "false"])
    started = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/seed*/study_run.json"))
    assert started == ["fcos/seed0", "fcos/seed1"]  # the two first runs; paa's never start



def test_num_gpus_reaches_every_run_and_one_gpu_adds_no_argument(tmp_path, monkeypatch, capsys):
    data = generate(tmp_path / "data", SyntheticSpec(num_train=2, num_val=1))
    entries = [[f"gpus_train_{tmp_path.name}", str(data["train"]), str(data["train_images"])],
               [f"gpus_val_{tmp_path.name}", str(data["val"]), str(data["val_images"])]]
    config = REPO / CONFIGS[0]
    for num_gpus, expected in ((2, ("--num-gpus", "2")), (1, ())):
        runs = plan_runs([config], [0, 1], tmp_path / f"out{num_gpus}", entries,
                         own_data_opts(entries, []), num_gpus)
        for run in runs:  # train_net.py --config-file CONFIG --num-gpus N --dataset ...
            assert run.train_args[:2 + len(expected) + 1] == (
                "--config-file", str(config), *expected, "--dataset")
            assert run.train_args.count("--num-gpus") == len(expected) // 2
    planned = {}

    def plan(configs, seeds, output, datasets, opts, num_gpus):
        planned.update(configs=configs, num_gpus=num_gpus)
        raise StudyError("planned")

    monkeypatch.setattr(study_module, "plan_runs", plan)
    with pytest.raises(StudyError, match="planned"):
        study_main(["--num-gpus", "8", "--configs", CONFIGS[0]])
    assert planned == {"configs": [Path(CONFIGS[0])], "num_gpus": 8}
    with pytest.raises(SystemExit):
        study_main(["--quick", "--num-gpus", "0"])
    assert "--num-gpus must be at least 1, got 0" in capsys.readouterr().err
