"""``python -m lada.study --dataset ...``: the own-data configs of the registered methods
on a user's COCO dataset, in one command (one end-to-end run of two methods, one
iteration each; the rest in this process, without training)."""
import json

import pytest
import yaml
from coco_files import write_coco
from conftest import REPO
from detectron2.config import get_cfg

from lada.config import add_lada_config
from lada.matchers import MATCHER_REGISTRY
from lada.study import StudyError, plan_runs
from lada.study.__main__ import main as study_main, own_data_configs, own_data_opts

# 160 px images with 32 px objects: the recipe's size keeps them at 32 px, 160 x 32 / 32 = 160
BOXES = [(1, [20, 20, 32, 32]), (2, [100, 90, 32, 32])]


def datasets(root, train_images=4, val_images=2):
    train = write_coco(root / "train", [BOXES] * train_images, size=160)
    val = write_coco(root / "val", [BOXES] * val_images, size=160)
    tag = root.name  # names unique per test: the catalog of this process is shared
    return [[f"mine_train_{tag}", *map(str, train)], [f"mine_val_{tag}", *map(str, val)]]


def last_evaluation(run_dir):
    lines = (run_dir / "metrics.json").read_text().splitlines()
    return [json.loads(line) for line in lines if "bbox/AP" in line][-1]


def test_two_methods_on_own_data_in_one_command(tmp_path, monkeypatch, capsys):
    (train_name, *train), (val_name, *val) = datasets(tmp_path)
    out = tmp_path / "study"
    monkeypatch.chdir(REPO)  # the study runs here; each training in its train_net.py process
    study_main([
        "--dataset", train_name, *train, "--dataset", val_name, *val,
        "--methods", "lada", "atss", "--seeds", "0", "--jobs", "2", "--output-dir", str(out),
        "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.FCOS.SCORE_THRESH_TEST", "0.0",
    ])
    printed = capsys.readouterr().out
    assert "2 runs (2 configs x 1 seeds), 0 already done" in printed
    assert (f"own data: DATASETS.TRAIN ('{train_name}',) DATASETS.TEST ('{val_name}',); "
            "iterations of each run (SOLVER.MAX_ITER, the own-data recipe's unless set): "
            "own_data_lada 1, "
            "own_data_atss 1") in printed

    table = (out / "study.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| config |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for method in ("lada", "atss"):
        run_dir = out / f"own_data_{method}" / "seed0"
        row = next(line for line in table if line.startswith(f"| `own_data_{method}` | 1 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[columns.index("AP50")] == f"{last_evaluation(run_dir)['bbox/AP50']:.1f}"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["MODEL"]["MATCHER"]["NAME"] == method
        assert config["DATASETS"]["TRAIN"] == [train_name] and config["DATASETS"]["TEST"] == [val_name]
        assert config["RECIPE"]["APPLIED"] and config["INPUT"]["MIN_SIZE_TEST"] == 160
        assert config["MODEL"]["FCOS"]["NUM_CLASSES"] == 2  # the dataset's, not the quick 5
    assert (out / "study.png").is_file()
    assert sorted(r["name"] for r in json.loads((out / "study.json").read_text())["runs"]) == [
        "own_data_atss", "own_data_lada"]


def test_own_data_configs_are_one_per_registered_method():
    configs = own_data_configs()
    methods = []
    for path in configs:
        cfg = add_lada_config(get_cfg())
        cfg.merge_from_file(str(path))
        assert cfg.RECIPE.ENABLED, path
        methods.append(cfg.MODEL.MATCHER.NAME)
    assert sorted(methods) == sorted(name for name, _ in MATCHER_REGISTRY)
    assert [p.name for p in own_data_configs(["paa", "fcos"])] == [
        "own_data_paa.yaml", "own_data_fcos.yaml"]
    with pytest.raises(SystemExit, match="unknown method.*registered: .*lada"):
        own_data_configs(["lada", "retina"])


def test_first_dataset_trains_and_the_others_test_unless_set():
    entries = [["a", "a.json", "a"], ["b", "b.json", "b"], ["c", "c.json", "c"]]
    assert own_data_opts(entries, ["SOLVER.MAX_ITER", "5"]) == [
        "DATASETS.TRAIN", "('a',)", "DATASETS.TEST", "('b', 'c')", "SOLVER.MAX_ITER", "5"]
    assert own_data_opts(entries, ["DATASETS.TEST", "('a',)"]) == [
        "DATASETS.TRAIN", "('a',)", "DATASETS.TEST", "('a',)"]
    with pytest.raises(SystemExit, match="give the test set as a second --dataset"):
        own_data_opts(entries[:1], [])


@pytest.mark.parametrize("arguments, message", [
    (["--methods", "lada"], "--methods picks the own-data configs"),
    (["--quick", "--dataset", "a", "a.json", "a"], "--quick or --dataset, not both"),
])
def test_conflicting_options_are_refused(arguments, message, capsys):
    with pytest.raises(SystemExit):
        study_main(arguments)
    assert message in capsys.readouterr().err


def test_runs_take_the_recipes_schedule_and_bad_test_data_stops_before_training(tmp_path):
    entries = datasets(tmp_path)
    opts = own_data_opts(entries, [])
    runs = plan_runs(own_data_configs(["dw"]), [0, 1], tmp_path / "out", entries, opts)
    # RECIPE.EPOCHS 100 of 4 images at RECIPE.IMS_PER_BATCH 8 (far within the pixel budget)
    assert [(r.name, r.seed, r.max_iter) for r in runs] == [
        ("own_data_dw", 0, 50), ("own_data_dw", 1, 50)]
    assert runs[0].train_args[:7] == ("--config-file", str(REPO / "configs/quick/own_data_dw.yaml"),
                                      "--dataset", *entries[0], "--dataset")

    missing = [entries[0], [f"gone_{tmp_path.name}", str(tmp_path / "gone.json"), str(tmp_path)]]
    with pytest.raises(StudyError,
                       match=f"test dataset 'gone_{tmp_path.name}' does not load.*gone.json"):
        plan_runs(own_data_configs(["dw"]), [0], tmp_path / "out2", missing, own_data_opts(missing, []))
    no_train = [[f"none_{tmp_path.name}", str(tmp_path / "none.json"), str(tmp_path)], entries[1]]
    with pytest.raises(StudyError, match=f"own_data_dw.yaml: dataset 'none_{tmp_path.name}': "
                                         "annotation file .*none.json does not exist"):
        plan_runs(own_data_configs(["dw"]), [0], tmp_path / "out2", no_train,
                  own_data_opts(no_train, []))
    with pytest.raises(StudyError, match="DATASETS.TEST is empty"):
        plan_runs(own_data_configs(["dw"]), [0], tmp_path / "out3", entries,
                  own_data_opts(entries, ["DATASETS.TEST", "()"]))
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
