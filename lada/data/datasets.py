"""Registration of COCO-format datasets by name, from the command line or the config.

Registration is lazy, as detectron2's catalog: it records where a dataset's files are and
checks nothing on disk, so a config may register datasets a run does not use (the quick
configs register the embedded dataset). The files are checked when the dataset is loaded,
i.e. at the start of a run that uses it, with the same messages naming the dataset.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .errors import DatasetError

__all__ = ["load_coco_dataset", "register_coco_dataset", "register_coco_datasets"]

logger = logging.getLogger(__name__)


def load_coco_dataset(name: str, json_file: Path, image_root: Path) -> list[dict]:
    """detectron2's ``load_coco_json`` for the registered dataset ``name``, keeping each
    annotation's json ``id`` (so that the data checks can name it); a missing file or an
    invalid json is reported with the dataset's name and the file."""
    if not json_file.is_file():
        raise FileNotFoundError(f"dataset '{name}': annotation file {json_file} does not exist")
    if not image_root.is_dir():
        raise FileNotFoundError(f"dataset '{name}': image folder {image_root} does not exist")
    try:
        return load_coco_json(str(json_file), str(image_root), name, extra_annotation_keys=["id"])
    except Exception as error:  # json syntax, unknown category id, duplicate ids, ...
        raise DatasetError(
            f"dataset '{name}': cannot load {json_file}: {type(error).__name__}: {error}"
        ) from error


def register_coco_dataset(name: str, json_file: str | Path, image_root: str | Path) -> None:
    """Registers a COCO-format detection dataset (json + image folder) under ``name``,
    so that ``DATASETS.TRAIN`` / ``DATASETS.TEST`` can name it (relative paths are taken
    from the working directory). Registering the same name with the same files again does
    nothing; with other files it is refused."""
    json_file, image_root = Path(json_file).resolve(), Path(image_root).resolve()
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
    DatasetCatalog.register(name, lambda: load_coco_dataset(name, json_file, image_root))
    MetadataCatalog.get(name).set(
        json_file=str(json_file), image_root=str(image_root), evaluator_type="coco"
    )
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
