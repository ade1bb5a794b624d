#!/usr/bin/env python
"""Export a trained model to TorchScript or ONNX, then check the export against the eager
model on every ``--input`` image.

    python tools/export_model.py --config-file output/quick/lada/config.yaml \\
        --format onnx --input datasets/synthetic/val --output output/quick/lada/export \\
        MODEL.WEIGHTS output/quick/lada/model_final.pth

The model is traced on the first input image; the exported graph takes one image of any
size (3, H, W), float32, in ``INPUT.FORMAT`` channel order and 0-255, at the resolution
the model sees, and returns ``boxes`` (K, 4), ``scores`` (K,), ``classes`` (K,)
(``lada.export``). Every input image is resized as at test time (``INPUT.MIN_SIZE_TEST``,
``INPUT.MAX_SIZE_TEST``, as detectron2's ``DefaultPredictor``) and run by both the
exported and the eager model; their differences are logged and written to
``OUTPUT/export.json``, with what the graph expects. ``--output`` receives ``model.ts``
or ``model.onnx`` (ONNX opset ``--opset``, also in the file's metadata).
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import lada  # noqa: F401  (prepares detectron2, registers the meta-architecture)
from detectron2.config import CfgNode, get_cfg
from detectron2.data import detection_utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from lada import export
from lada.config import add_lada_config
from lada.engine import LadaCheckpointer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

logger = logging.getLogger("lada.export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="a config, or a run's OUTPUT_DIR/config.yaml")
    parser.add_argument("--format", choices=export.FORMATS, default="torchscript")
    parser.add_argument(
        "--input", nargs="+", required=True,
        help="sample images: files, globs or folders; the first is traced, all are checked",
    )
    parser.add_argument("--output", required=True, help="folder for the exported model")
    parser.add_argument("--opset", type=int, default=export.DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def image_paths(inputs: List[str]) -> List[str]:
    """Files, glob patterns and folders (their images, sorted) -> image files."""
    paths: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(glob.glob(item))
        if not found:
            raise FileNotFoundError(f"--input {item}: no image file, folder of images or glob match")
        paths.extend(found)
    return paths


def load_image(path: str, cfg: CfgNode) -> torch.Tensor:
    """The image at ``path`` as the model sees it at test time: (3, H, W) float32 in
    ``INPUT.FORMAT``, resized as detectron2's ``DefaultPredictor`` does."""
    image = detection_utils.read_image(path, format=cfg.INPUT.FORMAT)
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    image = resize.get_transform(image).apply_image(image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


def build_eval_model(cfg: CfgNode) -> torch.nn.Module:
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        LadaCheckpointer(model, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting the randomly initialised model")
    return model.eval()


def write_onnx_metadata(path: str, metadata: Dict[str, str]) -> None:
    import onnx

    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    setup_logger(name="lada")
    cfg = setup_cfg(args)
    export.check_exportable(cfg, args.format, args.opset)
    paths = image_paths(args.input)
    images = [load_image(path, cfg) for path in paths]
    model = build_eval_model(cfg)
    sample = images[0].to(model.device)
    os.makedirs(args.output, exist_ok=True)
    file = os.path.join(args.output, "model.onnx" if args.format == "onnx" else "model.ts")
    logger.info("tracing on %s (%d x %d)", paths[0], *images[0].shape[1:])
    if args.format == "onnx":
        export.export_onnx(model, sample, file, args.opset)
    else:
        export.trace(model, sample).save(file)
    description = {
        "file": os.path.basename(file),
        "format": args.format,
        "opset": args.opset if args.format == "onnx" else None,
        "input": {
            "name": export.INPUT_NAME,
            "shape": "(3, H, W)",
            "dtype": "float32",
            "channels": cfg.INPUT.FORMAT,
            "range": "0-255",
            "test_resize": {"min_size": cfg.INPUT.MIN_SIZE_TEST, "max_size": cfg.INPUT.MAX_SIZE_TEST},
        },
        "outputs": {"boxes": "(K, 4) XYXY px", "scores": "(K,)", "classes": "(K,) int64"},
        "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
        "config_file": args.config_file,
        "weights": cfg.MODEL.WEIGHTS,
        "torch": torch.__version__,
    }
    if args.format == "onnx":
        write_onnx_metadata(file, {k: json.dumps(v) for k, v in description.items()})
    run = export.load_exported(file)
    checks = []
    for path, image in zip(paths, images):
        image = image.to(model.device)
        with torch.no_grad():
            expected = export.detections(model, image)
        check = export.compare_detections(expected, run(image))
        checks.append({"image": path, "height": image.shape[1], "width": image.shape[2], **check})
        logger.info("check %s: %s", path, check)
    failed = [c["image"] for c in checks if not c["ok"]]
    if failed:
        logger.warning(
            "the export differs from the eager model (beyond %s or in count/classes) on: %s",
            export.PARITY_TOLERANCE, ", ".join(failed),
        )
    description["parity_tolerance"] = export.PARITY_TOLERANCE
    description["checks"] = checks
    with open(os.path.join(args.output, "export.json"), "w") as handle:
        json.dump(description, handle, indent=2)
    logger.info("wrote %s and export.json", file)
    return description


if __name__ == "__main__":
    try:
        main()
    except export.ExportError as error:
        sys.exit(f"export_model.py: {error}")
