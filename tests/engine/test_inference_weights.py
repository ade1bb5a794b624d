"""No silent wrong weights: every tool that runs trained weights (``--eval-only`` of the
LazyConfig tool, ``tools/predict.py``, ``tools/export_model.py``,
``tools/visualize_assignment.py --weights``, the assignment diagnostics) refuses, in one
line, a checkpoint that does not give each weight of its model, where a training load
re-initialises the class head (``train_net.py --eval-only``: the failure catalogue;
the checkpointer's messages: test_checkpoint.py). The export builds its config as
training does, so the training command's own-data config exports the trained model.

The checkpoints are untrained models saved as a run saves them (nothing is trained)."""
import runpy
import sys

import numpy as np
import pytest
import torch
from coco_files import write_coco
from conftest import REPO
from detectron2.modeling import build_model
from PIL import Image
from test_scripts import load_tool

from lada.engine import build_argument_parser, build_cfg, save_run_config, setup_cfg
from lada.engine.lazy import do_eval_only, load_lazy_config

LADA = str(REPO / "configs/quick/lada.yaml")
OWN_DATA = str(REPO / "configs/quick/own_data.yaml")
NO_DATA = ["DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]


def _one_line(error) -> str:
    message = str(error.value.code if isinstance(error.value, SystemExit) else error.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory):
    """``run/model_final.pth``: the 5-class quick ``lada`` model, saved as a run saves it."""
    folder = tmp_path_factory.mktemp("run")
    cfg, _ = build_cfg(LADA, NO_DATA)
    torch.save({"model": build_model(cfg).state_dict(), "iteration": 3}, folder / "model_final.pth")
    return folder / "model_final.pth"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_refuses_weights_of_another_class_count(five_classes, image, tmp_path):
    from test_run_folder import load_predict  # registered: its dataclass needs its module

    predict = load_predict()
    with pytest.raises(SystemExit) as error:
        predict.main(["--config-file", LADA, "--input", str(image), "--output", str(tmp_path / "out"),
                      *NO_DATA, "MODEL.FCOS.NUM_CLASSES", "2", "MODEL.WEIGHTS", str(five_classes)])
    message = _one_line(error)
    assert message.startswith(f"MODEL.WEIGHTS: refused checkpoint {five_classes} for inference: ")
    assert "predicts 5 classes, the model's 2 (MODEL.FCOS.NUM_CLASSES 2)" in message
    assert "`MODEL.FCOS.NUM_CLASSES 5`" in message
    assert not (tmp_path / "out" / "coco_instances_results.json").exists()


def test_export_refuses_weights_of_another_class_count_in_one_line(
        five_classes, tmp_path, monkeypatch):
    """As run from the shell (its ``__main__``): ``export_model.py: <why>``, no traceback."""
    monkeypatch.setattr(sys, "argv", [
        "export_model.py", "--config-file", LADA, "--output", str(tmp_path / "export"),
        *NO_DATA, "MODEL.FCOS.NUM_CLASSES", "2", "MODEL.WEIGHTS", str(five_classes)])
    with pytest.raises(SystemExit) as error:
        runpy.run_path(str(REPO / "tools/export_model.py"), run_name="__main__")
    message = _one_line(error)
    assert message.startswith(f"export_model.py: refused checkpoint {five_classes} for inference")
    assert "predicts 5 classes, the model's 2" in message
    assert not (tmp_path / "export" / "model.pt2").exists()


@pytest.fixture
def own_data(tmp_path):
    """A 2-category dataset of 320-px images with 40-px objects, and the training command's
    data arguments for configs/quick/own_data.yaml."""
    json_file, images = write_coco(tmp_path / "data", [[(1, [10, 10, 40, 40]), (2, [100, 120, 40, 40])]] * 3,
                                   size=320)
    dataset = ["--dataset", "own_export", str(json_file), str(images)]
    data = ["DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "('own_export',)",
            "DATASETS.TEST", "('own_export',)"]
    return dataset, data, json_file


def test_export_with_the_training_config_applies_the_recipe(own_data, tmp_path):
    """The own-data recipe sets the class count and sizes from the training data: the
    export, given the training command's config and data, builds the trained model (its
    checkpoint loads whole) with the sizes it was trained at."""
    dataset, data, _ = own_data
    trained = setup_cfg(build_argument_parser().parse_args(
        ["--config-file", OWN_DATA, *dataset, *data, "OUTPUT_DIR", str(tmp_path / "run")]))
    assert trained.MODEL.FCOS.NUM_CLASSES == 2 and trained.INPUT.MIN_SIZE_TEST == 256
    state = build_model(trained).state_dict()
    torch.save({"model": state}, tmp_path / "run" / "model_final.pth")

    tool = load_tool("export_model")
    args = tool.build_parser().parse_args([
        "--config-file", OWN_DATA, "--output", str(tmp_path / "export"), *dataset, *data,
        "MODEL.WEIGHTS", str(tmp_path / "run" / "model_final.pth")])
    cfg = tool.setup_cfg(args)
    keys = ("MODEL.FCOS.NUM_CLASSES", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST",
            "MODEL.MATCHER.LADA.ANCHOR_SCALE")
    assert [_value(cfg, k) for k in keys] == [_value(trained, k) for k in keys]
    model = tool.build_eval_model(cfg)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)
    described = tool.describe(cfg, args)
    assert described["num_classes"] == 2 and described["thing_classes"] == ["a", "b"]
    assert described["input"]["test_resize"]["min_size"] == 256

    # the run's saved config gives the same, without reading the training data again
    saved = save_run_config(trained)
    saved_cfg = tool.setup_cfg(tool.build_parser().parse_args(
        ["--config-file", str(saved), "--output", str(tmp_path / "export2")]))
    assert [_value(saved_cfg, k) for k in keys] == [_value(trained, k) for k in keys]


