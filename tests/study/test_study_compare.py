"""``python -m lada.study.compare`` on hand-written study.json files: rows labelled per
study, means by hand, refusals of missing or empty studies."""
import json

import pytest
from PIL import Image

from lada.study.compare import compare


def write_study(folder, runs, command="python -m lada.study"):
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"command": command, "runs": runs}))
    return folder


def run(name, seed, ap, commit="abc1234"):
    return {"name": name, "seed": seed, "wall_seconds": 600.0, "commit": commit,
            "metrics": {"AP": ap, "AP50": ap + 20, "AP@ar>=3": ap / 2}}


@pytest.fixture
def studies(tmp_path):
    base = write_study(tmp_path / "study_paa", [run("paa", 0, 36.0), run("paa", 1, 38.0)])
    scaled = write_study(tmp_path / "study_paa_anchor4",
                         [run("paa", 0, 39.0), run("paa", 1, 41.0)],
                         command="python -m lada.study MODEL.MATCHER.PAA.ANCHOR_SCALE 4.0")
    mixed = write_study(tmp_path / "study_two", [run("atss", 0, 38.0), run("lada", 0, 35.0)])
    return base, scaled, mixed


def test_rows_per_study_with_default_labels(studies, tmp_path):
    report = compare(studies, tmp_path / "out")
    lines = report.read_text().splitlines()
    # paa: AP 36, 38 -> 37.0 ± 1.4 (sample std sqrt(2)); AP50 57.0 ± 1.4; AP@ar>=3 18.5 ± 0.7
    assert "| `paa (study_paa)` | 2 | 37.0 ± 1.4 | 57.0 ± 1.4 | 18.5 ± 0.7 | 10.0 |" in lines
    assert "| `paa (study_paa_anchor4)` | 2 | 40.0 ± 1.4 | 60.0 ± 1.4 | 20.0 ± 0.7 | 10.0 |" in lines
    assert "| `study_two: atss` | 1 | 38.0 | 58.0 | 19.0 | 10.0 |" in lines
    assert "| `study_two: lada` | 1 | 35.0 | 55.0 | 17.5 | 10.0 |" in lines
    assert any("MODEL.MATCHER.PAA.ANCHOR_SCALE 4.0" in line for line in lines[:6])
    with Image.open(tmp_path / "out" / "compare.png") as image:
        assert image.format == "PNG"


def test_labels_name_the_studies(studies, tmp_path):
    report = compare(studies[:2], tmp_path / "out", ["paa", "paa, anchors 4s"])
    text = report.read_text()
    assert "| `paa, anchors 4s` | 2 | 40.0 ± 1.4 |" in text
    # the pairwise table: 40 - 37 = +3.0 for the intervention's row
    assert "| `paa, anchors 4s` | +3.0 (p " in text


def test_refusals(studies, tmp_path):
    with pytest.raises(ValueError, match="2 labels for 3 studies"):
        compare(studies, tmp_path / "out", ["a", "b"])
    with pytest.raises(ValueError, match="do not tell the studies apart"):
        compare(studies[:2], tmp_path / "out", ["paa", "paa"])
    with pytest.raises(FileNotFoundError, match="no study.json"):
        compare([tmp_path / "nowhere"], tmp_path / "out")
    empty = write_study(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="no done run yet"):
        compare([empty], tmp_path / "out")


def test_studies_of_different_test_data_are_refused_unless_allowed(tmp_path):
    # the same dataset name with other boxes counts as other test data; a re-evaluation's
    # data replaces that of the end of training
    val = {"synthetic_val": {"images": 40, "annotations": 300}}
    other = {"synthetic_val": {"images": 40, "annotations": 280}}
    a = write_study(tmp_path / "a", [{**run("atss", 0, 38.0), "datasets": val},
                                     {**run("atss", 1, 39.0), "datasets": val}])
    b = write_study(tmp_path / "b", [{**run("lada", 0, 35.0), "datasets": other},
                                     {**run("lada", 1, 36.0), "datasets": other}])
    with pytest.raises(ValueError, match=r"different test data \(a: synthetic_val \(40 images, "
                       r"300 boxes\); b: synthetic_val \(40 images, 280 boxes\)\)"):
        compare([a, b], tmp_path / "out", ["a", "b"])
    text = compare([a, b], tmp_path / "out", ["a", "b"], allow_different_test_data=True).read_text()
    assert "test data synthetic_val (40 images, 280 boxes)" in text
    assert "**The rows were evaluated on different test data**" in text
    reevaluated = write_study(tmp_path / "c", [
        {**run("lada", 0, 35.0), "datasets": other, "evaluation": {"datasets": val, "commit": "x"}}])
    text = compare([a, reevaluated], tmp_path / "out2", ["a", "c"]).read_text()
    assert "different test data" not in text
    assert text.count("test data synthetic_val (40 images, 300 boxes)") == 2


def test_runs_without_recorded_test_data_are_said_so(studies, tmp_path):
    text = compare(studies[:2], tmp_path / "out", ["paa", "paa4"]).read_text()
    assert "test data not recorded" in text


def test_a_done_run_records_its_test_data(tmp_path):
    from lada.study.runs import evaluated_datasets

    assert evaluated_datasets(tmp_path) is None
    datasets = {"mine_val": {"images": 3, "annotations": 7}}
    (tmp_path / "eval_results.json").write_text(json.dumps({"datasets": datasets, "metrics": {}}))
    assert evaluated_datasets(tmp_path) == datasets
