#!/usr/bin/env python
"""Detect objects in image files with a model.onnx written by tools/export_model.py,
using only onnxruntime, numpy and Pillow (no torch, no detectron2): a deployment
example.

    python tools/onnx_inference.py output/quick/lada/export/model.onnx photo.jpg \\
        --threshold 0.3 --output detections.json

Each image is prepared as the model was tested: read with its EXIF orientation, in the
channel order and resized as the file's metadata says (``input.channels``;
``input.test_resize``: the shorter side to ``min_size``, the longer at most ``max_size``,
bilinear, as detectron2's ``ResizeShortestEdge``), as float32 (1, 3, H, W) with values
0-255 (normalisation is inside the graph). The boxes are scaled back to the image's own
pixels and clipped to it, as detectron2 does for ``tools/predict.py``. Prints one JSON
line per image and writes them all to ``--output``.

Each detection has its ``box`` (x0, y0, x1, y1 in the image's pixels), ``score`` and
``class`` (the model's 0-based class index) and, when the file's metadata holds them
(``thing_classes`` and ``category_ids``, written by tools/export_model.py from the
config's datasets), the class ``name`` and the dataset's ``category_id`` (the id COCO
results use). Files exported without them give the index alone.

With ``--dataset NAME JSON IMAGE_ROOT`` (a COCO-format dataset, as the other tools take
it) it evaluates the file instead: every image of the json (its ``file_name`` under
``IMAGE_ROOT``) is run, and ``--output`` (a folder) receives the COCO results
``coco_instances_results.json`` (``image_id`` of the json, ``category_id`` of the
metadata's ``category_ids``, ``bbox`` [x, y, w, h] in the image's pixels, ``score``: every
detection the graph returns, as ``--eval-only`` writes them) and, when pycocotools is
installed, ``eval_results.json`` (the box AP of pycocotools' ``COCOeval``, with the keys
of ``train_net.py``'s: ``bbox/AP``, ``bbox/AP50``, ..., ``bbox/AP-<class>``); the standard
AP table and a one-line summary are printed. Where the project itself is importable (its
environment), the slender-object AP of each aspect-ratio band joins them as
``train_net.py --eval-only`` reports it (``bbox/AP@ar>=3``, ...; bands of
``--aspect-ratio-edges``, default ``TEST.ASPECT_RATIO_EDGES``' 3; docs/slender-ap.md);
elsewhere one line says it is left out. A file without ``category_ids`` and a json
whose categories are not the model's are refused before any image is run.

    python tools/onnx_inference.py output/quick/lada/export/model.onnx \\
        --dataset synthetic_val datasets/synthetic/annotations/val.json \\
        datasets/synthetic/val --output onnx_eval/
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

RESULTS = "coco_instances_results.json"  # the name detectron2's COCOEvaluator and predict.py write
EVAL_RESULTS = "eval_results.json"  # the name train_net.py --eval-only writes
# COCOeval.stats indices of detectron2's box metrics (COCOEvaluator._derive_coco_results)
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def read_metadata(session: onnxruntime.InferenceSession) -> Dict:
    """The export's description that tools/export_model.py put in the file
    (``thing_classes`` and ``category_ids`` are None when unknown, and in files exported
    before they were written)."""
    metadata = session.get_modelmeta().custom_metadata_map
    if "input" not in metadata:
        raise ValueError("the ONNX file has no 'input' metadata: export it with tools/export_model.py")
    description = {key: json.loads(value) for key, value in metadata.items()}
    description.setdefault("thing_classes", None)
    description.setdefault("category_ids", None)
    return description


def describe_class(index: int, description: Dict) -> Dict:
    """``class`` (the index) and, when the metadata holds them, the class ``name`` and
    the dataset's ``category_id``."""
    fields: Dict = {"class": index}
    for key, values in (("name", description["thing_classes"]), ("category_id", description["category_ids"])):
        if values is not None and 0 <= index < len(values):
            fields[key] = values[index]
    return fields


def resized_size(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """detectron2's ``ResizeShortestEdge.get_output_shape``: (new height, new width)."""
    if min_size == 0:
        return height, width
    scale = min_size / min(height, width)
    new_height, new_width = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_height, new_width) > max_size:
        scale = max_size / max(new_height, new_width)
        new_height, new_width = new_height * scale, new_width * scale
    return int(new_height + 0.5), int(new_width + 0.5)


def prepare(path: str, description: Dict) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The image at ``path`` -> model input (1, 3, H', W') float32 and its own (H, W)."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    width, height = image.size
    resize = description["input"]["test_resize"]
    new_height, new_width = resized_size(height, width, resize["min_size"], resize["max_size"])
    if (new_height, new_width) != (height, width):
        image = image.resize((new_width, new_height), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    if description["input"]["channels"] == "BGR":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None]), (height, width)


def run(session: onnxruntime.InferenceSession, description: Dict,
        path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]:
    """Every detection of the image at ``path``: boxes (K, 4) XYXY in its own pixels,
    clipped to it, the empty ones dropped (as detectron2's ``detector_postprocess``),
    scores (K,) by decreasing score, class indices (K,), and the image's (H, W)."""
    images, (height, width) = prepare(path, description)
    boxes, scores, classes, _ = session.run(["boxes", "scores", "classes", "image_index"], {"images": images})
    boxes = boxes * np.array([width / images.shape[3], height / images.shape[2]] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], scores[keep], classes[keep], (height, width)


