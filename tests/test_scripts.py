"""The benchmark and tool scripts of the README in their ``--quick`` / small forms: each
runs and writes the files it names, with the content they should hold."""
import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from coco_files import write_coco
from conftest import REPO
from PIL import Image

from benchmarks import matchers as bench_matchers
from benchmarks import train_step
from benchmarks.measure import add_output_dir_argument, output_dir
from lada.matchers import MATCHER_REGISTRY, MatchResult, PairWeights

REGISTERED = sorted(name for name, _ in MATCHER_REGISTRY)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def assert_png(path, min_side=200):
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side


def test_a_quick_check_never_writes_over_the_measured_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the repository's relative benchmarks/results stays untouched
    paths = bench_matchers.main(["--quick", "--matchers", "fcos", "--max-sides", "124"])
    assert paths["matchers.csv"] == Path("output/benchmarks/matchers.csv")
    assert not (tmp_path / "benchmarks").exists()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    add_output_dir_argument(parser)
    assert output_dir(parser.parse_args([])) == "benchmarks/results"  # a measurement
    assert output_dir(parser.parse_args(["--quick", "--output-dir", "x"])) == "x"


def test_matchers_benchmark_quick(tmp_path):
    paths = bench_matchers.main(["--quick", "--output-dir", str(tmp_path)])
    rows = read_csv(paths["matchers.csv"])
    expected = {(name, g, side) for name in REGISTERED + [bench_matchers.SKLEARN_PAA]
                for g in (1, 10) for side in bench_matchers.MAX_SIDES}
    assert {(row["matcher"], int(row["num_gts"]), float(row["max_side"])) for row in rows} == expected
    for row in rows:
        assert float(row["ms"]) > 0 and float(row["peak_mib"]) > 0
        if row["matcher"] == "fcos":
            assert float(row["x_fcos"]) == 1.0
        fcos = next(r for r in rows if r["matcher"] == "fcos" and r["num_gts"] == row["num_gts"]
                    and r["max_side"] == row["max_side"])
        assert float(row["x_fcos"]) == pytest.approx(float(row["ms"]) / float(fcos["ms"]))
    by_name = {(row["matcher"], row["num_gts"], row["max_side"]): row for row in rows}
    for side in {row["max_side"] for row in rows}:
        # every matcher assigns (tal may leave the G = 1 scene's 6 x 9 px box without a
        # positive: 13 points outside it have a larger alignment metric)
        assert all(int(by_name[(name, "10", side)]["positives"]) > 0 for name, _, _ in expected)
        assert (by_name[("paa", "10", side)]["positives"]
                == by_name[(bench_matchers.SKLEARN_PAA, "10", side)]["positives"])
    gmm = read_csv(paths["gmm.csv"])
    assert [int(row["num_gts"]) for row in gmm] == [1, 10]
    assert all(row["agree"] == row["num_gts"] for row in gmm)
    for row in gmm:  # the ratios are of the times written beside them
        assert float(row["speedup"]) == pytest.approx(float(row["sklearn_ms"]) / float(row["torch_ms"]))
        assert float(row["torch_cpu_ms"]) > 0 and float(row["cpu_speedup"]) == pytest.approx(
            float(row["sklearn_cpu_ms"]) / float(row["torch_cpu_ms"]))
    meta = json.loads(paths["matchers.json"].read_text())
    assert {"cpu", "cores", "torch"} <= set(meta["machine"]) and len(meta["load_before"]) == 3
    assert "| `lada` | 10 |" in paths["matchers.md"].read_text()
    assert_png(paths["matchers.png"])


def test_train_step_benchmark_quick(tmp_path):
    paths = train_step.main(["--quick", "--output-dir", str(tmp_path)])
    rows = read_csv(paths["train_step.csv"])
    assert sorted(row["matcher"] for row in rows) == REGISTERED
    for row in rows:
        assert float(row["step_ms"]) > float(row["assign_ms"]) > 0
    assert next(float(r["x_fcos"]) for r in rows if r["matcher"] == "fcos") == 1.0
    assert json.loads(paths["train_step.json"].read_text())["images"] == 1
    assert "| `paa` |" in paths["train_step.md"].read_text()


