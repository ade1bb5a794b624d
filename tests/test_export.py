"""Export round trips (lada.export, tools/export_model.py, tools/onnx_inference.py): the
ExportedProgram, onnxruntime and AOTInductor give the eager model's detections, within
lada.export.PARITY_TOLERANCE, on images of other sizes than the one traced and on a
batch of two; matching and losses stay out of the export.

The models are random but spread (seeded noise on every parameter), so that their scores
are distinct: at initialisation every point scores the prior and ties would make the
comparison depend on float rounding rather than on the graph. The AOTInductor round trip
compiles C++ for minutes: it runs with LADA_SLOW_TESTS=1 (docs/tests.md)."""
import copy
import json
import logging
import os
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from coco_files import write_coco
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from PIL import Image
from torch.export import Dim

from lada import export
from lada.config import add_lada_config
from lada.modeling.box_refine import BoxRefinement
from lada.modeling.rfa import DeformableConv3x3

# Neither the traced size (export.TRACE_SIZE) nor multiples of 32. At 72 x 100 every
# level has fewer (point, class) pairs than TOPK_CANDIDATES_TEST (1000), at 130 x 90 P3
# has more: the traced top-k, where P3 and P4 have more, must follow both ways.
CHECK_SIZES = [(72, 100), (130, 90)]
BATCH_SIZE = (64, 96)
# Models exported for real, besides lada (by the tool, to .pt2 and ONNX); every other
# quick model traces to one of their graphs or is exported itself
# (test_every_quick_model_exports).
EXPORTED = ["dw", "fcos", "aps"]
ONNX_EXPORTED = ["dw", "aps"]  # box refinement (GridSample), RFA (DeformConv)
SLOW = os.environ.get("LADA_SLOW_TESTS") == "1"


def quick_cfg(name, *opts):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(REPO / f"configs/quick/{name}.yaml"))
    cfg.DATASETS.REGISTER_COCO = []
    # tens of detections; an NMS threshold that no IoU of two boxes with integer corners
    # hits exactly (the random models' ReLU-clamped boxes have some): at the threshold,
    # float rounding decides, and onnxruntime's NMS rounds otherwise than torchvision's
    cfg.merge_from_list(["MODEL.FCOS.SCORE_THRESH_TEST", 0.03, "MODEL.FCOS.NMS_THRESH_TEST", 0.6037, *opts])
    return cfg


def spread_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def images(size, seed, count=1, channels_last=False):
    generator = torch.Generator().manual_seed(seed)
    if channels_last:  # a transposed view, as an image read (H, W, 3) then permuted
        return torch.randint(0, 256, (count, *size, 3), generator=generator).float().permute(0, 3, 1, 2)
    return torch.randint(0, 256, (count, 3, *size), generator=generator).float()


def assert_same_detections(model, run, batch):
    expected = export.eager_detections(model, batch)
    actual = run(batch)
    counts = torch.bincount(expected[3], minlength=len(batch))
    assert (counts > 0).all(), "an image without detection: the comparison would be vacuous"
    assert torch.equal(actual[3].long(), expected[3])  # as many per image, grouped by image
    assert torch.equal(actual[2].long(), expected[2])
    torch.testing.assert_close(actual[0], expected[0], rtol=0, atol=export.PARITY_TOLERANCE["boxes"])
    torch.testing.assert_close(actual[1], expected[1], rtol=0, atol=export.PARITY_TOLERANCE["scores"])


def assert_round_trip(model, run):
    for size, channels_last in zip(CHECK_SIZES, [False, True]):
        assert_same_detections(model, run, images(size, seed=sum(size), channels_last=channels_last))
    assert_same_detections(model, run, images(BATCH_SIZE, seed=7, count=2))


# The class names and dataset category ids of the tool_export model's test dataset:
# category ids that are not the class indexes + 1, as a COCO json may have.
CLASS_NAMES = ["bar", "plate", "ring", "ell", "stroke"]
CATEGORY_IDS = [3, 5, 8, 13, 21]


