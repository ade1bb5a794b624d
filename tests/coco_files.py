"""Small hand-written COCO-format datasets for the data-check and failure tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

Annotation = tuple  # (category_id, [x, y, w, h])


def write_coco(
    root: Path,
    images: Sequence[Sequence[Annotation]],
    *,
    size: int = 64,
    categories: Sequence[str] = ("a", "b"),
    category_ids: Sequence[int] | None = None,
) -> tuple[Path, Path]:
    """Writes ``root/images/img<i>.png`` (size x size noise) and ``root/train.json`` with
    one image per entry of ``images``, each holding the given (category_id, bbox)
    annotations; annotation ids count from 1 in order, category ids from 1 (or those of
    ``category_ids``, one per category). Non-finite
    coordinates are written as json's NaN / Infinity (which pycocotools reads).
    Returns (json file, image folder)."""
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i, "name": n} for i, n in zip(
                category_ids or range(1, len(categories) + 1), categories, strict=True)]}
    for index, annotations in enumerate(images):
        file_name = f"img{index}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            image_dir / file_name)
        coco["images"].append({"id": index + 1, "file_name": file_name, "width": size, "height": size})
        for category, bbox in annotations:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": index + 1,
                "category_id": category, "bbox": list(bbox), "area": 1.0, "iscrowd": 0,
            })
    json_file = root / "train.json"
    json_file.write_text(json.dumps(coco))
    return json_file, image_dir


GOOD = [(1, [8, 8, 20, 30]), (2, [30, 20, 25, 12])]
