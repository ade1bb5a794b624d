"""Exporting a ``LadaFCOS`` model for deployment: TorchScript and ONNX, both by tracing
detectron2's ``TracingAdapter`` (``tools/export_model.py`` is the command line).

The exported graph maps one image to its detections, as the eager model in eval mode
does for ``model([{"image": image}])``:

* input ``image`` (3, H, W) float32, channels in ``INPUT.FORMAT`` order, values 0-255, at
  the resolution the model sees (after the config's test resize, as detectron2's
  ``DefaultPredictor`` applies it); H and W are free;
* outputs ``boxes`` (K, 4) XYXY in that image's pixels, ``scores`` (K,) and ``classes``
  (K,) int64, by decreasing score.

In the graph: normalisation, padding to the backbone's size divisibility, backbone,
head, the anchor points of every level (from each feature map's traced size), decoding,
the score threshold, per-level top-k, class-wise NMS, ``TEST.DETECTIONS_PER_IMAGE`` and
the clip to the image. Matching and losses run in training only; while tracing they are
set to None on the model, so that they can be neither called nor stored.

RFA (``MODEL.FCOS.RFA``, torchvision's ``deform_conv2d``) exports to TorchScript (load
``torchvision`` before the model) and to ONNX ``DeformConv`` from opset 19; DW's box
refinement (``MODEL.FCOS.BOX_REFINE``, ``grid_sample``) to both, ONNX ``GridSample`` from
opset 16.
"""
from __future__ import annotations

import contextlib
import importlib.util
import warnings
from typing import Callable, Dict, Iterator, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.export import TracingAdapter
from torch import nn

__all__ = [
    "DEFAULT_OPSET", "FORMATS", "INPUT_NAME", "OUTPUT_NAMES", "PARITY_TOLERANCE", "ExportError",
    "check_exportable", "compare_detections", "detections", "export_onnx", "load_exported",
    "trace",
]

FORMATS = ("torchscript", "onnx")
DEFAULT_OPSET = 17
# Config key (a MODEL.FCOS switch) -> the ONNX op its layer exports to and that op's opset.
ONNX_OPS = {"MODEL.FCOS.BOX_REFINE": ("GridSample", 16), "MODEL.FCOS.RFA": ("DeformConv", 19)}
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "classes")
TRAINING_ONLY = ("matcher", "loss")
# What "the same detections" means for an exported model: the same number, the same
# classes, boxes within 1e-3 px and scores within 1e-4 of the eager model's.
PARITY_TOLERANCE = {"boxes": 1e-3, "scores": 1e-4}

# detectron2's batched_nms switches implementation at this many boxes, in Python.
NMS_BRANCH_CANDIDATES = 40000

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ExportError(RuntimeError):
    """The model or its config cannot be exported in the format asked for."""