def detect(session: onnxruntime.InferenceSession, description: Dict, path: str, threshold: float) -> Dict:
    """Detections of the image at ``path`` with a score of at least ``threshold``, in
    its own pixels, by decreasing score."""
    boxes, scores, classes, (height, width) = run(session, description, path)
    keep = scores >= threshold
    return {
        "image": path,
        "height": height,
        "width": width,
        "detections": [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 5),
             **describe_class(int(cls), description)}
            for box, score, cls in zip(boxes[keep], scores[keep], classes[keep])
        ],
    }


def check_categories(categories: List[Dict], description: Dict, json_file: str) -> None:
    """The json's categories (by id, as detectron2 orders them into class indices) must be
    the model's: ``category_ids`` of the metadata, and its ``thing_classes`` when known."""
    ids, names = description["category_ids"], description["thing_classes"]
    if ids is None:
        raise ValueError(
            "the ONNX file's metadata has no category_ids (no dataset named its classes when it "
            "was exported), so its classes cannot be written as the json's categories: export "
            "it again with tools/export_model.py from the run's config.yaml, whose datasets name them")
    ordered = sorted(categories, key=lambda category: category["id"])
    json_ids, json_names = [c["id"] for c in ordered], [c.get("name") for c in ordered]
    if json_ids != list(ids) or (names is not None and json_names != list(names)):
        raise ValueError(
            f"the categories of {json_file} (ids {json_ids}, names {json_names}) are not the "
            f"model's (ONNX metadata: category_ids {list(ids)}, thing_classes {names}): "
            "evaluate on a dataset of the classes the model was trained on")


def read_dataset(json_file: str, image_root: str, description: Dict) -> Dict:
    """The COCO json, its categories checked against the model's and every image file
    found, before any image is run."""
    with open(json_file) as handle:
        try:
            coco = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{json_file} is not valid JSON: {error}") from None
    if not isinstance(coco, dict):
        raise ValueError(f"{json_file} is not a COCO json (an object with images, categories "
                         "and annotations)")
    for part, fields in (("categories", ("id", "name")), ("images", ("id", "file_name"))):
        entries = coco.get(part) or []
        broken = [i for i, e in enumerate(entries)
                  if not isinstance(e, dict) or any(f not in e for f in fields)]
        if broken:
            raise ValueError(f"{json_file}: {len(broken)} of its {part} lack "
                             f"{' or '.join(fields)} (the first: {part}[{broken[0]}])")
    check_categories(coco.get("categories") or [], description, json_file)
    if not coco.get("images"):
        raise ValueError(f"{json_file} has no images")
    missing = [image["file_name"] for image in coco["images"]
               if not os.path.isfile(os.path.join(image_root, image["file_name"]))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(coco['images'])} images of {json_file} are not under "
            f"{image_root} (the first: {missing[0]})")
    return coco


def coco_results(session: onnxruntime.InferenceSession, description: Dict, coco: Dict,
                 image_root: str, threshold: float) -> List[Dict]:
    """Every image's detections as COCO results, with the json's image ids and the
    metadata's category ids; an image whose size is not the json's is refused (its
    boxes would not be in the annotations' pixels), as detectron2 refuses it."""
    category_ids = description["category_ids"]
    results = []
    for image in coco["images"]:
        path = os.path.join(image_root, image["file_name"])
        boxes, scores, classes, (height, width) = run(session, description, path)
        if (image.get("height", height), image.get("width", width)) != (height, width):
            raise ValueError(
                f"{path} is {width} x {height} px (after its EXIF orientation) but the json "
                f"says {image.get('width')} x {image.get('height')}")
        keep = scores >= threshold
        for box, score, cls in zip(boxes[keep].tolist(), scores[keep].tolist(), classes[keep].tolist()):
            results.append({"image_id": image["id"], "category_id": category_ids[int(cls)],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                            "score": score})
    return results


def slender_bands(edges: List[float]):
    """The project's aspect-ratio bands of ``edges`` (``lada.evaluation.slender``), or None
    when the project cannot be imported here (a deployment environment) or ``edges`` is
    empty; bad edges raise ValueError before any image is run."""
    if not edges:
        return None
    try:
        from lada.evaluation.slender import aspect_ratio_bands
    except ImportError as error:
        print(f"no slender-object AP: the lada package is not importable ({error}); run in the "
              "project's environment for it")
        return None
    return aspect_ratio_bands(edges, key="--aspect-ratio-edges")


