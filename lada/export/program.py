"""The export itself: ``torch.export`` of :class:`~lada.export.graph.DetectionGraph` with
a dynamic image size (and batch size), and the three formats made from the
``ExportedProgram``: the program itself (``.pt2``), ONNX through the torch.export-based
exporter, and an AOTInductor package; :func:`load` runs any of them."""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, List, Sequence, Tuple

import torch
from torch import nn
from torch.export import Dim, ExportedProgram
from torch.fx.experimental import _config as fx_config

from .graph import DetectionGraph

__all__ = [
    "FILE_NAMES", "INPUT_NAME", "MAX_BATCH", "ONNX_OPSET", "OUTPUT_NAMES", "TRACE_SIZE",
    "export_program", "export_to", "exporting", "load", "save", "save_aoti", "save_onnx",
    "save_program",
]

# The ONNX opset of the files written; its DeformConv (RFA) needs 19, GridSample (DW's
# box refinement) 16.
ONNX_OPSET = 20
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "classes", "image_index")
FILE_NAMES = {"exported": "model.pt2", "onnx": "model.onnx", "aoti": "model.aoti.pt2"}
# The largest batch of an export with a dynamic batch size.
MAX_BATCH = 64
# (height, width) of the example an export is traced on: no side of 1 at stride 128.
TRACE_SIZE = (288, 416)

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _nms_fake(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision::nms`` on fake tensors: any number of kept boxes, none included."""
    return dets.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=torch.long)


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """What ``torch.export``, the ONNX exporter and AOTInductor need to trace
    :class:`DetectionGraph`, restored on exit:

    * sizes are "size-oblivious": a feature map of 1 x 1 (P7 of an image up to 128 px)
      takes the general path rather than specialising the export to it (the ONNX
      exporter sets the same);
    * ``torchvision::nms`` gets a fake kernel for which NMS may keep any number of boxes:
      torchvision's (0.29) declares at least 2 (``create_unbacked_symint``'s default, a
      call deprecated by torch), so that the export would assert 2 detections at run
      time; torchvision's is back on exit (``Library._destroy`` drops what this one
      registered)."""
    library = torch.library.Library("torchvision", "FRAGMENT")
    try:
        torch.library.register_fake("torchvision::nms", _nms_fake, lib=library)
        with fx_config.patch(backed_size_oblivious=True):
            yield
    finally:
        library._destroy()


def export_program(model: nn.Module, dynamic_batch: bool = True) -> ExportedProgram:
    """``torch.export`` of ``model`` (a ``LadaFCOS`` in eval mode) as
    :class:`DetectionGraph`, on the model's device, with a dynamic height and width, and
    batch size (1 to :data:`MAX_BATCH`) with ``dynamic_batch``.

    Traced on :data:`TRACE_SIZE` (two images with ``dynamic_batch``): a size at which no
    level has a side of 1 and no two sizes are equal, so that every size-dependent
    choice the exporter and AOTInductor make from the example takes the general case (a
    1 x 1 level, or a batch of one, traced would be taken for the only case)."""
    shapes = {2: Dim("height", min=1), 3: Dim("width", min=1)}
    if dynamic_batch:
        shapes[0] = Dim("batch", min=1, max=MAX_BATCH)
    images = torch.zeros(2 if dynamic_batch else 1, 3, *TRACE_SIZE, device=model.device)
    graph = DetectionGraph(model).eval()
    with exporting(), torch.no_grad():
        return torch.export.export(graph, (images,), dynamic_shapes={"images": shapes})


def save_program(program: ExportedProgram, path: str) -> None:
    """The ``ExportedProgram`` as a ``.pt2`` file, for ``torch.export.load``."""
    torch.export.save(program, path)


def save_onnx(program: ExportedProgram, path: str, opset: int = ONNX_OPSET) -> None:
    """``program`` (converted once: :func:`save`) as one ONNX file (torch.onnx's
    torch.export-based exporter, opset ``opset``, its graph optimiser on: onnxruntime
    runs the result about 1.4x as fast on the quick model), input :data:`INPUT_NAME`
    and outputs :data:`OUTPUT_NAMES`, every dynamic size of the program dynamic in the
    file."""
    with exporting():
        onnx_program = torch.onnx.export(
            program, (), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
    onnx_program.save(path, external_data=False)


def save_aoti(program: ExportedProgram, path: str) -> None:
    """``program`` (converted once: :func:`save`) compiled by AOTInductor for the
    device it was exported on, as a package that :func:`load`
    (``torch._inductor.aoti_load_package``) runs."""
    with exporting():
        torch._inductor.aoti_compile_and_package(program, package_path=path)


def save(program: ExportedProgram, fmt: str, path: str) -> None:
    """``program`` written to ``path`` in format ``fmt`` (``exported``, ``onnx`` or
    ``aoti``). ``onnx`` and ``aoti`` convert the program, which is then spent: the ONNX
    exporter (torch 2.14) leaves state in the shape environment of the program it
    converts (data-dependent sizes pending), on which a second ONNX conversion of that
    program fails and with which AOTInductor compiles a package that gives other
    detections. Writing ``exported`` leaves the program as it is."""
    {"exported": save_program, "onnx": save_onnx, "aoti": save_aoti}[fmt](program, path)


def export_to(model: nn.Module, formats: Sequence[str], folder: str, dynamic_batch: bool = True) -> List[str]:
    """``model`` (a ``LadaFCOS`` in eval mode) exported (:func:`export_program`) to each
    of ``formats`` in ``folder`` (:data:`FILE_NAMES`), the program made again after each
    conversion (:func:`save`); returns the files."""
    files, program = [], None
    for fmt in formats:
        if program is None:
            program = export_program(model, dynamic_batch)
        files.append(os.path.join(folder, FILE_NAMES[fmt]))
        save(program, fmt, files[-1])
        if fmt != "exported":
            program = None
    return files


def load(path: str, num_threads: int = 0) -> Callable[[torch.Tensor], Detections]:
    """The export at ``path`` as a function images (N, 3, H, W) -> (boxes, scores,
    classes, image_index), by its file name (:data:`FILE_NAMES`): ``*.aoti.pt2`` an
    AOTInductor package, ``*.pt2`` an ``ExportedProgram``, ``*.onnx`` run by
    onnxruntime on the CPU with ``num_threads`` intra-op threads (0: its default)."""
    if path.endswith(".onnx"):
        return _onnxruntime_runner(path, num_threads)
    if not path.endswith(".pt2"):
        raise ValueError(f"{path}: an export ends with .pt2 (exported program), .aoti.pt2 or .onnx")
    import torchvision  # noqa: F401  (registers torchvision::nms, which the graph calls)

    if path.endswith(".aoti.pt2"):
        module = torch._inductor.aoti_load_package(path)
    else:
        module = torch.export.load(path).module()

    def run(images: torch.Tensor) -> Detections:
        with torch.no_grad():
            # contiguous: an AOTInductor package reads its input with the strides it was
            # compiled for, whatever the tensor's (a transposed image gives garbage)
            return tuple(module(images.contiguous()))

    return run


def _onnxruntime_runner(path: str, num_threads: int) -> Callable[[torch.Tensor], Detections]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> Detections:
        outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.detach().cpu().numpy()})
        return tuple(torch.from_numpy(x) for x in outputs)

    return run

