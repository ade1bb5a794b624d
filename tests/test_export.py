"""Export round trips (lada.export, tools/export_model.py): TorchScript and ONNX
(onnxruntime) give the eager model's detections on images of other sizes than the one
traced, within lada.export.PARITY_TOLERANCE; matching and losses stay out of the export.

The models are random but spread (seeded noise on every parameter), so that their scores
are distinct: at initialisation every point scores the prior and ties would make the
comparison depend on float rounding rather than on the graph."""
import csv
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from PIL import Image

from lada import compat, export
from lada.config import add_lada_config

SAMPLE_SIZE = (96, 128)
CHECK_SIZES = [(72, 100), (130, 90)]  # neither the sample's, nor multiples of 32
QUICK_MODELS = ["lada", "dw", "ciou_atss"]


def quick_cfg(name, *opts):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(REPO / f"configs/quick/{name}.yaml"))
    cfg.DATASETS.REGISTER_COCO = []
    cfg.merge_from_list(["MODEL.FCOS.SCORE_THRESH_TEST", 0.05, *opts])
    return cfg


def spread_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def image(size, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, *size), generator=generator).float()


def assert_same_detections(model, run, size, seed, device="cpu"):
    test_image = image(size, seed).to(device)
    with torch.no_grad():
        expected = export.detections(model, test_image)
    actual = run(test_image)
    assert len(expected[1]) > 0, "no detection: the comparison would be vacuous"
    assert len(actual[1]) == len(expected[1])
    assert torch.equal(actual[2].long(), expected[2])
    torch.testing.assert_close(actual[0], expected[0], rtol=0, atol=export.PARITY_TOLERANCE["boxes"])
    torch.testing.assert_close(actual[1], expected[1], rtol=0, atol=export.PARITY_TOLERANCE["scores"])


@pytest.fixture(scope="module", params=QUICK_MODELS)
def exported(request, tmp_path_factory):
    """(model, TorchScript runner, onnxruntime runner) of a quick config."""
    model = spread_model(quick_cfg(request.param))
    sample = image(SAMPLE_SIZE, seed=100)
    folder = tmp_path_factory.mktemp(request.param)
    export.trace(model, sample).save(str(folder / "model.ts"))
    export.export_onnx(model, sample, str(folder / "model.onnx"))
    return model, export.load_exported(str(folder / "model.ts")), export.load_exported(str(folder / "model.onnx"))


@pytest.mark.parametrize("size", CHECK_SIZES)
def test_torchscript_gives_the_eager_detections(exported, size):
    model, torchscript, _ = exported
    assert_same_detections(model, torchscript, size, seed=sum(size))


@pytest.mark.parametrize("size", CHECK_SIZES)
def test_onnx_gives_the_eager_detections(exported, size):
    model, _, onnx_model = exported
    assert_same_detections(model, onnx_model, size, seed=sum(size))


def test_top_k_is_a_graph_op_not_the_sample_count():
    # traced where each level has fewer candidates than TOPK_CANDIDATES_TEST (12), run
    # where it has more: the exported model must still keep 12 per level
    # ciou_atss: boxes start as 8-stride squares, so none is empty and postprocessing keeps all
    cfg = quick_cfg("ciou_atss", "MODEL.FCOS.SCORE_THRESH_TEST", 0.0, "MODEL.FCOS.TOPK_CANDIDATES_TEST", 12,
                    "MODEL.FCOS.NMS_THRESH_TEST", 1.0)
    model = spread_model(cfg)
    # p6 and p7 of a 32 x 32 image: 1 point x 5 classes < 12; of 256 x 384: 24 and 6 points
    torchscript = export.trace(model, image((32, 32), seed=1))
    large = image((256, 384), seed=2)
    with torch.no_grad():
        expected = export.detections(model, large)
        actual = torchscript(large)
    assert len(expected[1]) == 5 * 12  # 5 levels, 12 each, NMS keeps every box
    assert len(actual[1]) == len(expected[1])


def test_an_image_without_detections_gives_empty_outputs(tmp_path):
    model = spread_model(quick_cfg("lada"))
    sample = image(SAMPLE_SIZE, seed=100)
    torchscript = export.trace(model, sample)
    export.export_onnx(model, sample, str(tmp_path / "model.onnx"))
    onnx_model = onnx.load(str(tmp_path / "model.onnx"))
    (bias,) = [t for t in onnx_model.graph.initializer if t.name == "model.head.cls_score.bias"]
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(5, -50.0, dtype=np.float32), bias.name))
    onnx.save(onnx_model, str(tmp_path / "silent.onnx"))
    with torch.no_grad():
        torchscript.model.head.cls_score.bias.fill_(-50.0)
    for run in (torchscript, export.load_exported(str(tmp_path / "silent.onnx"))):
        boxes, scores, classes = run(image((80, 112), seed=3))
        assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


def test_matching_and_losses_are_not_exported(tmp_path):
    model = spread_model(quick_cfg("dw"))
    sample = image((64, 64), seed=4)
    torchscript = export.trace(model, sample)
    assert {name for name, _ in torchscript.model.named_children()} == {"backbone", "head", "anchor_generator"}
    export.export_onnx(model, sample, str(tmp_path / "model.onnx"))
    names = {t.name for t in onnx.load(str(tmp_path / "model.onnx")).graph.initializer}
    assert not [n for n in names if n.startswith(("model.loss", "model.matcher"))]
    assert model.loss is not None and model.matcher is not None  # restored after export