def test_inference_benchmark_quick(tmp_path):
    # eager only: the export runtimes are the exports tests/test_export.py round-trips
    from benchmarks import inference

    paths = inference.main(["--quick", "--runtimes", "eager", "--output-dir", str(tmp_path)])
    (row,) = read_csv(paths["inference.csv"])
    assert row["runtime"] == "eager" and float(row["median_ms"]) > 0 and float(row["images_per_s"]) > 0
    assert float(row["params_m"]) == 11.55 and float(row["gflops"]) > 0  # the quick model at 64 px
    meta = json.loads(paths["inference.json"].read_text())
    assert meta["runtimes"] == ["eager"] and meta["load_before"]


def test_visualize_assignment_on_a_registered_dataset(tmp_path):
    json_file, images = write_coco(tmp_path / "data", [[(1, [4, 6, 30, 20]), (2, [30, 28, 26, 30])]])
    output = tmp_path / "assignment.png"
    load_tool("visualize_assignment").main([
        "--config-file", str(REPO / "configs/quick/lada.yaml"),
        "--dataset", "tiny_for_visualizer", str(json_file), str(images),
        "--name", "tiny_for_visualizer", "--output", str(output),
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    ])
    assert_png(output)
    with pytest.raises(SystemExit, match="has 1 images"):
        load_tool("visualize_assignment").main([
            "--config-file", str(REPO / "configs/quick/lada.yaml"),
            "--name", "tiny_for_visualizer", "--index", "5", "--output", str(output),
        ])


def test_the_dataset_tools_share_their_dataset_flags(capsys):
    """--dataset NAME JSON IMAGE_ROOT registers and --name NAME chooses, in the visualiser
    as in the dataset browser (and --dataset as in train_net.py and predict.py)."""
    for name in ("visualize_assignment", "browse_dataset"):
        args = load_tool(name).build_parser().parse_args([
            "--config-file", "c.yaml", "--output", "o", "--dataset", "d", "d.json", "images",
            "--dataset", "e", "e.json", "images", "--name", "e", "KEY.A", "1"])
        assert (args.dataset, args.name, args.opts) == (
            [["d", "d.json", "images"], ["e", "e.json", "images"]], "e", ["KEY.A", "1"]), name
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("former, current, warnings", [
    (["--register", "d", "d.json", "images", "--dataset", "d"],
     ["--dataset", "d", "d.json", "images", "--name", "d"], 2),
    (["--dataset", "d", "--register", "d", "d.json", "images", "INPUT.MIN_SIZE_TEST", "64"],
     ["--name", "d", "--dataset", "d", "d.json", "images", "INPUT.MIN_SIZE_TEST", "64"], 2),
    (["--dataset", "d", "INPUT.MIN_SIZE_TEST", "64"], ["--name", "d", "INPUT.MIN_SIZE_TEST", "64"], 1),
    (["--index", "2", "--dataset=d"], ["--index", "2", "--name=d"], 1),
    (["--dataset", "d"], ["--name", "d"], 1),
])
def test_the_visualisers_former_dataset_flags_still_work_with_a_warning(former, current, warnings, capsys):
    """Its former --register NAME JSON IMAGE_ROOT and --dataset NAME (commands in users'
    notes) parse as --dataset NAME JSON IMAGE_ROOT and --name NAME, each with one line
    saying so."""
    parser = load_tool("visualize_assignment").build_parser()
    expected = parser.parse_args(["--config-file", "c.yaml", *current])
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["--config-file", "c.yaml", *former]) == expected
    printed = capsys.readouterr().err.splitlines()
    assert len(printed) == warnings
    assert all(line.startswith(f"{parser.prog}: warning: deprecated: --") for line in printed)


def test_a_registration_missing_its_image_folder_is_not_taken_for_a_name(capsys):
    parser = load_tool("visualize_assignment").build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--config-file", "c.yaml", "--dataset", "d", "d.json"])
    assert "--dataset: expected 3 arguments" in capsys.readouterr().err


