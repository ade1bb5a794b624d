#!/usr/bin/env python
"""Export a trained model with torch.export (an ExportedProgram, ONNX, or an AOTInductor
package), then check each export against the eager model on every ``--input`` image.

    python tools/export_model.py --config-file output/quick/lada/config.yaml \\
        --format exported onnx aoti --input datasets/synthetic/val \\
        --output output/quick/lada/export MODEL.WEIGHTS output/quick/lada/model_final.pth

``--output`` receives ``model.pt2`` (``--format exported``, the default; load it with
``torch.export.load``), ``model.onnx`` (ONNX opset ``lada.export.ONNX_OPSET``, with the
export's description in its metadata) and ``model.aoti.pt2`` (AOTInductor, compiled for
``MODEL.DEVICE``; ``torch._inductor.aoti_load_package``). Each takes ``images`` (N, 3, H,
W) float32 in ``INPUT.FORMAT`` channel order, 0-255, at the resolution the model sees,
any H, W and N (``--batch-one``: N = 1), and returns ``boxes`` (K, 4), ``scores``,
``classes`` and ``image_index`` (K,) (``lada.export``). Every input image is resized as at
test time (``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``, as detectron2's
``DefaultPredictor``) and run by each export and by the eager model; their differences
are logged and written to ``OUTPUT/export.json`` with what the graph expects and the
class names (``thing_classes``, and the dataset's ``category_ids``: from the config's
datasets, :func:`lada.data.class_metadata`; null when unknown), which the ONNX file's
metadata holds too. ``tools/onnx_inference.py`` runs ``model.onnx`` on an image file
without torch.

The config is built as ``train_net.py`` builds it (:func:`setup_cfg`): with the own-data
recipe, ``configs/quick/own_data.yaml`` and the training command's ``--dataset`` and
``DATASETS.*`` arguments give the trained class count and test size, as the run's saved
``config.yaml`` does. ``MODEL.WEIGHTS`` must give every weight of that model: a checkpoint
of another class count or architecture stops the export with one line saying so.
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

import numpy as np
import torch

import lada  # noqa: F401  (prepares detectron2, registers the meta-architecture)
from detectron2.config import CfgNode
from detectron2.data import detection_utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from lada import export
from lada.data import class_fields, class_metadata
from lada.engine import CheckpointError, LadaCheckpointer, add_dataset_argument, build_cfg
from lada.engine.preflight import check_dataset_files, check_eval_weights
from lada.engine.setup import merge_registrations, merged_cfg

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

logger = logging.getLogger("lada.export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="a config, or a run's OUTPUT_DIR/config.yaml")
    parser.add_argument("--format", nargs="+", choices=export.FORMATS, default=["exported"],
                        help="one or more formats (default: exported)")
    parser.add_argument("--input", nargs="*", default=[],
                        help="images (files, globs or folders) each export is checked on")
    parser.add_argument("--output", required=True, help="folder for the exported model(s)")
    parser.add_argument("--batch-one", action="store_true",
                        help=f"export for batches of one image (else any batch of 1 to {export.MAX_BATCH})")
    add_dataset_argument(parser, help="register a COCO-format dataset under NAME (repeatable), "
                         "as for train_net.py: with the own-data recipe, the training datasets")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """The frozen config as ``train_net.py`` builds it (:func:`lada.engine.build_cfg`, its
    ``CUSTOM_IMPORTS`` first): with the own-data recipe (``RECIPE.ENABLED``, e.g.
    ``configs/quick/own_data.yaml`` with the training command's ``--dataset`` and
    ``DATASETS.*`` arguments) it reads the training datasets and sets the class count and
    test size the model was trained with; a run's saved ``config.yaml``
    (``RECIPE.APPLIED``) is used as it is. Training data the recipe cannot read stops it
    with one line naming the file and the two ways out."""
    merged = merged_cfg(args.config_file, args.opts)
    if merged.RECIPE.ENABLED and not merged.RECIPE.APPLIED:
        try:
            check_dataset_files(dict.fromkeys(merged.DATASETS.TRAIN, "DATASETS.TRAIN"),
                                merge_registrations(merged.DATASETS.REGISTER_COCO, args.dataset))
        except SystemExit as error:
            raise SystemExit(
                f"{error}. The own-data recipe of this config (RECIPE.ENABLED) reads the "
                "training datasets to set the class count and sizes the model was trained "
                "with: give the training command's --dataset and DATASETS.TRAIN arguments, or "
                "export with the run's saved OUTPUT_DIR/config.yaml") from None
    cfg, recipe = build_cfg(args.config_file, args.opts, args.dataset)
    if recipe is not None:
        for line in recipe.lines:
            logger.info(line)
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
    return torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))


def build_eval_model(cfg: CfgNode) -> torch.nn.Module:
    """The model of ``cfg`` with the weights of ``MODEL.WEIGHTS``, in eval mode. A
    checkpoint that does not give every weight of the model (another
    ``MODEL.FCOS.NUM_CLASSES``, another architecture) raises :class:`CheckpointError`."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        LadaCheckpointer(model, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
                         for_inference=True).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting the randomly initialised model")
    return model.eval()


def describe(cfg: CfgNode, args: argparse.Namespace) -> Dict:
    """What every export of this call expects and gives (``export.json``)."""
    return {
        "files": {fmt: export.FILE_NAMES[fmt] for fmt in args.format},
        "onnx_opset": export.ONNX_OPSET if "onnx" in args.format else None,
        "device": cfg.MODEL.DEVICE,
        "input": {
            "name": export.INPUT_NAME,
            "shape": "(1, 3, H, W)" if args.batch_one else f"(N, 3, H, W), N <= {export.MAX_BATCH}",
            "dtype": "float32",
            "channels": cfg.INPUT.FORMAT,
            "range": "0-255",
            "test_resize": {"min_size": cfg.INPUT.MIN_SIZE_TEST, "max_size": cfg.INPUT.MAX_SIZE_TEST},
        },
        "outputs": {
            "boxes": "(K, 4) XYXY px", "scores": "(K,)", "classes": "(K,) int64",
            "image_index": "(K,) int64, the image of each detection",
        },
        "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
        **classes(cfg),
        "config_file": args.config_file,
        "weights": cfg.MODEL.WEIGHTS,
        "torch": torch.__version__,
    }


def classes(cfg: CfgNode) -> Dict:
    """``thing_classes`` (the name of each class index) and ``category_ids`` (the
    dataset's category id of each, for COCO results) of the config's datasets
    (:func:`lada.data.class_metadata`), each None when unknown (with a warning when the
    names are)."""
    fields = class_fields(class_metadata(cfg))
    if fields["thing_classes"] is None:
        logger.warning(
            "no class names: export.json and the ONNX metadata hold thing_classes null, and "
            "tools/onnx_inference.py gives class indices only; the names come from the first "
            "dataset of DATASETS.TEST or DATASETS.TRAIN that loads with the model's %d "
            "categories (a run's config.yaml registers its datasets)", cfg.MODEL.FCOS.NUM_CLASSES)
    return fields


def write_onnx_metadata(path: str, metadata: Dict[str, str]) -> None:
    import onnx

    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def check(model: torch.nn.Module, path: str, paths: List[str], images: List[torch.Tensor]) -> List[Dict]:
    """The export at ``path`` against the eager model on each image (one per call)."""
    run = export.load(path)
    checks = []
    for image_path, image in zip(paths, images):
        batch = image[None].to(model.device)
        result = export.compare_detections(export.eager_detections(model, batch), run(batch))
        checks.append({"image": image_path, "height": image.shape[1], "width": image.shape[2], **result})
        logger.info("%s on %s: %s", os.path.basename(path), image_path, result)
    failed = [c["image"] for c in checks if not c["ok"]]
    if failed:
        logger.warning(
            "%s differs from the eager model (beyond %s or in count/classes) on: %s",
            path, export.PARITY_TOLERANCE, ", ".join(failed),
        )
    return checks


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    setup_logger(name="lada")
    cfg = setup_cfg(args)
    if cfg.MODEL.WEIGHTS:  # empty: the untrained model, with a warning (build_eval_model)
        check_eval_weights(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS",
                           given="MODEL.WEIGHTS" in list(args.opts)[0::2], resume=False,
                           output_dir=cfg.OUTPUT_DIR, config_file=args.config_file,
                           command="export_model.py")
    for fmt in args.format:
        export.check_exportable(cfg, fmt)
    paths = image_paths(args.input)
    images = [load_image(path, cfg) for path in paths]
    if not images:
        logger.warning("no --input: the exports are not checked against the eager model")
    model = build_eval_model(cfg)
    os.makedirs(args.output, exist_ok=True)
    description = describe(cfg, args)
    description["parity_tolerance"] = export.PARITY_TOLERANCE
    description["checks"] = {}
    logger.info("exporting with torch.export (batch %s) to %s", "of one" if args.batch_one else "dynamic",
                ", ".join(args.format))
    files = export.export_to(model, args.format, args.output, dynamic_batch=not args.batch_one)
    for fmt, file in zip(args.format, files):
        if fmt == "onnx":
            write_onnx_metadata(file, {k: json.dumps(v) for k, v in description.items() if k != "checks"})
        description["checks"][fmt] = check(model, file, paths, images)
    with open(os.path.join(args.output, "export.json"), "w") as handle:
        json.dump(description, handle, indent=2)
    logger.info("wrote %s and export.json", ", ".join(description["files"].values()))
    return description


if __name__ == "__main__":
    try:
        main()
    except (export.ExportError, CheckpointError) as error:
        sys.exit(f"export_model.py: {error}")
