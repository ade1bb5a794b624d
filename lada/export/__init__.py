"""Exporting a ``LadaFCOS`` model for deployment on PyTorch's supported path
(``tools/export_model.py`` is the command line, docs/export.md the user's guide).

``export_program`` runs ``torch.export`` on :class:`DetectionGraph`, the project's
inference graph around the model; from its ``ExportedProgram`` come three formats:

* ``exported``: the program itself, ``model.pt2`` (``torch.export.save`` / ``load``);
* ``onnx``: ``model.onnx`` by torch.onnx's torch.export-based exporter, ONNX opset
  :data:`ONNX_OPSET`, run by onnxruntime;
* ``aoti``: ``model.aoti.pt2``, an AOTInductor package compiled for the device the
  model is on (CPU, or CUDA).

The graph takes ``images`` (N, 3, H, W) float32, ``INPUT.FORMAT`` channel order, values
0-255, at the resolution the model sees (after the config's test resize), H, W and N
free; it returns ``boxes`` (K, 4) XYXY px, ``scores`` (K,), ``classes`` (K,) int64 and
``image_index`` (K,) int64, the detections of all images grouped by image. Each image's
detections are the eager model's (:data:`PARITY_TOLERANCE`, tests/test_export.py).
"""
from .checks import (
    FORMATS,
    PARITY_TOLERANCE,
    ExportError,
    check_exportable,
    compare_detections,
    eager_detections,
)
from .graph import DetectionGraph
from .program import (
    FILE_NAMES,
    INPUT_NAME,
    MAX_BATCH,
    ONNX_OPSET,
    OUTPUT_NAMES,
    TRACE_SIZE,
    export_program,
    export_to,
    exporting,
    load,
    save,
    save_aoti,
    save_onnx,
    save_program,
)

__all__ = [
    "FILE_NAMES", "FORMATS", "INPUT_NAME", "MAX_BATCH", "ONNX_OPSET", "OUTPUT_NAMES",
    "PARITY_TOLERANCE", "TRACE_SIZE", "DetectionGraph", "ExportError", "check_exportable",
    "compare_detections", "eager_detections", "export_program", "export_to", "exporting",
    "load", "save", "save_aoti", "save_onnx", "save_program",
]