def test_rfa_exports_to_both_formats_from_opset_19(tmp_path):
    cfg = quick_cfg("lada", "MODEL.FCOS.RFA", True)
    with pytest.raises(export.ExportError, match="MODEL.FCOS.RFA"):
        export.check_exportable(cfg, "onnx", opset=17)
    export.check_exportable(cfg, "torchscript")
    model = spread_model(cfg)  # the noise makes the offsets non-zero: the conv deforms
    sample = image(SAMPLE_SIZE, seed=100)
    export.export_onnx(model, sample, str(tmp_path / "model.onnx"), opset=19)
    assert "DeformConv" in {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert_same_detections(model, export.trace(model, sample), CHECK_SIZES[0], seed=5)
    assert_same_detections(model, export.load_exported(str(tmp_path / "model.onnx")), CHECK_SIZES[0], seed=5)


def test_box_refinement_needs_opset_16():
    with pytest.raises(export.ExportError, match="MODEL.FCOS.BOX_REFINE"):
        export.check_exportable(quick_cfg("dw"), "onnx", opset=15)


def test_export_model_tool_with_a_saved_config(tmp_path):
    from test_scripts import load_tool

    cfg = quick_cfg("ciou_atss")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cfg.dump())  # as OUTPUT_DIR/config.yaml of a run
    weights = tmp_path / "model.pth"
    torch.save({"model": spread_model(cfg).state_dict()}, weights)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(96, 128), (80, 100)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{index}.png")
    description = load_tool("export_model").main([
        "--config-file", str(config_file), "--format", "onnx", "--input", str(tmp_path / "*.png"),
        "--output", str(tmp_path / "export"), "MODEL.WEIGHTS", str(weights),
        "INPUT.MIN_SIZE_TEST", "0",  # the images as they are: two sizes
    ])
    written = json.loads((tmp_path / "export" / "export.json").read_text())
    assert written["checks"] == description["checks"]
    assert [(c["height"], c["width"]) for c in written["checks"]] == [(96, 128), (80, 100)]
    assert all(c["ok"] == 1.0 and c["count"] > 0 for c in written["checks"])
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "export" / "model.onnx")).metadata_props}
    assert json.loads(metadata["opset"]) == export.DEFAULT_OPSET


def test_inference_benchmark_quick(tmp_path):
    from benchmarks import inference

    paths = inference.main(["--quick", "--output-dir", str(tmp_path)])
    with open(paths["inference.csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["runtime"] for row in rows] == list(inference.RUNTIMES)
    assert all(float(row["median_ms"]) > 0 and float(row["images_per_s"]) > 0 for row in rows)
    meta = json.loads(paths["inference.json"].read_text())
    assert meta["model_sizes"][inference.QUICK]["params_m"] > 0 and meta["load_before"]


def test_a_top_k_beyond_the_traced_nms_branch_is_refused():
    cfg = quick_cfg("lada", "MODEL.FCOS.TOPK_CANDIDATES_TEST", 8000)  # 5 levels x 8000
    with pytest.raises(export.ExportError, match="MODEL.FCOS.TOPK_CANDIDATES_TEST"):
        export.check_exportable(cfg, "torchscript")


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "aps"])
def test_every_other_matcher_exports_to_torchscript(name):
    model = spread_model(quick_cfg(name))
    torchscript = export.trace(model, image(SAMPLE_SIZE, seed=100))
    assert_same_detections(model, torchscript, CHECK_SIZES[1], seed=6)


def test_detectron2_export_imports_without_caffe2():
    import detectron2.export
    from detectron2.export import TracingAdapter  # noqa: F401  (fails on v0.6 without lada.compat)

    if isinstance(detectron2.export, compat._ExportWithoutCaffe2):
        with pytest.raises(ImportError, match="caffe2"):
            detectron2.export.Caffe2Tracer


def _load_torchscript(model, sample, folder):
    path = str(folder / "model.ts")
    export.trace(model, sample).save(path)
    return export.load_exported(path)


# How each format's exported model runs on CUDA: (model on CUDA, sample image on CUDA,
# folder) -> a function image -> detections. A format of export.FORMATS without an entry
# is reported as skipped with the reason given here (or as not written yet): add the
# entry when a format gains a CUDA runtime.
CUDA_RUNNERS = {"torchscript": _load_torchscript}
NO_CUDA_RUNTIME = {"onnx": "the project's onnxruntime is the CPU build (requirements/export.txt)"}
CUDA_MODELS = QUICK_MODELS + ["aps"]  # aps: RFA, torchvision's deform_conv2d CUDA kernel


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("name", CUDA_MODELS)
def test_export_on_cuda_gives_the_eager_cuda_detections(fmt, name, tmp_path):
    if fmt not in CUDA_RUNNERS:
        pytest.skip(NO_CUDA_RUNTIME.get(fmt, f"no CUDA runner written for format '{fmt}' in CUDA_RUNNERS"))
    model = spread_model(quick_cfg(name, "MODEL.DEVICE", "cuda"))
    run = CUDA_RUNNERS[fmt](model, image(SAMPLE_SIZE, seed=100).cuda(), tmp_path)
    for size in CHECK_SIZES:
        assert_same_detections(model, run, size, seed=sum(size), device="cuda")
