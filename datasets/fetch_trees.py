"""Fetch a small real-image detection dataset (tree crowns in aerial photographs) and
write it as COCO json + PNG tiles, for the "Train on your own data" example of the README.

Usage, from the repository root:  python datasets/fetch_trees.py [--root datasets/trees]

Source: the sample data shipped inside the ``deepforest`` wheel on PyPI (MIT licence,
Weecology; NEON airborne RGB images of Yellowstone, 10 cm per pixel, tree crowns
annotated by hand as Pascal VOC boxes). Only the wheel is downloaded (``pip download
--no-deps``, version and sha256 pinned below); nothing of deepforest is installed or run.

Two images of the same site are cut into tiles of about 400 px without overlap:
``2019_YELL_2_528000_4978000_image_crop2`` (2299 x 2472 px, 574 trees) into 6 x 6 tiles
for training, ``2019_YELL_2_541000_4977000_image_crop`` (1249 x 1035 px, 279 trees) into
3 x 3 tiles for validation. A box cut by a tile border is kept, clipped to the tile, when
at least half of its area lies in the tile, and dropped otherwise. One category, ``tree``.

Output:  ROOT/{train,val}/*.png, ROOT/annotations/{train,val}.json. The download is kept
in ROOT/download/ (reused when present and intact).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

WHEEL = "deepforest-2.1.0-py3-none-any.whl"
REQUIREMENT = "deepforest==2.1.0"
WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
# split -> (image stem inside deepforest/data/, tiles across, tiles down)
SPLITS = {
    "train": ("2019_YELL_2_528000_4978000_image_crop2", 6, 6),
    "val": ("2019_YELL_2_541000_4977000_image_crop", 3, 3),
}
MIN_VISIBLE = 0.5  # fraction of a box's area that must lie in a tile to keep it there


def download_wheel(folder: Path) -> Path:
    """The pinned deepforest wheel in ``folder`` (downloaded by pip unless already there)."""
    wheel = folder / WHEEL
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "-d", str(folder), REQUIREMENT],
            check=True,
        )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}; delete it and retry")
    return wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_voc_boxes(xml_text: bytes) -> np.ndarray:
    """(N, 4) float XYXY boxes of a Pascal VOC annotation file."""
    boxes = [
        [float(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        for obj in ET.fromstring(xml_text).iter("object")
    ]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def tile_edges(length: int, parts: int) -> np.ndarray:
    """(parts + 1,) integer edges splitting ``length`` pixels into nearly equal parts."""
    return np.round(np.linspace(0, length, parts + 1)).astype(int)


def tile_boxes(boxes: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(M, 4) boxes of ``boxes`` (N, 4) XYXY in the tile [x0, x1) x [y0, y1), clipped to it
    and shifted to its origin; kept when at least MIN_VISIBLE of the area is inside."""
    clipped = np.stack([
        boxes[:, 0].clip(x0, x1), boxes[:, 1].clip(y0, y1),
        boxes[:, 2].clip(x0, x1), boxes[:, 3].clip(y0, y1),
    ], axis=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = inside >= MIN_VISIBLE * area
    return clipped[keep] - np.array([x0, y0, x0, y0], dtype=np.float64)


def write_split(root: Path, split: str, image: Image.Image, boxes: np.ndarray, across: int,
                down: int) -> dict:
    """Cuts ``image`` into across x down tiles, saves them under ROOT/<split>/ and
    returns the COCO dict of the split."""
    (root / split).mkdir(parents=True, exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "tree"}]}
    xs, ys = tile_edges(image.width, across), tile_edges(image.height, down)
    for row in range(down):
        for col in range(across):
            x0, x1, y0, y1 = xs[col], xs[col + 1], ys[row], ys[row + 1]
            file_name = f"{split}_r{row}_c{col}.png"
            image.crop((x0, y0, x1, y1)).save(root / split / file_name)
            image_id = len(coco["images"]) + 1
            coco["images"].append(
                {"id": image_id, "file_name": file_name, "width": int(x1 - x0), "height": int(y1 - y0)})
            for bx0, by0, bx1, by1 in tile_boxes(boxes, x0, y0, x1, y1):
                w, h = bx1 - bx0, by1 - by0
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                    "bbox": [bx0, by0, w, h], "area": w * h, "iscrowd": 0,
                })
    return coco


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / "trees",
                        help="output directory (default: datasets/trees next to this script)")
    args = parser.parse_args(argv)
    wheel = download_wheel(args.root / "download")
    (args.root / "annotations").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for split, (stem, across, down) in SPLITS.items():
            with archive.open(f"deepforest/data/{stem}.png") as f:
                image = Image.open(f).convert("RGB")
            boxes = read_voc_boxes(archive.read(f"deepforest/data/{stem}.xml"))
            coco = write_split(args.root, split, image, boxes, across, down)
            (args.root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
            print(f"{split}: {len(coco['images'])} tiles, {len(coco['annotations'])} trees "
                  f"(of {len(boxes)} in {stem}) -> {args.root / split}")


if __name__ == "__main__":
    main()