@pytest.fixture(scope="module")
def tool_export(tmp_path_factory):
    """tools/export_model.py on the lada quick model from a saved config and weights, to
    the default format and ONNX: (model, output folder, description, the warnings). The
    config's test dataset (registered by the config, as a run's) names the classes."""
    from test_scripts import load_tool

    folder = tmp_path_factory.mktemp("tool")
    cfg = quick_cfg("lada")
    json_file, image_root = write_coco(folder / "data", [[(3, [4, 4, 20, 20])]],
                                       categories=CLASS_NAMES, category_ids=CATEGORY_IDS)
    cfg.DATASETS.REGISTER_COCO = [["export_classes_val", str(json_file), str(image_root)]]
    cfg.DATASETS.TEST = ("export_classes_val",)
    config_file = folder / "config.yaml"
    config_file.write_text(cfg.dump())  # as OUTPUT_DIR/config.yaml of a run
    model = spread_model(cfg)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(96, 128), (80, 100)]):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    tool = load_tool("export_model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        description = tool.main([
            "--config-file", str(config_file), "--format", "exported", "onnx",
            "--input", str(folder / "*.png"), "--output", str(folder / "export"),
            "MODEL.WEIGHTS", str(folder / "model.pth"),
        ])
    return model, folder, description, caught


@pytest.fixture(scope="module")
def saved_program(tool_export):
    """The tool's model.pt2 loaded: (model, module)."""
    model, folder, _, _ = tool_export
    return model, torch.export.load(str(folder / "export" / "model.pt2")).module()


@pytest.fixture(scope="module", params=EXPORTED)
def program(request):
    """(name, model, ExportedProgram) of a quick config."""
    model = spread_model(quick_cfg(request.param))
    return request.param, model, export.export_program(model)


def test_the_export_tool_warns_of_no_deprecation(tool_export):
    _, _, _, caught = tool_export
    deprecations = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not deprecations, [f"{w.filename}:{w.lineno}: {w.message}" for w in deprecations]


def test_export_tool_checks_each_input_and_describes_the_graph(tool_export):
    _, folder, description, _ = tool_export
    written = json.loads((folder / "export" / "export.json").read_text())
    assert written["checks"] == description["checks"]
    for checks in written["checks"].values():
        # resized as at test time (the quick configs' 168 px at most): 96 x 128 -> 126 x 168,
        # 80 x 100 -> 134.4 x 168, rounded
        assert [(c["height"], c["width"]) for c in checks] == [(126, 168), (134, 168)]
        assert all(c["ok"] == 1.0 and c["count"] > 0 for c in checks)
    assert written["files"] == {"exported": "model.pt2", "onnx": "model.onnx"}
    metadata = {p.key: p.value for p in onnx.load(str(folder / "export" / "model.onnx")).metadata_props}
    assert json.loads(metadata["onnx_opset"]) == export.ONNX_OPSET
    assert json.loads(metadata["input"])["channels"] == "BGR"
    # the class names and the dataset's category id of each class index, in both
    for described in (written, {key: json.loads(value) for key, value in metadata.items()}):
        assert described["thing_classes"] == CLASS_NAMES
        assert described["category_ids"] == CATEGORY_IDS


def test_exporting_a_run_config_needs_the_trained_weights_named(tmp_path):
    # a run's config.yaml holds the weights the run started from: exporting them is
    # refused, naming the run's final model, as --eval-only does
    from test_scripts import load_tool

    cfg = quick_cfg("lada", "OUTPUT_DIR", str(tmp_path), "MODEL.WEIGHTS", "init.pth")
    (tmp_path / "config.yaml").write_text(cfg.dump())
    (tmp_path / "model_final.pth").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        load_tool("export_model").main(["--config-file", str(tmp_path / "config.yaml"),
                                        "--output", str(tmp_path / "export")])
    assert str(stop.value) == (
        "export_model.py: MODEL.WEIGHTS init.pth is the run config's: what the run started "
        f"from, not what it trained; add `MODEL.WEIGHTS {tmp_path / 'model_final.pth'}` "
        "(this run's final model) to the command line")
    assert not (tmp_path / "export").exists()


def test_an_export_without_class_names_says_so(tmp_path, caplog):
    # no dataset of the config loads: null names (in export.json and the ONNX metadata)
    # and a warning; the ONNX reader's side: test_onnx_inference_reads_files_without_names
    from test_scripts import load_tool

    tool = load_tool("export_model")
    cfg = quick_cfg("lada", "DATASETS.TEST", "('no_such_dataset',)", "DATASETS.TRAIN", "()")
    args = tool.build_parser().parse_args(["--config-file", "x.yaml", "--format", "onnx",
                                           "--output", str(tmp_path)])
    with caplog.at_level(logging.WARNING, logger="lada"):
        description = tool.describe(cfg, args)
    assert description["thing_classes"] is None and description["category_ids"] is None
    assert "no class names: export.json and the ONNX metadata hold thing_classes null" in caplog.text


