#!/usr/bin/env python
"""Detections of a trained model on images: each image drawn with its detections
(detectron2's ``Visualizer``, class names from the dataset's metadata) and one COCO-format
results json.

    python tools/predict.py --config-file output/quick/lada/config.yaml \\
        --input photos/ --output predictions/ \\
        MODEL.WEIGHTS output/quick/lada/model_final.pth

``--input`` takes image files, quoted glob patterns (``'photos/*.jpg'``), folders (their
images, not recursively) or the name of one registered dataset (the config's
``DATASETS.REGISTER_COCO``, which a run's saved ``config.yaml`` fills with its
``--dataset`` registrations, or ``--dataset NAME JSON IMAGE_ROOT`` here); with a dataset,
``--show-gt`` draws its GT boxes dashed beside the detections.

The config is built as ``train_net.py`` builds it (:func:`lada.engine.build_cfg`: the
own-data recipe's sizes apply) and each image goes through the evaluation's mapper and
model, so the results json holds what ``train_net.py --eval-only`` writes to
``coco_instances_results.json`` for the same images: every detection the model returns
(scores from ``MODEL.FCOS.SCORE_THRESH_TEST``), with the dataset's image and category ids.
``--confidence-threshold`` only chooses which of them are drawn; the summary it prints
says how many were kept and drawn and the top score, with a hint when none is drawn.
An input that is not an image stops it with one line naming the file; so do weights that
do not fit the config's model (another ``MODEL.FCOS.NUM_CLASSES``: use the run's saved
``config.yaml``), which would otherwise predict with a random class head.

Written to ``--output``: the drawn images (same names and sub-folders as the inputs, under
the inputs' common folder), ``coco_instances_results.json`` and ``images.json`` (the COCO
``images`` entries the results' ``image_id`` refer to: ids of the dataset, or 1, 2, ... in
input order for files).
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image

import lada  # noqa: F401  (prepares detectron2, registers the model and matchers)
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import BoxMode, Instances
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from lada.data import ReadCheckedDatasetMapper
from lada.data import class_fields
from lada.data import class_metadata as lada_class_metadata
from lada.data.errors import ImageReadError
from lada.data.output_paths import mirrored_output_path
from lada.engine import CheckpointError, LadaCheckpointer, Trainer, build_cfg, register_datasets
from lada.progress import progress_bar

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
RESULTS = "coco_instances_results.json"
IMAGES = "images.json"
GT_COLOUR = "lime"

logger = logging.getLogger("lada.predict")


@dataclass
class Inputs:
    """The images to predict on. records: detectron2 dataset dicts (``file_name``,
    ``image_id``, and with a dataset its ``annotations``); dataset: the registered dataset
    they come from, or None for files; root: the folder output names are relative to."""

    records: list[dict]
    dataset: Optional[str]
    root: Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="the run's OUTPUT_DIR/config.yaml, or a config of configs/")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files, quoted glob patterns, folders, or the name of "
                             "one registered dataset")
    parser.add_argument("--output", required=True, help="folder for the drawn images and jsons")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="draw the detections scoring at least this (default 0.5); "
                             "the results json holds them all")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the drawings relative to the images (default 1; e.g. "
                             "4 for 128 px images)")
    parser.add_argument("--show-gt", action="store_true",
                        help="with a dataset --input, draw its GT boxes (dashed)")
    parser.add_argument("--dataset", nargs=3, action="append", default=[],
                        metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format dataset under NAME (repeatable)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS run/model_final.pth")
    return parser


def collect_inputs(items: Sequence[str]) -> Inputs:
    """The images named by ``--input`` (see the module docstring), in the order given,
    each folder's and pattern's sorted."""
    datasets = [item for item in items if item in DatasetCatalog.list() and not os.path.exists(item)]
    if datasets:
        if len(items) > 1:
            raise SystemExit(f"--input: a dataset ('{datasets[0]}') must be the only input")
        name = datasets[0]
        records = DatasetCatalog.get(name)
        return Inputs(records, name, Path(MetadataCatalog.get(name).image_root))
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if _is_image_name(p))
        elif path.is_file():
            if not _is_image_name(path):
                raise SystemExit(f"--input {item}: not an image (images end in "
                                 f"{', '.join(IMAGE_SUFFIXES)})")
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path))
                           if Path(p).is_file() and _is_image_name(Path(p)))
        if not found:
            raise SystemExit(
                f"--input {item}: no such image file, folder with images, glob match or "
                f"registered dataset (registered: {', '.join(sorted(DatasetCatalog.list()))})")
        files += found
    files = [f.resolve() for f in files]
    root = Path(os.path.commonpath([f.parent for f in files]))
    records = [{"file_name": str(f), "image_id": i + 1} for i, f in enumerate(files)]
    return Inputs(records, None, root)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def class_metadata(cfg: CfgNode, inputs: Inputs) -> Metadata:
    """The metadata whose ``thing_classes`` name the model's classes
    (:func:`lada.data.class_metadata`: the input dataset's, else that of the config's
    first test or training dataset that loads with as many categories as the model has
    classes), else an empty one (classes drawn by number)."""
    metadata = lada_class_metadata(cfg, inputs.dataset)
    if metadata is None:
        logger.warning("no class names: classes are drawn and written by number")
        return Metadata(name="predict")
    return metadata


def load_model(cfg: CfgNode) -> torch.nn.Module:
    """The model of ``cfg`` with the weights of ``MODEL.WEIGHTS``, in eval mode; a checkpoint
    that does not give every weight of the model (another ``MODEL.FCOS.NUM_CLASSES``: a
    config without the run's recipe values) or cannot be read stops it with one line."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise SystemExit("MODEL.WEIGHTS is empty: add the trained weights to the command line, "
                         "e.g. MODEL.WEIGHTS OUTPUT_DIR/model_final.pth")
    if "://" not in weights and not PathManager.exists(weights):
        raise SystemExit(f"MODEL.WEIGHTS {weights}: no such file")
    model = Trainer.build_model(cfg)
    try:
        LadaCheckpointer(model, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
                         for_inference=True).load(weights)
    except CheckpointError as error:
        raise SystemExit(f"MODEL.WEIGHTS: {error}") from None
    return model.eval()


def draw(
    image: np.ndarray, instances: Instances, metadata: Metadata, threshold: float,
    gt: Sequence[dict] = (), scale: float = 1.0,
) -> np.ndarray:
    """``image`` (H, W, 3) RGB uint8 with the detections of ``instances`` scoring at least
    ``threshold`` drawn by ``Visualizer`` and, dashed, the GT boxes of the dataset
    annotations ``gt``; returns the drawing, (H * scale, W * scale, 3) RGB uint8."""
    visualizer = Visualizer(image, metadata, scale=scale)
    for annotation in gt:
        box = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
        visualizer.draw_box(box, edge_color=GT_COLOUR, line_style="--")
    shown = instances[instances.scores >= threshold]
    return visualizer.draw_instance_predictions(shown).get_image()


def to_coco_results(instances: Instances, image_id: int,
                    category_ids: Optional[Sequence[int]]) -> list[dict]:
    """The detections of one image as COCO results, with the dataset's category id of each
    class index (``category_ids``, :func:`lada.data.class_fields`; the class index when
    None), as ``COCOEvaluator`` maps them."""
    results = instances_to_coco_json(instances, image_id)
    if category_ids:
        for result in results:
            result["category_id"] = category_ids[result["category_id"]]
    return results


def predict(cfg: CfgNode, args: argparse.Namespace) -> dict[str, Any]:
    """Runs the model on every input image; writes the drawings and the jsons to
    ``args.output``; returns the counts and speeds it prints."""
    inputs = collect_inputs(args.input)
    if args.show_gt and inputs.dataset is None:
        raise SystemExit("--show-gt needs --input to be a registered dataset")
    metadata = class_metadata(cfg, inputs)
    category_ids = class_fields(metadata)["category_ids"]
    model = load_model(cfg)
    names = (inputs.dataset,) if inputs.dataset else ()
    mapper = ReadCheckedDatasetMapper(cfg, False, dataset_names=names)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    on_cuda = torch.device(cfg.MODEL.DEVICE).type == "cuda"

    results, images, model_seconds, drawn, top_score = [], [], 0.0, 0, None
    start = time.perf_counter()
    for record in progress_bar(inputs.records, unit="image", desc="predict"):
        try:
            example = mapper(record)
        except ImageReadError as error:  # its message speaks of training; this is predict
            cause = error.__cause__ or error
            raise SystemExit(f"--input: cannot read {record['file_name']} as an image "
                             f"({type(cause).__name__}: {cause})") from None
        model_start = time.perf_counter()
        with torch.no_grad():
            instances = model([example])[0]["instances"]
        if on_cuda:
            torch.cuda.synchronize()
        model_seconds += time.perf_counter() - model_start
        instances = instances.to("cpu")
        image_id = record["image_id"]
        results += to_coco_results(instances, image_id, category_ids)
        drawn += int((instances.scores >= args.confidence_threshold).sum())
        if len(instances):
            top_score = max(float(instances.scores.max()), top_score or 0.0)
        images.append({"id": image_id, "file_name": record["file_name"],
                       "height": example["height"], "width": example["width"]})
        drawing = draw(read_image(record["file_name"], format="RGB"), instances, metadata,
                       args.confidence_threshold,
                       record.get("annotations", ()) if args.show_gt else (), args.scale)
        target = mirrored_output_path(output, inputs.root, record["file_name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawing).save(target)
    seconds = time.perf_counter() - start
    (output / RESULTS).write_text(json.dumps(results))
    (output / IMAGES).write_text(json.dumps(images, indent=1))
    count = len(inputs.records)
    return {"images": count, "detections": len(results), "drawn": drawn, "top_score": top_score,
            "seconds": seconds, "images_per_second": count / seconds,
            "model_images_per_second": count / max(model_seconds, 1e-9)}


def summary(done: dict[str, Any], cfg: CfgNode, threshold: float) -> list[str]:
    """What ``main`` prints of a run of :func:`predict`: the detections kept (all the model
    returns, what the results json holds), the boxes drawn, the top score, and a hint
    when nothing was drawn."""
    kept = (f"{done['detections']} detections kept (scores >= MODEL.FCOS.SCORE_THRESH_TEST "
            f"{cfg.MODEL.FCOS.SCORE_THRESH_TEST:g}, all in {RESULTS})")
    top = "no detection" if done["top_score"] is None else f"top score {done['top_score']:.3f}"
    lines = [f"{done['images']} images: {kept}, {done['drawn']} boxes drawn (scores >= "
             f"--confidence-threshold {threshold:g}), {top}"]
    if done["top_score"] is None:
        lines.append("hint: the model returned no detection; a weakly trained model may score "
                     "everything below MODEL.FCOS.SCORE_THRESH_TEST (lower it on the command "
                     "line to see its best guesses)")
    elif done["drawn"] == 0:
        lines.append(f"hint: no detection reaches --confidence-threshold {threshold:g}; "
                     f"--confidence-threshold {math.floor(done['top_score'] * 100) / 100:g} "
                     "draws the best ones")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise SystemExit(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    if not args.scale > 0:
        raise SystemExit(f"--scale must be positive, got {args.scale}")
    setup_logger(name="lada")
    cfg, _ = build_cfg(args.config_file, args.opts, args.dataset)
    register_datasets(cfg, args)
    done = predict(cfg, args)
    print("\n".join(summary(done, cfg, args.confidence_threshold)))
    print(speed_line(done, torch.get_num_threads(), cfg.MODEL.DEVICE, args.output))
    return done


def speed_line(done: dict[str, Any], threads: int, device: str, output: str) -> str:
    """The last line ``main`` prints: the time, the speeds, torch's CPU threads and where
    the outputs went."""
    return (f"{done['seconds']:.1f} s: {done['images_per_second']:.2f} images/s "
            f"({done['model_images_per_second']:.2f} images/s in the model alone, "
            f"{threads} CPU thread{'' if threads == 1 else 's'}, device {device}); drawings, "
            f"{RESULTS} and {IMAGES} in {output}")


if __name__ == "__main__":
    main()
