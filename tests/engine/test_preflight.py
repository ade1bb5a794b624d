"""What train_net.py and tools/lazyconfig_train_net.py refuse before any process starts,
each in one line naming what to do: the embedded dataset not made yet, a --dataset that
no training or test dataset uses, --eval-only without trained weights."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from coco_files import GOOD, write_coco
from conftest import REPO
from detectron2.data import MetadataCatalog

from lada.engine import build_argument_parser, check_before_launch
from lada.engine import lazy
from lada.engine.preflight import check_dataset_files, check_eval_weights

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_a_quick_config_without_the_embedded_data_says_how_to_make_it(tmp_path):
    """As a user meets it: the quick configs read datasets/synthetic of the working folder."""
    done = subprocess.run([sys.executable, str(REPO / "train_net.py"), "--config-file",
                           str(REPO / "configs/quick/lada.yaml")],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "dataset 'synthetic_train' (DATASETS.TRAIN): annotation file "
        "datasets/synthetic/annotations/train.json does not exist (a relative path, read "
        f"from the working folder {tmp_path}); it is the embedded "
        "synthetic dataset: make it with `make data` (or `python datasets/make_synthetic.py`) "
        "from the repository root")


def test_a_missing_dataset_of_your_own_is_named_without_the_embedded_hint(tmp_path):
    registrations = [["mine", str(tmp_path / "train.json"), str(tmp_path)]]
    with pytest.raises(SystemExit, match=r"^dataset 'mine' \(DATASETS.TEST\): annotation file "
                                         rf"{tmp_path / 'train.json'} does not exist$"):
        check_dataset_files({"mine": "DATASETS.TEST"}, registrations)
    check_dataset_files({"voc_2007_test": "DATASETS.TEST"}, registrations)  # not COCO: unchecked


def test_detectron2s_builtin_coco_without_its_files_says_where_it_is_looked_for(
        tmp_path, monkeypatch):
    # as a user without COCO meets it: the COCO configs' builtin names, read under
    # $DETECTRON2_DATASETS (unset: datasets/ of the working folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    expected = Path(MetadataCatalog.get("coco_2017_train").json_file)
    if expected.is_file():
        pytest.skip(f"{expected} exists here")
    with pytest.raises(SystemExit) as stop:
        check_dataset_files({"coco_2017_train": "DATASETS.TRAIN"}, [])
    assert str(stop.value) == (
        f"dataset 'coco_2017_train' (DATASETS.TRAIN): annotation file {expected} does not exist"
        f"; detectron2's builtin datasets are read under datasets/ of the working folder "
        f"{tmp_path} ($DETECTRON2_DATASETS is not set): set DETECTRON2_DATASETS to the folder "
        "holding coco/ (the layout: datasets/README.md)")


@pytest.fixture
def mine(tmp_path):
    json_file, images = write_coco(tmp_path / "mine", [GOOD, GOOD])
    return ["--dataset", "mine", str(json_file), str(images)]


def test_an_unused_dataset_registration_stops_the_yaml_run(mine):
    args = build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/quick/atss.yaml"), *mine])
    with pytest.raises(SystemExit) as stop:
        check_before_launch(args)
    assert str(stop.value) == (
        "--dataset mine is registered but the run does not use it: DATASETS.TRAIN is "
        "('synthetic_train',) and DATASETS.TEST ('synthetic_val',); add DATASETS.TRAIN "
        "\"('mine',)\" (training) or DATASETS.TEST \"('mine',)\" (testing) to the command line")
    check_before_launch(build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/quick/atss.yaml"), *mine,
         "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "()"]))


def test_an_unused_dataset_registration_stops_the_lazy_run(mine):
    args = build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/lazy/quick_atss.py"), *mine,
         "dataloader.train.dataset.names=mine", "dataloader.test.dataset.names=[]"])
    lazy.check_before_launch(args)
    args = build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/lazy/quick_atss.py"), *mine, "--eval-only",
         "train.init_checkpoint=model.pth"])
    with pytest.raises(SystemExit, match=r"^--dataset mine is registered but the run does not "
                       r"use it: dataloader.train.dataset.names is \('synthetic_train',\) and "
                       r"dataloader.test.dataset.names \('synthetic_val',\); add "
                       r"dataloader.train.dataset.names=mine \(training\) or "
                       r"dataloader.test.dataset.names=mine \(testing\)"):
        lazy.check_before_launch(args)


def test_eval_only_without_a_test_dataset_is_refused():
    # it would evaluate nothing and write an eval_results.json without metrics
    args = build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/quick/atss.yaml"), "--eval-only",
         "MODEL.WEIGHTS", "model.pth", "DATASETS.TEST", "()"])
    with pytest.raises(SystemExit) as stop:
        check_before_launch(args)
    assert str(stop.value) == (
        "--eval-only: DATASETS.TEST is empty, so nothing would be evaluated; add "
        "`DATASETS.TEST \"('synthetic_train',)\"` (a registered dataset) to the command line")
    args = build_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs/lazy/quick_atss.py"), "--eval-only",
         "train.init_checkpoint=model.pth", "dataloader.test.dataset.names=[]"])
    with pytest.raises(SystemExit, match=r"^--eval-only: dataloader.test.dataset.names is "
                       r"empty, so nothing would be evaluated; add "
                       r"`dataloader.test.dataset.names=synthetic_train` \(a registered "
                       r"dataset\) to the command line$"):
        lazy.check_before_launch(args)


def test_eval_only_of_a_run_config_needs_the_weights_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = str(run / "config.yaml")
    common = {"output_dir": str(run), "config_file": config, "resume": False}
    # the run config's own weights are what the run started from
    with pytest.raises(SystemExit, match=r"^--eval-only: MODEL.WEIGHTS init.pth is the run "
                       r"config's: what the run started from, not what it trained; add "
                       r"`MODEL.WEIGHTS path/to/model_final.pth` \(the checkpoint of a "
                       r"training run\) to the command line$"):
        check_eval_weights("init.pth", "MODEL.WEIGHTS", given=False, **common)
    check_eval_weights("init.pth", "MODEL.WEIGHTS", given=True, **common)
    # a config of configs/ (not a run's) with its own weights: evaluated as they are
    check_eval_weights("zoo.pth", "MODEL.WEIGHTS", given=False, output_dir=str(run),
                       config_file=str(REPO / "configs/quick/atss.yaml"), resume=False)
    (run / "model_final.pth").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"^--eval-only: train.init_checkpoint is empty, so a "
                       r"randomly initialised model would be evaluated; add "
                       rf"`train.init_checkpoint={run / 'model_final.pth'}` \(this run's final "
                       r"model\) to the command line$"):
        check_eval_weights("", "train.init_checkpoint", given=False, example="{key}={value}",
                           **common)
    (run / "last_checkpoint").write_text("model_0000009.pth")
    check_eval_weights("", "MODEL.WEIGHTS", given=False, output_dir=str(run),
                       config_file=config, resume=True)