def test_saved_program_round_trips(saved_program):
    model, module = saved_program
    assert_round_trip(model, module)


def test_onnx_round_trips_lada(tool_export):
    model, folder, _, _ = tool_export
    path = str(folder / "export" / "model.onnx")
    assert {op.version for op in onnx.load(path).opset_import if op.domain == ""} == {export.ONNX_OPSET}
    assert_round_trip(model, export.load(path, num_threads=1))


def test_exported_program_gives_the_eager_detections(program):
    _, model, exported = program
    module = exported.module()
    # contiguous, as lada.export.load passes it: the transposed input would run the
    # convolutions in another memory format, rounded otherwise than eager's padded copy
    assert_round_trip(model, lambda batch: module(batch.contiguous()))


@pytest.mark.parametrize("layer", ["rfa", "box_refine"])
def test_rfa_and_box_refinement_convert_to_onnx(layer, tmp_path):
    # the two layers of ops of their own (deform_conv2d, grid_sample), exported with a
    # dynamic size and run by onnxruntime at two others (the whole dw and aps models:
    # test_onnx_round_trips_box_refinement_and_rfa, slow)
    import onnxruntime

    torch.manual_seed(0)
    if layer == "rfa":
        module, op = DeformableConv3x3(8, 8), "DeformConv"
        with torch.no_grad():
            module.offset.weight.normal_(std=0.3)  # offsets of a few pixels: the conv deforms

        def inputs(height, width):
            return (torch.randn(1, 8, height, width),)
    else:
        module, op = BoxRefinement(8, anchor_offset=0.5), "GridSample"
        with torch.no_grad():
            module.offset.weight.normal_(std=0.3)

        def inputs(height, width):
            return torch.randn(1, 8, height, width), torch.rand(1, 4, height, width) * 3

    height, width = Dim("height", min=2), Dim("width", min=2)
    shapes = tuple({2: height, 3: width} for _ in inputs(5, 7))
    program = torch.export.export(module.eval(), inputs(9, 11), dynamic_shapes=shapes)
    torch.onnx.export(program, (), opset_version=export.ONNX_OPSET, dynamo=True).save(str(tmp_path / "layer.onnx"))
    assert op in {node.op_type for node in onnx.load(str(tmp_path / "layer.onnx")).graph.node}
    session = onnxruntime.InferenceSession(str(tmp_path / "layer.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for size in [(6, 13), (12, 5)]:
        arguments = inputs(*size)
        with torch.no_grad():
            expected = module(*arguments)
        (actual,) = session.run(None, {n: a.numpy() for n, a in zip(names, arguments)})
        torch.testing.assert_close(torch.from_numpy(actual), expected, rtol=0, atol=1e-4)


@pytest.mark.skipif(not SLOW, reason="two ONNX conversions of a minute: set LADA_SLOW_TESTS=1")
def test_onnx_round_trips_box_refinement_and_rfa(program, tmp_path):
    name, model, exported = program
    if name not in ONNX_EXPORTED:
        pytest.skip(f"{name}: ONNX from the same graph as lada's")
    export.save_onnx(exported, str(tmp_path / "model.onnx"))
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert {"dw": "GridSample", "aps": "DeformConv"}[name] in ops
    assert_round_trip(model, export.load(str(tmp_path / "model.onnx")))


def test_matching_and_losses_are_not_exported(program):
    _, model, exported = program
    names = set(exported.state_dict) | set(exported.constants)
    assert names and not [n for n in names if n.startswith(("loss", "matcher"))]
    assert model.loss is not None and model.matcher is not None


def plain(value):
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return isinstance(value, (bool, int, float, str, type(None)))


def graph_signature(name):
    """What the traced graph of config ``name``'s model depends on: the modules and
    every plain attribute of the export graph and its modules, and the model's test-time
    settings (its test scores are called)."""
    model = build_model(quick_cfg(name)).eval()
    graph = export.DetectionGraph(model)
    test_keys = sorted((k, v) for k, v in vars(model).items() if k.startswith("test_"))  # the scores'
    return repr(graph), test_keys, [
        (module_name, sorted((k, v) for k, v in vars(module).items() if plain(v) and not k.startswith("_")))
        for module_name, module in graph.named_modules()
    ]


QUICK_CONFIGS = sorted(path.stem for path in (REPO / "configs/quick").glob("*.yaml")
                       if path.stem != "Base-Quick" and not path.stem.startswith("own_data_"))


@pytest.mark.parametrize("name", [n for n in QUICK_CONFIGS if n not in ["lada", *EXPORTED]])
def test_every_quick_model_exports(name):
    # the export graph reads the head, backbone and test-time keys, never the matcher: a
    # quick model whose graph is one of those exported above (ciou_atss's is lada's:
    # BOX_BIAS_INIT is a starting value) is run as that graph; a new graph (another
    # auxiliary branch: none, objectness) is exported here
    # a threshold below every prior score: simota's starts near 1e-4 (class 0.01 x objectness 0.01)
    model = spread_model(quick_cfg(name, "MODEL.FCOS.SCORE_THRESH_TEST", 1e-5))
    signatures = [graph_signature(n) for n in ["lada", *EXPORTED]]
    if graph_signature(name) in signatures:
        run = export.DetectionGraph(model)
    else:
        run = export.export_program(model).module()
    with torch.no_grad():
        assert_same_detections(model, run, images(CHECK_SIZES[0], seed=3))


def test_the_graph_keeps_each_images_best_detections_up_to_the_limit():
    # the per-image limit of a batch (TEST.DETECTIONS_PER_IMAGE) from a cumulative count
    batch = images(BATCH_SIZE, seed=7, count=2)
    model = spread_model(quick_cfg("lada"))
    assert (torch.bincount(export.eager_detections(model, batch)[3]) > 5).all()  # more than the limit
    model = spread_model(quick_cfg("lada", "TEST.DETECTIONS_PER_IMAGE", 5))
    with torch.no_grad():
        assert_same_detections(model, export.DetectionGraph(model), batch)


def test_an_image_without_detections_gives_empty_outputs(saved_program, tool_export, tmp_path):
    _, module = saved_program
    _, folder, _, _ = tool_export
    onnx_model = onnx.load(str(folder / "export" / "model.onnx"))
    (bias,) = [t for t in onnx_model.graph.initializer if t.name.endswith("cls_score.bias")]
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(5, -50.0, dtype=np.float32), bias.name))
    onnx.save(onnx_model, str(tmp_path / "silent.onnx"))
    silent = copy.deepcopy(module)
    with torch.no_grad():
        silent.head.cls_score.bias.fill_(-50.0)
    for run in (silent, export.load(str(tmp_path / "silent.onnx"))):
        boxes, scores, classes, index = run(images((80, 112), seed=3, count=2))
        assert boxes.shape == (0, 4) and scores.shape == classes.shape == index.shape == (0,)


def test_anchors_are_the_models():
    model = build_model(quick_cfg("lada")).eval()
    graph = export.DetectionGraph(model)
    sizes = [(9, 13), (5, 7), (3, 4), (2, 2), (1, 1)]
    expected = model.anchor_generator([torch.zeros(1, 1, h, w) for h, w in sizes])
    for level, ((height, width), boxes) in enumerate(zip(sizes, expected)):
        points = torch.randperm(height * width)
        mine = graph.anchors_at(level, points, torch.tensor(width))
        assert torch.equal(mine, boxes.tensor[points])


def test_exporting_patches_nothing_for_good():
    # torchvision's fake NMS kernel is replaced while exporting only
    entry = torch._library.simple_registry.singleton.find("torchvision::nms").fake_impl
    torchvision_kernel = entry.kernel
    with export.exporting():
        assert entry.kernel is not torchvision_kernel
        assert torch.fx.experimental._config.backed_size_oblivious
    assert entry.kernel is torchvision_kernel and not torch.fx.experimental._config.backed_size_oblivious


def test_export_errors_name_the_key_or_the_tool(monkeypatch):
    with pytest.raises(export.ExportError, match="--format must be one of"):
        export.check_exportable(quick_cfg("lada"), "torchscript")
    with pytest.raises(export.ExportError, match="MODEL.META_ARCHITECTURE"):
        export.check_exportable(quick_cfg("lada", "MODEL.META_ARCHITECTURE", "FCOS"), "exported")
    real_find_spec = export.checks.importlib.util.find_spec
    monkeypatch.setattr(export.checks.importlib.util, "find_spec",
                        lambda name: None if name == "onnxscript" else real_find_spec(name))
    with pytest.raises(export.ExportError, match="onnxscript: pip install -r requirements/export.txt"):
        export.check_exportable(quick_cfg("lada"), "onnx")
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, "no-such-compiler-here"))
    with pytest.raises(export.ExportError, match="--format aoti compiles C\\+\\+ with 'no-such-compiler-here'"):
        export.check_exportable(quick_cfg("lada"), "aoti")


