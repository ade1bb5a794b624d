"""What can be exported, and whether an export gives the eager model's detections."""
from __future__ import annotations

import importlib.util
import shutil
from typing import Dict, Tuple

import torch
from detectron2.config import CfgNode
from torch import nn

__all__ = [
    "FORMATS", "PARITY_TOLERANCE", "ExportError", "check_exportable", "compare_detections",
    "eager_detections",
]

# exported: torch.export's ExportedProgram (.pt2); onnx: the torch.export-based ONNX
# exporter, run by onnxruntime; aoti: an AOTInductor package, compiled for the device.
FORMATS = ("exported", "onnx", "aoti")
# Python packages each format needs beyond torch (requirements/export.txt).
FORMAT_PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime")}
# What "the same detections" means for an export: the same number per image, the same
# classes, boxes within 1e-3 px and scores within 1e-4 of the eager model's.
PARITY_TOLERANCE = {"boxes": 1e-3, "scores": 1e-4}

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class ExportError(RuntimeError):
    """The model or its config cannot be exported in the format asked for."""


def check_exportable(cfg: CfgNode, fmt: str) -> None:
    """Raises :class:`ExportError` naming the config key, format or missing tool that
    prevents exporting the model of ``cfg`` to ``fmt``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {FORMATS}, got '{fmt}'")
    if cfg.MODEL.META_ARCHITECTURE != "LadaFCOS":
        raise ExportError(
            f"MODEL.META_ARCHITECTURE: only LadaFCOS exports, got '{cfg.MODEL.META_ARCHITECTURE}'"
        )
    missing = [m for m in FORMAT_PACKAGES.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"--format {fmt} needs {', '.join(missing)}: pip install -r requirements/export.txt"
        )
    if fmt == "aoti" and shutil.which(_cpp_compiler()) is None:
        raise ExportError(
            f"--format aoti compiles C++ with '{_cpp_compiler()}', which is not on PATH "
            "(install a C++ compiler, or name one in the CXX environment variable)"
        )


def _cpp_compiler() -> str:
    from torch._inductor import config

    return config.cpp.cxx[1]


def eager_detections(model: nn.Module, images: torch.Tensor) -> Detections:
    """What an export of ``model`` (eval mode) must give for ``images`` (N, 3, H, W),
    computed by the eager model image by image (``model([{"image": image}, ...])``):
    boxes (K, 4), scores (K,), classes (K,), image_index (K,)."""
    with torch.no_grad():
        outputs = model([{"image": image} for image in images])
    instances = [output["instances"] for output in outputs]
    index = [torch.full((len(x),), i, dtype=torch.long, device=images.device) for i, x in enumerate(instances)]
    return (
        torch.cat([x.pred_boxes.tensor for x in instances]),
        torch.cat([x.scores for x in instances]),
        torch.cat([x.pred_classes for x in instances]),
        torch.cat(index),
    )


def compare_detections(expected: Detections, actual: Detections) -> Dict[str, float]:
    """Differences between two (boxes, scores, classes, image_index): ``count`` and
    ``expected_count``, and where every image has as many detections in both the largest
    box (px) and score differences and the number of differing classes; ``ok`` (1.0 or
    0.0) whether they are within :data:`PARITY_TOLERANCE`."""
    boxes, scores, classes, index = (x.detach().cpu() for x in expected)
    other_boxes, other_scores, other_classes, other_index = (x.detach().cpu() for x in actual)
    result = {"expected_count": float(len(scores)), "count": float(len(other_scores))}
    if not torch.equal(index, other_index.to(index.dtype)):
        return {**result, "ok": 0.0}
    empty = len(scores) == 0
    result["boxes"] = 0.0 if empty else float((boxes - other_boxes).abs().max())
    result["scores"] = 0.0 if empty else float((scores - other_scores).abs().max())
    result["classes"] = float((classes != other_classes.to(classes.dtype)).sum())
    within = all(result[key] <= limit for key, limit in PARITY_TOLERANCE.items())
    return {**result, "ok": float(within and result["classes"] == 0)}