def coco_metrics(json_file: str, results: List[Dict], coco: Dict, bands=None) -> Dict[str, float]:
    """pycocotools' box evaluation of ``results``, printed as its standard table, as
    detectron2's ``COCOEvaluator`` gives it: ``AP``, ``AP50``, ... and ``AP-<class>`` in
    percent, NaN where undefined (every one when there is no ground-truth box or no
    detection); with ``bands`` (:func:`slender_bands`), each band's ``AP@<band>``, ...
    and ``AP-<class>@<band>`` as the project's ``SlenderCOCOEvaluator`` adds them."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c.get("name", str(c["id"])) for c in coco["categories"]}
    undefined = {**{key: math.nan for key in METRICS}, **{f"AP-{n}": math.nan for n in names.values()},
                 **{f"{key}@{band.label}": math.nan for band in bands or () for key in METRICS}}
    if not any(not a.get("iscrowd", 0) for a in coco.get("annotations") or []):
        print(f"{json_file} has no ground-truth box: its AP is not computed")
        return undefined
    if not results:
        print("no detection on any image: the AP is not computed")
        return undefined
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        ground_truth = COCO(json_file)
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    evaluation.summarize()  # the standard table
    metrics = {key: float(value * 100) if value >= 0 else math.nan
               for key, value in zip(METRICS, evaluation.stats)}
    # precision: (IoU thresholds, recall, category, area range, max detections)
    precision = evaluation.eval["precision"]
    for index, category_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, index, 0, -1]
        values = values[values > -1]
        metrics[f"AP-{names[category_id]}"] = float(values.mean() * 100) if values.size else math.nan
    if bands:
        from lada.evaluation.slender import evaluate_aspect_ratio_bands

        metrics.update(evaluate_aspect_ratio_bands(
            ground_truth, evaluation.cocoDt, bands, img_ids=evaluation.params.imgIds,
            max_dets=evaluation.params.maxDets, class_names=[names[i] for i in sorted(names)]))
    return metrics


def evaluate(session: onnxruntime.InferenceSession, description: Dict, args: argparse.Namespace) -> Dict:
    """``--dataset``: the COCO results of every image of the json and, with pycocotools,
    their box AP, written to ``args.output``; returns what ``eval_results.json`` holds."""
    name, json_file, image_root = args.dataset
    coco = read_dataset(json_file, image_root, description)
    has_pycocotools = importlib.util.find_spec("pycocotools") is not None
    bands = slender_bands(args.aspect_ratio_edges) if has_pycocotools else None
    start = time.perf_counter()
    results = coco_results(session, description, coco, image_root, args.threshold)
    seconds = time.perf_counter() - start
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, RESULTS), "w") as handle:
        json.dump(results, handle)
    done = {
        "model": args.model,
        "datasets": {name: {"images": len(coco["images"]), "annotations": len(coco.get("annotations") or [])}},
        "detections": len(results),
        "metrics": None,
    }
    counts = (f"{len(coco['images'])} images, {len(results)} detections, "
              f"{len(coco['images']) / max(seconds, 1e-9):.2f} images/s")
    if not has_pycocotools:  # optional: plain inference needs none
        print(f"{name}: {counts}; {RESULTS} in {args.output}; no AP: pycocotools is not installed "
              "(pip install pycocotools)")
        return done
    metrics = coco_metrics(json_file, results, coco, bands)
    done["metrics"] = {f"bbox/{key}": value if math.isfinite(value) else None for key, value in metrics.items()}
    with open(os.path.join(args.output, EVAL_RESULTS), "w") as handle:
        json.dump(done, handle, indent=1, allow_nan=False)
    ap = {key: f"{metrics[key]:.2f}" if math.isfinite(metrics[key]) else "undefined"
          for key in ("AP", "AP50", "AP75")}  # undefined: no ground-truth box or no detection
    print(f"{name}: bbox AP {ap['AP']} (AP50 {ap['AP50']}, AP75 {ap['AP75']}) "
          f"of {args.model} by onnxruntime; {counts}; {RESULTS} and {EVAL_RESULTS} in {args.output}")
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.onnx from tools/export_model.py --format onnx")
    parser.add_argument("images", nargs="*", help="image files (or --dataset)")
    parser.add_argument("--dataset", nargs=3, metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="evaluate on every image of this COCO-format dataset instead "
                             "(COCO results and, with pycocotools, the box AP, to --output)")
    parser.add_argument("--threshold", type=float, default=0.0, help="lowest score kept")
    parser.add_argument("--output", help="JSON file for every image's detections (with "
                                         "--dataset: the folder of the results and metrics)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--aspect-ratio-edges", type=float, nargs="*", default=[3.0], metavar="EDGE",
                        help="with --dataset: the slender-object AP bands, as TEST.ASPECT_RATIO_EDGES "
                             "(default 3; none: off); needs the project importable")
    return parser


def main(argv: Optional[List[str]] = None) -> Union[List[Dict], Dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset and args.images:
        parser.error("give image files or --dataset, not both")
    if args.dataset and not args.output:
        parser.error("--dataset needs --output, the folder for the results and metrics")
    if not args.dataset and not args.images:
        parser.error("give image files, or --dataset NAME JSON IMAGE_ROOT to evaluate")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    description = read_metadata(session)
    if args.dataset:
        return evaluate(session, description, args)
    results = []
    for path in args.images:
        result = detect(session, description, path, args.threshold)
        print(json.dumps(result))
        results.append(result)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"onnx_inference.py: {error}")