def test_export_with_the_recipe_and_no_training_data_says_what_to_give(own_data, tmp_path):
    dataset, data, json_file = own_data
    json_file.unlink()
    tool = load_tool("export_model")
    with pytest.raises(SystemExit) as error:
        tool.setup_cfg(tool.build_parser().parse_args(
            ["--config-file", OWN_DATA, "--output", str(tmp_path / "export"), *dataset, *data]))
    message = _one_line(error)
    assert message.startswith(f"dataset 'own_export' (DATASETS.TRAIN): annotation file {json_file} "
                              "does not exist")
    assert message.endswith("give the training command's --dataset and DATASETS.TRAIN arguments, "
                            "or export with the run's saved OUTPUT_DIR/config.yaml")


def test_visualize_assignment_refuses_weights_of_another_class_count(five_classes, tmp_path):
    json_file, images = write_coco(tmp_path / "data", [[(1, [4, 6, 30, 20]), (2, [30, 28, 26, 30])]])
    common = ["--config-file", LADA, "--dataset", "tiny_for_weights", str(json_file), str(images),
              "--name", "tiny_for_weights", "--matchers", "lada", "--output", str(tmp_path / "a.png")]
    sizes = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "MODEL.FCOS.NUM_CLASSES", "2"]
    tool = load_tool("visualize_assignment")
    for named in (["--weights", str(five_classes), *common, *sizes],
                  [*common, *sizes, "MODEL.WEIGHTS", str(five_classes)]):
        with pytest.raises(SystemExit) as error:
            tool.main(named)
        assert _one_line(error).startswith(f"refused checkpoint {five_classes} for inference: ")
    assert not (tmp_path / "a.png").exists()

    # a config's own MODEL.WEIGHTS is the model's initialisation, loaded as in training
    config = tmp_path / "from_five.yaml"
    config.write_text(f"_BASE_: {LADA}\nMODEL:\n  WEIGHTS: {five_classes}\n")
    common[1] = str(config)
    assert tool.main([*common, *sizes]).is_file()


def test_lazy_eval_only_refuses_weights_of_another_class_count(five_classes, tmp_path):
    cfg = load_lazy_config(str(REPO / "configs/lazy/quick_lada.py"), [
        "model.num_classes=2", f"train.init_checkpoint={five_classes}",
        f"train.output_dir={tmp_path}", "train.device=cpu"])
    with pytest.raises(SystemExit) as error:
        do_eval_only(cfg, resume=False)
    message = _one_line(error)
    assert message.startswith(f"--eval-only: refused checkpoint {five_classes} for inference: ")
    assert "predicts 5 classes, the model's 2 (model.num_classes 2)" in message
    assert "saved train.output_dir/config.yaml" in message and "`model.num_classes=5`" in message
    assert not (tmp_path / "eval_results.json").exists()


def test_assignment_diagnostics_refuse_weights_of_another_class_count(five_classes):
    from benchmarks import assignment_diagnostics
    from lada.engine import CheckpointError

    cfg, _ = build_cfg(LADA, [*NO_DATA, "MODEL.FCOS.NUM_CLASSES", "2"])
    with pytest.raises(CheckpointError, match="predicts 5 classes, the model's 2"):
        assignment_diagnostics.capture_inputs(cfg, str(five_classes), num_images=1, batch=1)


def _value(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg
