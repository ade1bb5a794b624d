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
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnxruntime
from PIL import Image, ImageOps


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


def detect(session: onnxruntime.InferenceSession, description: Dict, path: str, threshold: float) -> Dict:
    """Detections of the image at ``path`` with a score of at least ``threshold``, in
    its own pixels, by decreasing score."""
    images, (height, width) = prepare(path, description)
    boxes, scores, classes, _ = session.run(["boxes", "scores", "classes", "image_index"], {"images": images})
    boxes = boxes * np.array([width / images.shape[3], height / images.shape[2]] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= threshold)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.onnx from tools/export_model.py --format onnx")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--threshold", type=float, default=0.0, help="lowest score kept")
    parser.add_argument("--output", help="JSON file for every image's detections")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    return parser


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    args = build_parser().parse_args(argv)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    description = read_metadata(session)
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