def test_onnx_inference_example_gives_predicts_detections(tool_export, tmp_path, capsys):
    # the example prepares the image itself (EXIF, channels, resize) and scales the
    # boxes back: it must give the eager model's detections in the image's own pixels,
    # each with its class index, name and dataset category id (printed and written)
    from test_scripts import load_tool

    from detectron2.data import detection_utils
    from detectron2.data import transforms as T

    model, folder, _, _ = tool_export
    rng = np.random.default_rng(1)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (150, 230, 3), dtype=np.uint8)).save(path)
    (result,) = load_tool("onnx_inference").main([str(folder / "export" / "model.onnx"), str(path),
                                                  "--output", str(tmp_path / "detections.json")])
    assert json.loads(capsys.readouterr().out) == result
    assert json.loads((tmp_path / "detections.json").read_text()) == [result]
    original = detection_utils.read_image(str(path), format="BGR")
    cfg = quick_cfg("lada")  # the tool_export model's
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST).get_transform(original)
    image = torch.as_tensor(resize.apply_image(original).astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        expected = model([{"image": image, "height": 150, "width": 230}])[0]["instances"]
    detections = result["detections"]
    assert len(detections) == len(expected) > 0
    # each eager detection once among the example's: same class, box within 0.01 px (the
    # json's rounding), score within 1e-4 (scores closer than that may come in either order)
    unmatched = list(detections)
    for box, score, label in zip(expected.pred_boxes.tensor.tolist(), expected.scores.tolist(),
                                 expected.pred_classes.tolist()):
        found = next(d for d in unmatched if d["class"] == label and abs(d["score"] - score) <= 1e-4
                     and np.allclose(d["box"], box, rtol=0, atol=0.01))
        unmatched.remove(found)
        assert found["name"] == CLASS_NAMES[label] and found["category_id"] == CATEGORY_IDS[label]


def test_onnx_inference_reads_files_without_names(tool_export, tmp_path):
    # a model.onnx exported before the class names were written (or with none known):
    # class indices alone
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    model = onnx.load(str(folder / "export" / "model.onnx"))
    kept = [p for p in model.metadata_props if p.key not in ("thing_classes", "category_ids")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (100, 140, 3), dtype=np.uint8)).save(image)
    (result,) = load_tool("onnx_inference").main([str(tmp_path / "old.onnx"), str(image)])
    assert result["detections"] and all(set(d) == {"box", "score", "class"} for d in result["detections"])


@pytest.mark.skipif(not SLOW, reason="compiles C++ for minutes: set LADA_SLOW_TESTS=1")
def test_aoti_round_trips(tool_export, tmp_path):
    model, _, _, _ = tool_export
    (path,) = export.export_to(model, ["aoti"], str(tmp_path))
    assert_round_trip(model, export.load(path))


# Formats without a CUDA runtime in the project, with the reason; every other format of
# export.FORMATS is exported from a CUDA model and loaded by lada.export.load.
NO_CUDA_RUNTIME = {"onnx": "the project's onnxruntime is the CPU build (requirements/export.txt)"}
CUDA_MODELS = ["lada", "dw", "aps"]  # dw: grid_sample; aps: RFA, torchvision's deform_conv2d kernel


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("name", CUDA_MODELS)
def test_export_on_cuda_gives_the_eager_cuda_detections(fmt, name, tmp_path):
    if fmt in NO_CUDA_RUNTIME:
        pytest.skip(NO_CUDA_RUNTIME[fmt])
    model = spread_model(quick_cfg(name, "MODEL.DEVICE", "cuda"))
    (path,) = export.export_to(model, [fmt], str(tmp_path))
    run = export.load(path)
    for size in CHECK_SIZES:
        assert_same_detections(model, run, images(size, seed=sum(size)).cuda())


