"""The GPU check (benchmarks/gpu_check.py, docs/gpu.md) cannot rot: its dry run does every
CPU-capable part at tiny sizes; its wheel list keeps the project's pins; its verdicts on
the targets follow the measured rows."""
import json

import pytest
from conftest import REPO

from benchmarks import gpu_check, gpu_report, gpu_wheels
from lada.matchers import MATCHER_REGISTRY


def test_dry_run_does_every_cpu_capable_part(tmp_path):
    summary = gpu_check.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--dry-run"])
    parts = summary["parts"]
    assert {name: part["status"] for name, part in parts.items()} == {
        "environment": "ok", "cuda_tests": "skipped", "assignment": "ok", "train_step": "ok",
        "launch": "ok", "inference": "ok"}
    assert sum(gpu_check.BUDGETS.values()) <= 8 * 60
    names = {name for name, _ in MATCHER_REGISTRY}
    assert {row["matcher"] for row in parts["assignment"]["result"]["rows"]} == names
    assert all(row["ms"] > 0 and row["positives"] > 0 for row in parts["assignment"]["result"]["rows"])
    steps = {row["matcher"]: row for row in parts["train_step"]["result"]["rows"]}
    assert steps.keys() == names | {"detectron2_fcos"}
    assert all(row["step_ms"] > 0 and row["x_detectron2_fcos"] > 0 for row in steps.values())
    assert parts["launch"]["result"]["last_iteration"] == 1 and "eval" in parts["launch"]["result"]
    assert {row["runtime"] for row in parts["inference"]["result"]["rows"]} == {"eager", "exported"}
    assert summary["machine"]["packages"]["detectron2"] == "0.6"

    written = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert written["parts"].keys() == parts.keys()
    report = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| `dw` | 10 | cpu |" in report and "| `detectron2_fcos` |" in report
    assert all(t["verdict"] == "not measured" for t in gpu_report.targets(summary))  # a dry run measures none


def test_the_gpu_pins_keep_the_project_pins_unless_a_reason_is_given(tmp_path):
    pins = gpu_wheels.gpu_pins()
    project = gpu_wheels.read_pins(REPO / "requirements" / "runtime.txt")
    assert pins["yacs"] == project["yacs"][0] and pins["pycocotools"] != project["pycocotools"][0]
    changed = tmp_path / "gpu.txt"
    changed.write_text("yacs==0.1.7\n")
    with pytest.raises(ValueError, match=r"gpu.txt:1: yacs==0.1.7, but runtime.txt pins 0.1.8"):
        gpu_wheels.gpu_pins(changed)
    changed.write_text("yacs==0.1.7  # GPU: a reason\nextra==1.0\n")
    with pytest.raises(ValueError, match=r"gpu.txt:2: extra is not pinned in runtime.txt"):
        gpu_wheels.gpu_pins(changed)
    changed.write_text("yacs>=0.1\n")
    with pytest.raises(ValueError, match="is not pinned as name==version"):
        gpu_wheels.gpu_pins(changed)


@pytest.mark.parametrize("filename, fits", [
    ("yacs-0.1.8-py3-none-any.whl", True),
    ("pycocotools-2.0.8-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("pycocotools-2.0.8-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False),
    ("numpy-2.0.0-cp312-cp312-macosx_14_0_arm64.whl", False),
    ("legacy-1.0-py2-none-any.whl", False),
])
def test_wheel_fits_cpython_312_manylinux(filename, fits):
    assert gpu_wheels.wheel_fits(filename) == fits


def _cuda_summary(assignment_rows, step_rows, tests):
    return {"mode": "CUDA", "parts": {
        "cuda_tests": {"tests": tests},
        "assignment": {"result": {"rows": assignment_rows}},
        "train_step": {"result": {"rows": step_rows}},
    }}


def _cell(matcher, num_gts, ms, peak, syncs):
    return {"device": "cuda", "matcher": matcher, "num_gts": num_gts, "ms": ms, "peak_mib": peak,
            "host_syncs": syncs, "x_atss": None}


def test_target_verdicts_follow_the_rows():
    assignment = [_cell("atss", 10, 1.0, 1.0, 2), _cell("atss", 1000, 2.0, 100.0, 2),
                  _cell("paa", 10, 1.0, 1.0, 3), _cell("paa", 1000, 3.2, 300.0, 3)]
    for row in assignment:  # as gpu_parts.assignment computes it
        row["x_atss"] = row["ms"] / next(r["ms"] for r in assignment if r["matcher"] == "atss"
                                         and r["num_gts"] == row["num_gts"])
    steps = [{"matcher": "detectron2_fcos", "x_detectron2_fcos": 1.0}, {"matcher": "atss", "x_detectron2_fcos": 1.05}]
    tests = [{"test": f"tests.matchers.test_cuda::{gpu_report.PARITY_TEST}[atss-0]", "outcome": "passed"}]
    verdicts = [t["verdict"] for t in gpu_report.targets(_cuda_summary(assignment, steps, tests))]
    # parity, x atss (paa 1.6x), peak (paa 300 MiB), syncs (constant), train step
    assert verdicts == ["met", "not met", "not met", "met", "met"]

    assignment[3]["host_syncs"] = 40  # a sync per GT
    steps[1]["x_detectron2_fcos"] = 1.2
    tests[0]["outcome"] = "failed"
    verdicts = [t["verdict"] for t in gpu_report.targets(_cuda_summary(assignment, steps, tests))]
    assert verdicts == ["not met", "not met", "not met", "not met", "not met"]
