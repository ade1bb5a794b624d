"""The run folder is reusable alone: a training run saves ``OUTPUT_DIR/config.yaml`` with
its ``--dataset`` registrations, ``--eval-only`` and ``tools/predict.py`` run from it
without ``--dataset`` (from another working folder) and write beside the run, and neither
``--eval-only`` nor a run that fails at start-up rewrites it. ``tools/predict.py`` gives
the detections of ``--eval-only``, says what it drew and names an input it cannot read;
a run ends with a summary, its console without the dumps and harmless warnings."""
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from coco_files import write_coco
from conftest import REPO
from PIL import Image

from lada.data.synthetic import SyntheticSpec, generate
from lada.engine import build_argument_parser, build_cfg, check_before_launch, save_run_config
from lada.engine.run_folder import earlier_run_warning
from lada.engine.setup import merge_registrations

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def load_predict():
    """tools/predict.py as a module (registered: its dataclass needs its module)."""
    spec = importlib.util.spec_from_file_location("lada_tools_predict", REPO / "tools/predict.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(script, *arguments, cwd):
    command = [sys.executable, str(REPO / script), *map(str, arguments)]
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-iteration training run on a tiny synthetic dataset given with --dataset, into a
    relative OUTPUT_DIR (``runs/atss`` of its working folder), and its console."""
    tiny = generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=8, num_val=4))
    workdir = tmp_path_factory.mktemp("work")
    done = _run(
        "train_net.py", "--config-file", REPO / "configs/quick/atss.yaml",
        "--dataset", "tiny_train", tiny["train"], tiny["train_images"],
        "--dataset", "tiny_val", tiny["val"], tiny["val_images"],
        "DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "('tiny_train',)",
        "DATASETS.TEST", "('tiny_val',)", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)",
        "SOLVER.WARMUP_ITERS", "2", "MODEL.FCOS.SCORE_THRESH_TEST", "0.05",
        "OUTPUT_DIR", "runs/atss", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": workdir / "runs/atss", "console": done.stdout + done.stderr, **tiny}


def test_saved_config_registers_the_command_line_datasets(run):
    config = yaml.safe_load((run["out"] / "config.yaml").read_text())
    assert config["DATASETS"]["REGISTER_COCO"] == [
        ["tiny_train", str(run["train"].resolve()), str(run["train_images"].resolve())],
        ["tiny_val", str(run["val"].resolve()), str(run["val_images"].resolve())],
    ]


def test_saved_config_makes_the_configs_own_registrations_absolute(tmp_path, monkeypatch):
    """A quick config registers the embedded data by paths relative to the repository's
    root; the saved config holds them resolved from the training's working folder, so that
    --eval-only and predict find the data from any folder."""
    monkeypatch.chdir(REPO)
    cfg, _ = build_cfg(str(REPO / "configs/quick/atss.yaml"), ["OUTPUT_DIR", str(tmp_path)])
    registered = [list(entry) for entry in cfg.DATASETS.REGISTER_COCO]
    assert registered and not any(Path(entry[1]).is_absolute() for entry in registered)
    saved = yaml.safe_load(save_run_config(cfg).read_text())["DATASETS"]["REGISTER_COCO"]
    assert saved == [[name, str(REPO / json_file), str(REPO / image_root)]
                     for name, json_file, image_root in registered]


def test_saved_config_holds_the_run_folder_as_output_dir(run):
    config = yaml.safe_load((run["out"] / "config.yaml").read_text())
    assert config["OUTPUT_DIR"] == str(run["out"].resolve())  # was the relative runs/atss


def test_eval_only_and_predict_from_the_saved_config(run, tmp_path):
    out, saved = run["out"], (run["out"] / "config.yaml").read_bytes()
    weights = out / "model_final.pth"
    (out / "eval_results.json").unlink()  # the training run's, of its final evaluation
    done = _run("train_net.py", "--config-file", out / "config.yaml", "--eval-only",
                "MODEL.WEIGHTS", weights, cwd=tmp_path)  # no --dataset, another folder
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "config.yaml").read_bytes() == saved
    assert not (tmp_path / "runs").exists()  # beside the run, not under this folder
    results = json.loads((out / "eval_results.json").read_text())
    assert results["weights"] == str(weights) and results["datasets"]["tiny_val"]["images"] == 4
    evaluated = json.loads((out / "inference/tiny_val/coco_instances_results.json").read_text())
    assert len(evaluated) > 0

    drawn = tmp_path / "drawn"
    done = _run("tools/predict.py", "--config-file", out / "config.yaml", "--input", "tiny_val",
                "--output", drawn, "--show-gt", "--confidence-threshold", "0.1",
                "MODEL.WEIGHTS", weights, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 images: " in done.stdout and "images/s" in done.stdout
    predicted = json.loads((drawn / "coco_instances_results.json").read_text())
    _assert_same_detections(predicted, evaluated)

    val = json.loads(run["val"].read_text())
    for image in val["images"]:
        source = np.asarray(Image.open(run["val_images"] / image["file_name"]).convert("RGB"))
        drawing = np.asarray(Image.open(drawn / image["file_name"]))
        assert drawing.shape == source.shape and (drawing != source).any()
    assert (drawn / "images.json").is_file()


def test_predict_on_a_folder_matches_the_dataset_by_file(run, tmp_path):
    """Files instead of a dataset: ids 1, 2, ... in sorted order, the dataset's category ids
    (from the config's datasets), the same detections as the dataset's images."""
    out = run["out"]
    common = ("--config-file", out / "config.yaml", "MODEL.WEIGHTS", out / "model_final.pth")
    by_dataset, by_folder = tmp_path / "dataset", tmp_path / "folder"
    done = _run("tools/predict.py", "--input", "tiny_val", "--output", by_dataset, *common,
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run("tools/predict.py", "--input", run["val_images"], "--output", by_folder, *common,
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {image["id"]: Path(image["file_name"]).name
             for image in json.loads((by_folder / "images.json").read_text())}
    assert sorted(names) == [1, 2, 3, 4] and list(names.values()) == sorted(names.values())
    val = json.loads(run["val"].read_text())
    dataset_id = {image["file_name"]: image["id"] for image in val["images"]}
    renamed = [{**d, "image_id": dataset_id[names[d["image_id"]]]}
               for d in json.loads((by_folder / "coco_instances_results.json").read_text())]
    _assert_same_detections(renamed, json.loads((by_dataset / "coco_instances_results.json").read_text()))


@pytest.mark.parametrize("bad", [("MODEL.MATCHER.NAME", "no_such_matcher"),
                                 ("DATASETS.IMAGE_READ_POLICY", "ignore")])
def test_a_failing_start_leaves_the_saved_config(run, tmp_path, bad):
    saved = (run["out"] / "config.yaml").read_bytes()
    done = _run("train_net.py", "--config-file", run["out"] / "config.yaml", *bad, cwd=tmp_path)
    assert done.returncode != 0
    assert bad[1] in done.stderr
    assert (run["out"] / "config.yaml").read_bytes() == saved


def test_predict_refuses_an_unknown_input(run, tmp_path):
    done = _run("tools/predict.py", "--config-file", run["out"] / "config.yaml",
                "--input", "no_such_thing", "--output", tmp_path / "p",
                "MODEL.WEIGHTS", run["out"] / "model_final.pth", cwd=tmp_path)
    assert done.returncode != 0
    assert "--input no_such_thing: no such image file" in done.stderr
    assert "tiny_val" in done.stderr  # the registered datasets are listed


def test_the_run_ends_with_a_summary_and_a_quiet_console(run):
    console, out = run["console"], run["out"].resolve()
    summary = console[console.index("Summary of the run"):]
    for name in ("model_final.pth", "metrics.json", "eval_results.json", "config.yaml"):
        assert f"{name} {out / name}" in summary
    assert f"TensorBoard: tensorboard --logdir {out}" in summary
    assert "this run: bbox/AP " in summary
    assert "README" not in summary  # its own datasets, not the config's: no figure
    # the dumps went to log.txt only; third-party warnings without an action are gone
    log = (out / "log.txt").read_text()
    for dump in ("Running with full config:", "Environment info:", "Model:\n"):
        assert dump in log and dump not in console
    assert f"environment, command line, config and model: in {out / 'log.txt'}" in console
    for noise in ("torch.meshgrid", "No CUDA runtime", "is not writable", "TypedStorage"):
        assert noise not in console
    assert len(console.splitlines()) < 120


def test_eval_only_without_weights_is_refused_naming_the_final_model(run, tmp_path):
    args = build_argument_parser().parse_args(
        ["--config-file", str(run["out"] / "config.yaml"), "--eval-only"])
    with pytest.raises(SystemExit) as stop:
        check_before_launch(args)
    assert str(stop.value) == (
        "--eval-only: MODEL.WEIGHTS is empty, so a randomly initialised model would be "
        f"evaluated; add `MODEL.WEIGHTS {run['out'].resolve() / 'model_final.pth'}` (this "
        "run's final model) to the command line")
    check_before_launch(build_argument_parser().parse_args(  # --resume: its last checkpoint
        ["--config-file", str(run["out"] / "config.yaml"), "--eval-only", "--resume"]))


def test_predict_says_what_it_drew_and_hints_at_the_threshold(run, tmp_path, capsys):
    predict = load_predict()
    out = run["out"]
    predict.main(["--config-file", str(out / "config.yaml"), "--input", "tiny_val",
                  "--output", str(tmp_path / "p"), "--confidence-threshold", "1",
                  "MODEL.WEIGHTS", str(out / "model_final.pth")])
    printed = capsys.readouterr().out
    scores = [d["score"] for d in json.loads((tmp_path / "p/coco_instances_results.json").read_text())]
    assert (f"4 images: {len(scores)} detections kept (scores >= MODEL.FCOS.SCORE_THRESH_TEST "
            f"0.05, all in coco_instances_results.json), 0 boxes drawn (scores >= "
            f"--confidence-threshold 1), top score {max(scores):.3f}") in printed
    hint = f"{int(max(scores) * 100) / 100:g}"  # the top score, rounded down to 0.01
    assert (f"hint: no detection reaches --confidence-threshold 1; --confidence-threshold "
            f"{hint} draws the best ones") in printed


def test_predict_counts_its_threads_in_words():
    predict = load_predict()
    done = {"seconds": 2.0, "images_per_second": 8.0, "model_images_per_second": 20.0}
    assert predict.speed_line(done, 1, "cpu", "p") == (
        "2.0 s: 8.00 images/s (20.00 images/s in the model alone, 1 CPU thread, device cpu); "
        "drawings, coco_instances_results.json and images.json in p")
    assert ", 2 CPU threads, " in predict.speed_line(done, 2, "cpu", "p")


def test_predict_names_an_input_that_is_not_an_image(run, tmp_path):
    predict = load_predict()
    common = ["--config-file", str(run["out"] / "config.yaml"), "--output", str(tmp_path / "p"),
              "MODEL.WEIGHTS", str(run["out"] / "model_final.pth")]
    notes, fake = tmp_path / "notes.txt", tmp_path / "fake.png"
    notes.write_text("not an image")
    fake.write_text("not an image either")
    with pytest.raises(SystemExit) as stop:
        predict.main(["--input", str(notes), *common])
    assert str(stop.value).startswith(f"--input {notes}: not an image (images end in .bmp,")
    with pytest.raises(SystemExit) as stop:
        predict.main(["--input", str(fake), *common])
    assert str(stop.value).startswith(f"--input: cannot read {fake} as an image "
                                      "(UnidentifiedImageError: ")
    assert "DATASETS.IMAGE_READ_POLICY" not in str(stop.value)


def _assert_same_detections(actual, expected):
    """Same images, categories and count per image; boxes and scores to float precision."""
    def by_image(detections):
        grouped = {}
        for d in detections:
            grouped.setdefault((d["image_id"], d["category_id"]), []).append(d)
        return {key: sorted(group, key=lambda d: -d["score"]) for key, group in grouped.items()}

    actual, expected = by_image(actual), by_image(expected)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert len(actual[key]) == len(expected[key]), key
        np.testing.assert_allclose([d["bbox"] for d in actual[key]],
                                   [d["bbox"] for d in expected[key]], atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in actual[key]],
                                   [d["score"] for d in expected[key]], atol=1e-5)


def test_a_recipe_run_config_keeps_what_was_trained(tmp_path):
    """The saved config of a recipe run holds the chosen keys with RECIPE.APPLIED True:
    reused, it neither reads the training data again (here removed) nor changes them;
    with RECIPE.APPLIED False the recipe reads the data again."""
    json_file, image_dir = write_coco(tmp_path / "data", [[(1, [10, 10, 40, 40])]] * 4, size=320)
    # in-process: only this test's dataset is registered (not the embedded one of the config)
    opts = ["DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "('run_folder_recipe',)",
            "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "run")]
    cfg, recipe = build_cfg(str(REPO / "configs/quick/own_data.yaml"), opts,
                            [["run_folder_recipe", str(json_file), str(image_dir)]])
    assert recipe is not None and cfg.INPUT.MIN_SIZE_TEST == 256  # 320 x 32 / 40
    path = save_run_config(cfg)
    assert yaml.safe_load(path.read_text())["RECIPE"]["APPLIED"] is True
    json_file.unlink()

    reused, again = build_cfg(str(path), [])
    assert again is None
    for key, value in recipe.values.items():  # every key the recipe chose, as trained
        saved = functools.reduce(lambda node, part: node[part], key.split("."), reused)
        assert _as_lists(saved) == _as_lists(value), key
    with pytest.raises(FileNotFoundError, match="annotation file"):
        build_cfg(str(path), ["RECIPE.APPLIED", "False"])


def _as_lists(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def test_merge_registrations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registered = [["a", "rel/a.json", "rel/a"], ["b", "b.json", "b"]]
    merged = merge_registrations(registered, [["b", "new/b.json", "new/b"], ("c", "c.json", "c")])
    assert merged == [["a", "rel/a.json", "rel/a"],  # the config's entries as written
                      ["b", str(tmp_path / "new/b.json"), str(tmp_path / "new/b")],
                      ["c", str(tmp_path / "c.json"), str(tmp_path / "c")]]
    with pytest.raises(ValueError, match=r"DATASETS.REGISTER_COCO: .*\['a', 'a.json'\]"):
        merge_registrations([["a", "a.json"]], [])


def test_a_training_into_an_earlier_runs_folder_is_warned(tmp_path):
    assert earlier_run_warning(str(tmp_path), resume=False) is None  # a new folder
    (tmp_path / "log.txt").write_text("an evaluation's log\n")
    (tmp_path / "eval_results.json").write_text("{}")
    assert earlier_run_warning(str(tmp_path), resume=False) is None  # no training was here
    (tmp_path / "model_final.pth").write_bytes(b"0")
    (tmp_path / "metrics.json").write_text("{}\n")
    message = earlier_run_warning(str(tmp_path), resume=False)
    assert message.startswith(f"OUTPUT_DIR {tmp_path} holds an earlier run (model_final.pth, "
                              "metrics.json, last written ")
    assert message.endswith("give another OUTPUT_DIR to keep it, or --resume to continue it")
    assert earlier_run_warning(str(tmp_path), resume=True) is None  # continuing it is meant


def test_the_second_training_into_one_folder_says_so(run, tmp_path):
    """train_net.py itself: the module's run folder trained once already."""
    done = _run("train_net.py", "--config-file", run["out"] / "config.yaml",
                "SOLVER.MAX_ITER", "1", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
                "OUTPUT_DIR", tmp_path / "copy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "holds an earlier run" not in done.stdout + done.stderr  # a new folder
    again = _run("train_net.py", "--config-file", run["out"] / "config.yaml",
                 "SOLVER.MAX_ITER", "1", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
                 "OUTPUT_DIR", tmp_path / "copy", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"OUTPUT_DIR {tmp_path / 'copy'} holds an earlier run" in again.stdout + again.stderr