# --- tools/onnx_inference.py --dataset: the ONNX file evaluated on a COCO json ---

EVAL_IMAGES = {7: "0.png", 12: "1.png"}  # the tool_export folder's images, ids of the json


def eager_instances(model, path):
    """The eager model's detections of the image at ``path`` in its own pixels, prepared
    as detectron2's DefaultPredictor does (tools/predict.py's and --eval-only's)."""
    from detectron2.data import detection_utils
    from detectron2.data import transforms as T

    original = detection_utils.read_image(str(path), format="BGR")
    cfg = quick_cfg("lada")  # the tool_export model's
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST).get_transform(original)
    image = torch.as_tensor(resize.apply_image(original).astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        return model([{"image": image, "height": original.shape[0], "width": original.shape[1]}])[0]["instances"]


@pytest.fixture(scope="module")
def onnx_evaluation(tool_export, tmp_path_factory):
    """tools/onnx_inference.py --dataset on a COCO json of the tool_export folder's two
    images whose GT boxes are the eager model's three best detections of each, moved by
    a pixel, and one box it misses, so that the AP is neither 0 nor 100 (the model is
    untrained). Categories listed in another order than their ids. Returns (json file,
    output folder, what main returned, what it printed, the eager detections by image id)."""
    import contextlib
    import io

    from test_scripts import load_tool

    model, folder, _, _ = tool_export
    root = tmp_path_factory.mktemp("onnx_eval")
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i, "name": n} for i, n in reversed(list(zip(CATEGORY_IDS, CLASS_NAMES)))]}
    eager = {}
    for image_id, name in EVAL_IMAGES.items():
        width, height = Image.open(folder / name).size
        coco["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        eager[image_id] = instances = eager_instances(model, folder / name)
        assert len(instances) > 3
        gt = [([x0 + 1, y0, x1 - x0, y1 - y0], CATEGORY_IDS[label]) for (x0, y0, x1, y1), label in
              zip(instances.pred_boxes.tensor[:3].tolist(), instances.pred_classes[:3].tolist())]
        for bbox, category_id in gt + [([2.0, 2.0, 12.0, 9.0], CATEGORY_IDS[1])]:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": category_id, "bbox": bbox,
                                        "area": bbox[2] * bbox[3], "iscrowd": 0})
    json_file = root / "val.json"
    json_file.write_text(json.dumps(coco))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        done = load_tool("onnx_inference").main([
            str(folder / "export" / "model.onnx"), "--dataset", "export_eval", str(json_file), str(folder),
            "--output", str(root / "out"), "--threads", "1"])
    return json_file, root / "out", done, printed.getvalue(), eager


def test_onnx_evaluation_writes_coco_results_and_metrics(onnx_evaluation):
    json_file, out, done, printed, eager = onnx_evaluation
    results = json.loads((out / "coco_instances_results.json").read_text())
    # every detection of every image of the json, with its id and the dataset's category ids
    assert len(results) == done["detections"] == sum(len(i) for i in eager.values())
    assert {r["image_id"] for r in results} == set(EVAL_IMAGES)
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    sizes = {i["id"]: (i["width"], i["height"]) for i in json.loads(json_file.read_text())["images"]}
    for result in results:  # [x, y, w, h] within the image's own pixels
        x, y, w, h = result["bbox"]
        width, height = sizes[result["image_id"]]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3
        assert 0 < result["score"] <= 1
    written = json.loads((out / "eval_results.json").read_text())
    assert written == done and written["datasets"] == {"export_eval": {"images": 2, "annotations": 8}}
    assert 0 < written["metrics"]["bbox/AP"] < 100
    metrics = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert set(written["metrics"]) == {f"bbox/{k}" for k in metrics} | {
        f"bbox/AP-{n}" for n in CLASS_NAMES} | {  # the project's slender-object bands, as --eval-only
        f"bbox/{k}@{band}" for k in metrics + [f"AP-{n}" for n in CLASS_NAMES] for band in ("ar<3", "ar>=3")}
    # pycocotools' standard table, then the one-line summary
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] =" in printed
    assert printed.splitlines()[-1].startswith(f"export_eval: bbox AP {written['metrics']['bbox/AP']:.2f} (AP50 ")


def test_onnx_evaluation_gives_the_eager_models_results_and_ap(onnx_evaluation):
    # the deployer's question: does the exported file score what the PyTorch model
    # scores? The eager model's detections (as --eval-only and tools/predict.py make
    # them) evaluated by train_net.py's evaluator give the ONNX evaluation's AP, slender
    # bands included, and each of its results is one of the ONNX file's within the
    # export's parity tolerance
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    from lada.compat import HAS_COMPILED_OPS
    from lada.evaluation import SlenderCOCOEvaluator

    json_file, out, done, _, eager = onnx_evaluation
    results = json.loads((out / "coco_instances_results.json").read_text())
    unmatched = list(results)
    for image_id, instances in eager.items():
        for (x0, y0, x1, y1), score, label in zip(instances.pred_boxes.tensor.tolist(),
                                                  instances.scores.tolist(), instances.pred_classes.tolist()):
            found = next(r for r in unmatched if r["image_id"] == image_id
                         and r["category_id"] == CATEGORY_IDS[label]
                         and abs(r["score"] - score) <= export.PARITY_TOLERANCE["scores"]
                         and np.allclose(r["bbox"], [x0, y0, x1 - x0, y1 - y0], rtol=0,
                                         atol=2 * export.PARITY_TOLERANCE["boxes"]))  # x1 - x0: two
            unmatched.remove(found)
    assert not unmatched
    name = "onnx_eval_eager"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, str(json_file), str(json_file.parent))
    DatasetCatalog.get(name)  # sets the dataset's id mapping the evaluator reads
    # as train_net.py's evaluator: detectron2's C++ COCOeval where it is built
    evaluator = SlenderCOCOEvaluator(name, tasks=("bbox",), distributed=False,
                                     output_dir=str(out / "eager"), use_fast_impl=HAS_COMPILED_OPS)
    evaluator.reset()
    for image_id, instances in eager.items():
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    # NaN (no GT of a size range or class) is null in eval_results.json, as train_net.py's
    expected = {f"bbox/{k}": None if np.isnan(v) else v for k, v in evaluator.evaluate()["bbox"].items()}
    assert set(expected) == set(done["metrics"]) and expected["bbox/AP"] > 0
    for key, value in expected.items():
        assert done["metrics"][key] == (value if value is None else pytest.approx(value, abs=1e-6)), key


def test_onnx_evaluation_runs_without_pycocotools(tool_export, onnx_evaluation, tmp_path, monkeypatch, capsys):
    # pycocotools is optional: without it the results are written, with a word on the AP
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    json_file, out, _, _, _ = onnx_evaluation
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools: ImportError
    done = load_tool("onnx_inference").main([
        str(folder / "export" / "model.onnx"), "--dataset", "export_eval", str(json_file), str(folder),
        "--output", str(tmp_path), "--threads", "1"])
    assert done["metrics"] is None and not (tmp_path / "eval_results.json").exists()
    assert (tmp_path / "coco_instances_results.json").read_text() == (out / "coco_instances_results.json").read_text()
    assert "no AP: pycocotools is not installed" in capsys.readouterr().out


def test_onnx_evaluation_bands_follow_their_edges_and_the_projects_presence(
        tool_export, onnx_evaluation, tmp_path, monkeypatch, capsys):
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    command = [str(folder / "export" / "model.onnx"), "--dataset", "export_eval",
               str(onnx_evaluation[0]), str(folder), "--threads", "1"]
    tool = load_tool("onnx_inference")
    two = tool.main(command + ["--output", str(tmp_path / "two"), "--aspect-ratio-edges", "2", "5"])
    assert {k for k in two["metrics"] if k.startswith("bbox/AP@")} == {
        "bbox/AP@ar<2", "bbox/AP@2<=ar<5", "bbox/AP@ar>=5"}
    off = tool.main(command + ["--output", str(tmp_path / "off"), "--aspect-ratio-edges"])
    assert not any("@" in k for k in off["metrics"]) and off["metrics"]["bbox/AP"] == two["metrics"]["bbox/AP"]
    with pytest.raises(ValueError, match="--aspect-ratio-edges"):  # before any image is run
        tool.main(command + ["--output", str(tmp_path / "bad"), "--aspect-ratio-edges", "0.5"])
    assert not (tmp_path / "bad").exists()
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "lada.evaluation.slender", None)  # a deployment environment
    alone = tool.main(command + ["--output", str(tmp_path / "alone")])
    assert alone["metrics"] == off["metrics"]
    assert "no slender-object AP: the lada package is not importable" in capsys.readouterr().out


def test_onnx_evaluation_refuses_a_file_without_category_ids(tool_export, onnx_evaluation, tmp_path):
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    json_file = onnx_evaluation[0]
    model = onnx.load(str(folder / "export" / "model.onnx"))
    kept = [p for p in model.metadata_props if p.key != "category_ids"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    with pytest.raises(ValueError, match="^the ONNX file's metadata has no category_ids"):
        load_tool("onnx_inference").main([str(tmp_path / "old.onnx"), "--dataset", "export_eval",
                                          str(json_file), str(folder), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_onnx_evaluation_without_detections_says_the_ap_is_undefined(
        tool_export, onnx_evaluation, tmp_path, capsys):
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    done = load_tool("onnx_inference").main([
        str(folder / "export" / "model.onnx"), "--dataset", "export_eval", str(onnx_evaluation[0]),
        str(folder), "--output", str(tmp_path / "out"), "--threshold", "2"])  # scores are < 1
    assert done["detections"] == 0 and done["metrics"]["bbox/AP"] is None
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "export_eval: bbox AP undefined (AP50 undefined, AP75 undefined) of ")


@pytest.mark.parametrize("broken, message", [
    ("{", "is not valid JSON: Expecting property name enclosed in double quotes"),
    ("[]", "is not a COCO json"),
    ('{"categories": [{"name": "bar"}], "images": []}',
     ": 1 of its categories lack id or name (the first: categories[0])"),
    ('{"categories": [], "images": [{"id": 1}, {"id": 2, "file_name": "a.png"}]}',
     ": 1 of its images lack id or file_name (the first: images[0])"),
])
def test_onnx_evaluation_refuses_a_malformed_json_in_one_message(
        broken, message, tool_export, tmp_path):
    from test_scripts import load_tool

    _, folder, _, _ = tool_export
    (tmp_path / "val.json").write_text(broken)
    with pytest.raises(ValueError) as refusal:
        load_tool("onnx_inference").main([str(folder / "export" / "model.onnx"), "--dataset", "mine",
                                          str(tmp_path / "val.json"), str(folder), "--output",
                                          str(tmp_path / "out")])
    assert str(refusal.value).startswith(str(tmp_path / "val.json")) and message in str(refusal.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change", ["ids", "names"])
def test_onnx_evaluation_refuses_other_categories_in_one_line(change, tool_export, onnx_evaluation, tmp_path):
    # checked before any image is run; the command stops with one line naming both sides
    import subprocess

    _, folder, _, _ = tool_export
    coco = json.loads(onnx_evaluation[0].read_text())
    if change == "ids":
        coco["categories"] = [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES, start=1)]
    else:
        coco["categories"][0]["name"] = "other"
    (tmp_path / "val.json").write_text(json.dumps(coco))
    stop = subprocess.run(
        [sys.executable, str(REPO / "tools" / "onnx_inference.py"), str(folder / "export" / "model.onnx"),
         "--dataset", "mine", str(tmp_path / "val.json"), str(folder), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert stop.returncode == 1 and stop.stdout == ""
    (line,) = stop.stderr.splitlines()
    json_ids = [1, 2, 3, 4, 5] if change == "ids" else CATEGORY_IDS
    json_names = ["bar", "plate", "ring", "ell", "other" if change == "names" else "stroke"]
    assert line == (
        f"onnx_inference.py: the categories of {tmp_path / 'val.json'} (ids {json_ids}, names "
        f"{json_names}) are not the model's (ONNX metadata: category_ids {CATEGORY_IDS}, "
        f"thing_classes {CLASS_NAMES}): evaluate on a dataset of the classes the model was trained on")
    assert not (tmp_path / "out").exists()