TOOLS_WITH_PARSERS = sorted(path.stem for path in (REPO / "tools").glob("*.py")
                            if "def build_parser(" in path.read_text())


@pytest.mark.parametrize("name", TOOLS_WITH_PARSERS)
def test_each_tools_help_describes_it_in_full(name):
    # the description is the docstring's first paragraph, not its first line (which
    # ended mid-sentence in --help)
    spec = importlib.util.spec_from_file_location(f"lada_tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # predict's dataclass needs its module registered
    try:
        spec.loader.exec_module(module)
        description = module.build_parser().description
    finally:
        del sys.modules[spec.name]
    assert description == module.__doc__.split("\n\n")[0].strip()
    assert description.endswith("."), description


def test_marker_sizes_follow_soft_weights():
    import torch

    tool = load_tool("visualize_assignment")
    gt_index = np.array([0, -1, 1, 0])
    positive = gt_index >= 0
    assert tool.marker_sizes(positive, None, 10.0).tolist() == [10.0, 10.0, 10.0]
    assert tool.point_weights(MatchResult(gt_index=torch.from_numpy(gt_index)[None]), 4) is None
    # pairs (image, point, gt): point 0 in two bags (0.5 and 0.4), point 2 alone (1.0),
    # point 3 (0.25); image 1's pair is not drawn
    soft = MatchResult(
        gt_index=torch.from_numpy(np.stack([gt_index, gt_index])),
        soft=PairWeights(
            pair_index=torch.tensor([[0, 0, 0], [0, 0, 1], [0, 2, 1], [0, 3, 0], [1, 1, 0]]),
            pair_weight=torch.tensor([0.5, 0.4, 1.0, 0.25, 3.0]),
            neg_weight=torch.ones(2, 4, 1),
            pos_normalizer=torch.tensor(2.0),
            neg_normalizer=torch.tensor(1.0),
        ),
    )
    assert tool.point_weights(soft, 4).tolist() == [0.5, 0.0, 1.0, 0.25]
    sizes = tool.marker_sizes(positive, tool.point_weights(soft, 4), 10.0)
    assert sizes.tolist() == [10.0, 20.0, 5.0]  # the largest weight (1.0) gets 2 x 10


def test_plot_assignment_stats(tmp_path):
    run = tmp_path / "run_a"
    run.mkdir()
    lines = [{"iteration": i, "assign/pos_per_gt_mean": 4.0 + i / 10, "assign/pos_per_gt_min": 1.0,
              "assign/pos_per_gt_max": 9.0, "assign/pos_per_image": 20.0,
              "assign/gts_without_pos": 1.0, "assign/gts_without_pos_share": 0.05,
              "assign/pos_share_level0": 0.8,
              "assign/pos_share_level1": 0.2, "loss_cls": 0.5} for i in range(19, 200, 20)]
    lines.append({"bbox/AP": 10.0})  # the evaluation line at the end of a run
    (run / "metrics.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    tool = load_tool("plot_assignment_stats")
    stats = tool.read_assignment_stats(run)
    assert stats["iteration"].tolist() == list(range(19, 200, 20))
    assert stats["assign/pos_per_gt_mean"][0] == pytest.approx(5.9)
    assert tool.untrained_share(stats).tolist() == [0.05] * 10
    output = tool.main([str(run), str(run / "metrics.json"), "--labels", "a", "b",
                        "--output", str(tmp_path / "stats.png")])
    assert_png(output)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.json").write_text(json.dumps({"iteration": 1, "loss": 1.0}))
    with pytest.raises(SystemExit, match="no assign"):
        tool.read_assignment_stats(tmp_path / "empty")


def test_assignment_diagnostics_counts_positives_outside_their_gt():
    from benchmarks import assignment_diagnostics as diagnostics

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    points = torch.tensor([[5.0, 5.0], [15.0, 5.0], [25.0, 5.0], [40.0, 5.0]])
    pred = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 10.0],
                          [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 1.0, 1.0]]])
    inputs = SimpleNamespace(gt_boxes=[boxes], points=points, pred_boxes=pred)
    # GT 0: the point inside it (IoU 1) and the one at x = 15, outside it (IoU 0.5);
    # GT 1: the point at x = 40, outside it (IoU 0); the point at x = 25 is background.
    per_gt = diagnostics.positives_per_gt(inputs, torch.tensor([[0, 0, -1, 1]]))
    assert per_gt["count"].tolist() == [2.0, 1.0]
    assert per_gt["outside"].tolist() == [1.0, 1.0]
    assert per_gt["iou"].tolist() == pytest.approx([0.75, 0.0])


