#!/usr/bin/env python
"""Draw a dataset's images with their GT boxes and class names, as they are or as training
sees them (after the training augmentation), to check the data before training.

    # a COCO json + image folder, the first 10 images as they are
    python tools/browse_dataset.py --dataset trees_train datasets/trees/annotations/train.json \\
        datasets/trees/train --output browse/trees
    # as training sees them: the own-data recipe's sizes, flips and colour jitter
    python tools/browse_dataset.py --dataset trees_train datasets/trees/annotations/train.json \\
        datasets/trees/train --augment --num 20 --output browse/trees_augmented
    # a dataset a config or a run's config.yaml registers, with that config's augmentation
    python tools/browse_dataset.py --config-file configs/quick/lada.yaml --name synthetic_train \\
        --augment --output browse/synthetic

The dataset drawn is ``--name``, else the first ``--dataset``, else the config's first
``DATASETS.TRAIN``; it becomes the config's ``DATASETS.TRAIN`` unless the overrides set
it. The config (default ``configs/quick/own_data.yaml``) is built as ``train_net.py``
builds it (:func:`lada.engine.build_cfg`), so with the own-data recipe the sizes are those
it chooses from that dataset, and the dataset goes through the run's data checks (bad
boxes handled as ``DATASETS.BAD_BOX_POLICY`` says). ``--augment`` maps each image with the
training mapper (``ReadCheckedDatasetMapper``: detectron2's resize and flip, then
``INPUT.EXTRA_AUGMENTATIONS``) and draws the boxes it returns; without it, the image file
and the json boxes. Drawn with detectron2's ``Visualizer``; written to ``--output`` under
the images' names (relative to the dataset's image folder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

import lada  # noqa: F401  (prepares detectron2, registers the model and matchers)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.utils.env import seed_all_rng
from detectron2.utils.visualizer import Visualizer
from lada.data import ReadCheckedDatasetMapper
from lada.data.output_paths import mirrored_output_path
from lada.engine import add_dataset_argument, build_cfg, register_datasets

DEFAULT_CONFIG = "configs/quick/own_data.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(Path(__file__).resolve().parent.parent
                                                     / DEFAULT_CONFIG), metavar="FILE",
                        help=f"config (default {DEFAULT_CONFIG}: the own-data recipe)")
    add_dataset_argument(parser)
    parser.add_argument("--name", help="the dataset to draw (default: the first --dataset, "
                        "else the config's first DATASETS.TRAIN)")
    parser.add_argument("--augment", action="store_true",
                        help="draw each image after the config's training augmentation")
    parser.add_argument("--num", type=int, default=10,
                        help="images drawn, the dataset's first (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentation's draws")
    parser.add_argument("--scale", type=float, default=1.0, help="size of the drawings (default 1)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the drawings")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    return parser


def draw_as_annotated(record: dict, metadata, scale: float) -> tuple[np.ndarray, int]:
    """The image file with the record's json boxes and class names; (drawing (H, W, 3)
    RGB uint8, number of boxes)."""
    visualizer = Visualizer(read_image(record["file_name"], format="RGB"), metadata, scale=scale)
    drawing = visualizer.draw_dataset_dict(record).get_image()
    return drawing, len(record.get("annotations", ()))


def draw_as_trained(mapped: dict, metadata, image_format: str, scale: float) -> tuple[np.ndarray, int]:
    """The training mapper's image ``mapped["image"]`` (3, H, W) in ``image_format`` with
    its GT boxes and class names; (drawing (H, W, 3) RGB uint8, number of boxes)."""
    image = convert_image_to_rgb(mapped["image"].permute(1, 2, 0).numpy(), image_format)
    instances = mapped["instances"]
    names = metadata.get("thing_classes", None)
    labels = [names[c] if names else str(c) for c in instances.gt_classes.tolist()]
    visualizer = Visualizer(image, metadata, scale=scale)
    drawing = visualizer.overlay_instances(boxes=instances.gt_boxes, labels=labels).get_image()
    return drawing, len(instances)


def browse(argv: Optional[Sequence[str]] = None) -> dict:
    """Draws the images; returns what it printed: dataset, images drawn, boxes, sizes."""
    args = build_parser().parse_args(argv)
    if args.num < 1:
        raise SystemExit(f"--num must be at least 1, got {args.num}")
    if not args.scale > 0:
        raise SystemExit(f"--scale must be positive, got {args.scale}")
    name = args.name or (args.dataset[0][0] if args.dataset else None)
    opts = list(args.opts)
    if name and "DATASETS.TRAIN" not in opts[0::2]:
        opts += ["DATASETS.TRAIN", repr((name,))]
    cfg, recipe = build_cfg(args.config_file, opts, args.dataset)
    register_datasets(cfg, args)
    name = name or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
    if name not in DatasetCatalog.list():
        raise SystemExit(f"dataset {name!r} is not registered: give --dataset NAME JSON IMAGES, or "
                         f"--name one of {', '.join(sorted(DatasetCatalog.list()))}")
    records = DatasetCatalog.get(name)
    metadata = MetadataCatalog.get(name)
    mapper = ReadCheckedDatasetMapper(cfg, True, dataset_names=(name,)) if args.augment else None
    seed_all_rng(args.seed)
    drawn, boxes, sizes = 0, 0, set()
    for record in records[:args.num]:
        if mapper is not None:
            mapped = mapper(dict(record))
            if mapped is None:  # unreadable, skipped by DATASETS.IMAGE_READ_POLICY
                continue
            drawing, count = draw_as_trained(mapped, metadata, cfg.INPUT.FORMAT, args.scale)
            sizes.add(tuple(mapped["image"].shape[1:]))
        else:
            drawing, count = draw_as_annotated(record, metadata, args.scale)
        target = mirrored_output_path(args.output, metadata.get("image_root", None), record["file_name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawing).save(target)
        drawn, boxes = drawn + 1, boxes + count
    if recipe is not None and args.augment:
        print("\n".join(recipe.lines))
    how = (f"after the training augmentation, sizes (H, W) {sorted(sizes)}" if args.augment
           else "as annotated")
    print(f"dataset '{name}': {drawn} of {len(records)} images drawn {how}, {boxes} GT boxes "
          f"-> {args.output}")
    return {"dataset": name, "images": drawn, "boxes": boxes, "sizes": sorted(sizes)}


if __name__ == "__main__":
    browse()
