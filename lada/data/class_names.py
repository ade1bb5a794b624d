"""The names of a model's classes, for the tools that show or ship its detections
(``tools/predict.py`` draws and writes them, ``tools/export_model.py`` puts them in
``export.json`` and the ONNX metadata).

A detectron2 model knows its classes by contiguous index only (``0 .. NUM_CLASSES - 1``);
their names (``thing_classes``) and the dataset's category ids
(``thing_dataset_id_to_contiguous_id``) are in the metadata of the dataset it was trained
or tested on, which a COCO json fills when it is loaded.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog

from .datasets import register_coco_dataset
from .errors import DatasetError

__all__ = ["class_fields", "class_metadata"]

logger = logging.getLogger(__name__)


def class_metadata(cfg: CfgNode, dataset: Optional[str] = None) -> Optional[Metadata]:
    """The metadata whose ``thing_classes`` name the ``MODEL.FCOS.NUM_CLASSES`` classes of
    ``cfg``'s model: that of ``dataset`` (e.g. the dataset a tool runs on), else of the
    config's first ``DATASETS.TEST``, then ``DATASETS.TRAIN`` dataset that loads and has
    as many categories as the model has classes; None when none does (each dataset passed
    over is logged as a warning).

    A dataset is loaded only when its metadata has no ``thing_classes`` yet (loading a
    COCO json fills them; detectron2's builtin COCO names have them without loading). A
    dataset of ``DATASETS.REGISTER_COCO`` that is not registered yet is registered first."""
    num_classes = cfg.MODEL.FCOS.NUM_CLASSES
    candidates = [dataset] if dataset is not None else []
    candidates += [n for n in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN) if n not in candidates]
    for name in candidates:
        try:
            metadata = _loaded_metadata(name, cfg.DATASETS.REGISTER_COCO)
        except (KeyError, OSError, ValueError, DatasetError) as error:
            reason = error.args[0] if isinstance(error, KeyError) and error.args else error
            logger.warning("class names: cannot load dataset '%s': %s", name, reason)
            continue
        count = len(metadata.get("thing_classes", ()))
        if count == num_classes:
            return metadata
        logger.warning("class names: dataset '%s' has %d categories, the model %d classes",
                       name, count, num_classes)
    return None


def class_fields(metadata: Optional[Metadata]) -> dict[str, Any]:
    """What a shipped model says of its classes (``export.json``, the ONNX metadata):
    ``thing_classes``, the name of each class index (None when unknown), and
    ``category_ids``, the dataset's category id of each class index (what COCO results
    hold as ``category_id``; None when the dataset maps none)."""
    names = None if metadata is None else metadata.get("thing_classes", None)
    mapping = None if metadata is None else metadata.get("thing_dataset_id_to_contiguous_id", None)
    category_ids = None
    if names is not None and mapping:
        to_dataset = {contiguous: dataset_id for dataset_id, contiguous in mapping.items()}
        if all(index in to_dataset for index in range(len(names))):
            category_ids = [int(to_dataset[index]) for index in range(len(names))]
    return {"thing_classes": None if names is None else list(names), "category_ids": category_ids}


def _loaded_metadata(name: str, registrations: Iterable[Any]) -> Metadata:
    """The metadata of dataset ``name``, registered from ``registrations`` if needed and
    loaded if it names no classes yet; KeyError when it is not registered."""
    if name not in DatasetCatalog.list():
        entry = next((e for e in registrations if e[0] == name), None)
        if entry is None:
            raise KeyError("not registered (not in DATASETS.REGISTER_COCO)")
        register_coco_dataset(*entry)
    metadata = MetadataCatalog.get(name)
    if not metadata.get("thing_classes", None):
        DatasetCatalog.get(name)  # load_coco_json fills the metadata
    return metadata