def test_visualize_assignment_sizes_as_training_under_the_recipe(tmp_path):
    """own_data.yaml on 320-px images with 40-px objects: the visualiser's config and
    picture have training's size (the recipe's 320 x 32 / 40 = 256 px, not the quick
    configs' 128), class count (2) and anchors (3.6 strides), as train_net's setup."""
    from lada.engine import save_run_config
    from lada.engine.setup import build_argument_parser, setup_cfg

    json_file, images = write_coco(tmp_path / "data", [[(1, [10, 10, 40, 40]), (2, [100, 120, 40, 40])]] * 3,
                                   size=320)
    data = ["DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "('own_vis',)",
            "DATASETS.TEST", "('own_vis',)"]
    train = setup_cfg(build_argument_parser().parse_args([
        "--config-file", str(REPO / "configs/quick/own_data.yaml"),
        "--dataset", "own_vis", str(json_file), str(images), *data, "OUTPUT_DIR", str(tmp_path / "run")]))
    tool = load_tool("visualize_assignment")
    output = tmp_path / "assignment.png"
    argv = ["--config-file", str(REPO / "configs/quick/own_data.yaml"), "--dataset", "own_vis",
            str(json_file), str(images), "--matchers", "lada", "paa", "--output", str(output), *data]
    shown = tool.setup(tool.build_parser().parse_args(argv))
    keys = ("INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "MODEL.FCOS.NUM_CLASSES",
            "MODEL.MATCHER.PAA.ANCHOR_SCALE")
    assert [value_of(shown, k) for k in keys] == [value_of(train, k) for k in keys] == [256, 256, 2, 3.6]
    assert tool.load_example(shown, "own_vis", 0)["image"].shape[1:] == (256, 256)
    assert_png(tool.main(argv))
    # a run's saved config gives the same sizes (every key in it is kept)
    save_run_config(train)
    saved = tool.setup(tool.build_parser().parse_args(["--config-file", str(tmp_path / "run/config.yaml"),
                                        "--dataset", "own_vis", str(json_file), str(images)]))
    assert [value_of(saved, k) for k in keys] == [256, 256, 2, 3.6]


def test_visualize_assignment_keeps_a_saved_run_config_as_trained(tmp_path):
    """A run's saved config.yaml (RECIPE.APPLIED) gives the visualiser the sizes, class
    count and anchors it holds, without the recipe reading the training data again (here
    removed, so reading it would fail)."""
    from lada.engine import build_cfg, save_run_config

    json_file, images = write_coco(tmp_path / "data", [[(1, [10, 10, 40, 40]), (2, [100, 120, 40, 40])]] * 3,
                                   size=320)
    trained, recipe = build_cfg(str(REPO / "configs/quick/own_data.yaml"), [
        "DATASETS.REGISTER_COCO", "[]", "DATASETS.TRAIN", "('own_vis_saved',)",
        "DATASETS.TEST", "('own_vis_saved',)", "OUTPUT_DIR", str(tmp_path / "run")],
        [["own_vis_saved", str(json_file), str(images)]])
    assert recipe is not None
    saved = save_run_config(trained)
    json_file.unlink()
    tool = load_tool("visualize_assignment")
    shown = tool.setup(tool.build_parser().parse_args(["--config-file", str(saved)]))
    keys = ("INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "MODEL.FCOS.NUM_CLASSES",
            "MODEL.MATCHER.PAA.ANCHOR_SCALE")
    assert [value_of(shown, k) for k in keys] == [256, 256, 2, 3.6]  # 320 x 32 / 40 px


def value_of(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg
