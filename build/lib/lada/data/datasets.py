"""Registration of COCO-format datasets by name, from the command line or the config.

Registration is lazy, as detectron2's catalog: it records where a dataset's files are and
checks nothing on disk, so a config may register datasets a run does not use (the quick
configs register the embedded dataset). The files are checked when the dataset is loaded,
i.e. at the start of a run that uses it, with the same messages naming the dataset.

Two things of the json itself are handled before detectron2's ``load_coco_json`` indexes
it (pycocotools would lose them silently):

* Image ids must be unique: pycocotools keeps one image per id, so the annotations of the
  others would go to it. A repeated id is an error naming the id and the image files.
* A segmentation that is no polygon of at least 3 points (``[[]]``, a 4-number box, as
  detection-only exports write) is ignored with one counted warning, keeping the box:
  detectron2 would drop the whole annotation, and a box detector uses no masks.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence
from unittest import mock

import pycocotools.coco
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .errors import DatasetError

__all__ = ["load_coco_dataset", "register_coco_dataset", "register_coco_datasets"]

logger = logging.getLogger(__name__)


_EXAMPLES = 3  # offending entries named per message


def load_coco_dataset(
    name: str, json_file: Path, image_root: Path, warn: bool = True
) -> list[dict]:
    """detectron2's ``load_coco_json`` for the registered dataset ``name``, keeping each
    annotation's json ``id`` (so that the data checks can name it); a missing file or an
    invalid json is reported with the dataset's name and the file. Repeated image ids are
    refused and invalid segmentations ignored (module docstring); ``warn``: log how many
    were ignored (False when an earlier load did)."""
    if not json_file.is_file():
        raise FileNotFoundError(f"dataset '{name}': annotation file {json_file} does not exist")
    if not image_root.is_dir():
        raise FileNotFoundError(f"dataset '{name}': image folder {image_root} does not exist")
    indexes: list[_CheckedCOCO] = []

    def checked_coco(annotation_file: str) -> _CheckedCOCO:
        indexes.append(_CheckedCOCO(annotation_file))
        return indexes[-1]

    try:
        with mock.patch.object(pycocotools.coco, "COCO", checked_coco):  # load_coco_json's
            dicts = load_coco_json(
                str(json_file), str(image_root), name, extra_annotation_keys=["id"]
            )
    except Exception as error:  # json syntax, unknown category id, duplicate ids, ...
        raise DatasetError(
            f"dataset '{name}': cannot load {json_file}: {type(error).__name__}: {error}"
        ) from error
    ignored = indexes[0].ignored_segmentations if indexes else []
    if ignored and warn:
        images = {image["id"]: image.get("file_name") for image in indexes[0].dataset["images"]}
        logger.warning(
            "dataset '%s' (%s): ignored the segmentation of %d of %d annotations (no polygon "
            "of >= 3 points); their boxes are kept, as the detector uses no masks. E.g. %s",
            name, json_file, len(ignored), len(indexes[0].dataset["annotations"]),
            "; ".join(
                f"annotation id {a.get('id')} in image "
                f"{os.path.basename(str(images.get(a.get('image_id'))))}: {segmentation}"
                for a, segmentation in ignored[:_EXAMPLES]
            ),
        )
    return dicts


class _CheckedCOCO(pycocotools.coco.COCO):
    """pycocotools' index of a COCO json, built after refusing repeated image ids and
    removing segmentations that are no polygon of >= 3 points; ``ignored_segmentations``
    lists (annotation, its original segmentation) for each annotation so changed."""

    def createIndex(self) -> None:  # noqa: N802  (pycocotools' name)
        self.ignored_segmentations = []
        if "images" in self.dataset:
            _check_unique_image_ids(self.dataset["images"])
        for annotation in self.dataset.get("annotations", ()):
            segmentation = annotation.get("segmentation")
            if isinstance(segmentation, list) and segmentation:
                polygons = [p for p in segmentation if _is_polygon(p)]
                if polygons:
                    annotation["segmentation"] = polygons
                else:
                    del annotation["segmentation"]
                    self.ignored_segmentations.append((annotation, segmentation))
        super().createIndex()


def _is_polygon(polygon) -> bool:
    """What detectron2's load_coco_json keeps: a flat list of >= 3 (x, y) points."""
    return isinstance(polygon, list) and len(polygon) % 2 == 0 and len(polygon) >= 6


def _check_unique_image_ids(images: list[dict]) -> None:
    repeated = [i for i, n in Counter(image.get("id") for image in images).items() if n > 1]
    if not repeated:
        return
    examples = []
    for image_id in repeated[:_EXAMPLES]:
        files = [str(image.get("file_name")) for image in images if image.get("id") == image_id]
        examples.append(f"image id {image_id!r} is used by {', '.join(files)}")
    raise ValueError(
        f"{len(repeated)} image id(s) are used by more than one image, so pycocotools would "
        f"keep one image per id and give it the others' annotations: {'; '.join(examples)}. "
        "Give each image its own id."
    )


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
    DatasetCatalog.register(name, _CocoLoader(name, json_file, image_root))
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


class _CocoLoader:
    """The catalog loader of a registered COCO dataset; it warns at its first load only
    (a test set is loaded at start-up and again at every evaluation)."""

    def __init__(self, name: str, json_file: Path, image_root: Path):
        self.name, self.json_file, self.image_root = name, json_file, image_root
        self._warned = False

    def __call__(self) -> list[dict]:
        dicts = load_coco_dataset(self.name, self.json_file, self.image_root, warn=not self._warned)
        self._warned = True
        return dicts
