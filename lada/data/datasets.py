"""Registration of COCO-format datasets by name, from the command line or the config."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

__all__ = ["register_coco_dataset", "register_coco_datasets"]

logger = logging.getLogger(__name__)


def register_coco_dataset(name: str, json_file: str | Path, image_root: str | Path) -> None:
    """Registers a COCO-format detection dataset (json + image folder) under ``name``,
    so that ``DATASETS.TRAIN`` / ``DATASETS.TEST`` can name it. Registering the same
    name with the same files again does nothing."""
    json_file, image_root = Path(json_file).resolve(), Path(image_root).resolve()
    if not json_file.is_file():
        raise FileNotFoundError(f"dataset '{name}': annotation file {json_file} does not exist")
    if not image_root.is_dir():
        raise FileNotFoundError(f"dataset '{name}': image folder {image_root} does not exist")
    if name in DatasetCatalog.list():
        known = MetadataCatalog.get(name)
        same = Path(known.get("json_file", "")) == json_file and Path(
            known.get("image_root", "")
        ) == image_root
        if same:
            return
        raise ValueError(
            f"dataset '{name}' is already registered (json_file={known.get('json_file')}, "
            f"image_root={known.get('image_root')}); choose another name"
        )
    register_coco_instances(name, {}, str(json_file), str(image_root))
    logger.info("registered dataset '%s': %s, images in %s", name, json_file, image_root)


def register_coco_datasets(entries: Iterable[Sequence[str]]) -> None:
    """Registers every ``[name, json_file, image_root]`` entry (``DATASETS.REGISTER_COCO``
    or ``train_net.py --dataset``)."""
    for entry in entries:
        if len(entry) != 3:
            raise ValueError(
                f"a dataset to register needs [name, json_file, image_root], got {list(entry)}"
            )
        register_coco_dataset(*entry)