def check_exportable(cfg: CfgNode, fmt: str, opset: int = DEFAULT_OPSET) -> None:
    """Raises :class:`ExportError` naming the config key (or option) that prevents
    exporting the model of ``cfg`` to ``fmt``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {FORMATS}, got '{fmt}'")
    if cfg.MODEL.META_ARCHITECTURE != "LadaFCOS":
        raise ExportError(
            f"MODEL.META_ARCHITECTURE: only LadaFCOS exports, got '{cfg.MODEL.META_ARCHITECTURE}'"
        )
    candidates = len(cfg.MODEL.FCOS.IN_FEATURES) * cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST
    if candidates >= NMS_BRANCH_CANDIDATES:
        raise ExportError(
            f"MODEL.FCOS.TOPK_CANDIDATES_TEST: {candidates} NMS candidates per image (levels x "
            f"top-k) reach {NMS_BRANCH_CANDIDATES}, where detectron2's batched_nms takes "
            "another branch than the one a trace records; lower it"
        )
    if fmt != "onnx":
        return
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"--format onnx needs {' and '.join(missing)}: "
            "pip install -r requirements/export.txt"
        )
    for key, (op, minimum) in ONNX_OPS.items():
        if cfg.MODEL.FCOS.get(key.rsplit(".", 1)[1]) and opset < minimum:
            raise ExportError(
                f"{key} True needs ONNX opset {minimum} or higher (its op is ONNX {op}); "
                f"got --opset {opset}"
            )


def detections(model: nn.Module, image: torch.Tensor) -> Detections:
    """The eager computation the exported graph records: ``model`` (eval mode) on one
    image (3, H, W) -> boxes (K, 4), scores (K,), classes (K,)."""
    instances = model([{"image": image}])[0]["instances"]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


@contextlib.contextmanager
def _inference_only(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its training-only members (matcher, loss) set to None, restored
    on exit: inference that used them would fail, and a trace cannot store them."""
    if model.training:
        raise ExportError("the model must be in eval mode (model.eval()) to be exported")
    saved = {name: getattr(model, name) for name in TRAINING_ONLY}
    try:
        for name in TRAINING_ONLY:
            setattr(model, name, None)
        yield model
    finally:
        for name, member in saved.items():
            setattr(model, name, member)


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silences the tracer's warnings: detectron2's asserts and fixed branches (no image
    reaches NMS_BRANCH_CANDIDATES, convolutions never see empty inputs) are recorded as
    constants by design; the size-dependent parts are ops (tests/test_export.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX.*")
        yield


def trace(model: nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` (eval mode), traced on ``image`` (3, H, W); the result
    takes an image of any size and returns ``(boxes, scores, classes)``."""
    with _inference_only(model), _quiet_tracer(), torch.no_grad():
        adapter = TracingAdapter(model, image, detections).eval()
        return torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)


def export_onnx(model: nn.Module, image: torch.Tensor, path: str, opset: int = DEFAULT_OPSET) -> None:
    """Writes ``model`` (eval mode), traced on ``image`` (3, H, W), to the ONNX file
    ``path`` (torch.onnx's TorchScript-based exporter) with dynamic height and width and
    a dynamic number of detections; input and outputs are named ``INPUT_NAME`` and
    ``OUTPUT_NAMES``."""
    _register_deform_conv2d_symbolic()
    dynamic_axes = {INPUT_NAME: {1: "height", 2: "width"}}
    dynamic_axes.update({name: {0: "detections"} for name in OUTPUT_NAMES})
    with _inference_only(model), _quiet_tracer(), torch.no_grad():
        adapter = TracingAdapter(model, image, detections).eval()
        torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            path,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )


def _deform_conv2d_symbolic(
    g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dilation_h,
    dilation_w, groups, offset_groups, use_mask,
):
    """``torchvision::deform_conv2d`` as ONNX ``DeformConv`` (opset 19), whose offset
    layout (N, 2 * offset_groups * kH * kW, H_out, W_out) is torchvision's."""
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[stride_h, stride_w],
        pads_i=[pad_h, pad_w, pad_h, pad_w],
        dilations_i=[dilation_h, dilation_w],
        group_i=groups,
        offset_group_i=offset_groups,
    )


def _register_deform_conv2d_symbolic() -> None:
    from torch.onnx.symbolic_helper import parse_args

    symbolic = parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")(
        _deform_conv2d_symbolic
    )
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", symbolic, ONNX_OPS["MODEL.FCOS.RFA"][1])


def load_exported(path: str, num_threads: int = 0) -> Callable[[torch.Tensor], Detections]:
    """The exported model at ``path`` (``.ts`` TorchScript or ``.onnx``, run by
    onnxruntime on the CPU with ``num_threads`` intra-op threads, 0 = its default) as a
    function image (3, H, W) -> (boxes, scores, classes) tensors."""
    if path.endswith(".onnx"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def run_onnx(image: torch.Tensor) -> Detections:
            outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: image.cpu().numpy()})
            return tuple(torch.from_numpy(x) for x in outputs)

        return run_onnx
    if not path.endswith(".ts"):
        raise ExportError(f"{path}: an exported model ends with .ts (TorchScript) or .onnx")
    import torchvision  # noqa: F401  (registers the torchvision ops the graph calls)

    module = torch.jit.load(path)

    def run_torchscript(image: torch.Tensor) -> Detections:
        with torch.no_grad():
            return tuple(module(image))

    return run_torchscript


def compare_detections(expected: Detections, actual: Detections) -> Dict[str, float]:
    """Differences between two (boxes, scores, classes): ``count`` and
    ``expected_count``, and where the counts agree the largest box (px) and score
    differences and the number of differing classes; ``ok`` (1.0 or 0.0) whether they
    are within :data:`PARITY_TOLERANCE`."""
    boxes, scores, classes = (x.detach().cpu() for x in expected)
    other_boxes, other_scores, other_classes = (x.detach().cpu() for x in actual)
    result = {"expected_count": float(len(scores)), "count": float(len(other_scores))}
    if len(scores) != len(other_scores):
        return {**result, "ok": 0.0}
    empty = len(scores) == 0
    result["boxes"] = 0.0 if empty else float((boxes - other_boxes).abs().max())
    result["scores"] = 0.0 if empty else float((scores - other_scores).abs().max())
    result["classes"] = float((classes != other_classes.to(classes.dtype)).sum())
    within = all(result[key] <= limit for key, limit in PARITY_TOLERANCE.items())
    return {**result, "ok": float(within and result["classes"] == 0)}
