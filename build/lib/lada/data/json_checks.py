"""Checks that a dataset's records are well-formed data, before their boxes and classes
are judged (:mod:`lada.data.box_checks`): what a COCO json can hold that is no dataset.

* A dataset without images is an error (detectron2 finds an empty test set only after
  training).
* A box must be 4 json numbers: strings (``"10"``), which numpy would convert here and
  detectron2's ``Boxes`` would reject at the first iteration, are an error naming them;
  so is a ``bbox_mode`` other than XYWH_ABS and XYXY_ABS.
* :func:`check_test_categories`: each test set must have the training set's categories
  at the same class indices, or the evaluation would score the model's classes against
  other categories.

:func:`annotation_table` reads the records' annotations into arrays (refusing malformed
boxes); :func:`dataset_title` and :func:`annotation_name` name a dataset and an
annotation in the messages of both modules.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

from .errors import DatasetError

__all__ = [
    "EXAMPLES",
    "AnnotationTable",
    "annotation_name",
    "annotation_table",
    "check_has_images",
    "check_test_categories",
    "dataset_title",
]

EXAMPLES = 3  # offending entries named per message


@dataclass
class AnnotationTable:
    """All annotations of a dataset as arrays (A annotations, in record order)."""

    annotations: list[dict]  # (A,) the annotation dicts themselves
    boxes: np.ndarray  # (A, 4) float64, XYWH_ABS
    image_sizes: np.ndarray  # (A, 2) float64, (width, height), NaN if unknown
    classes: np.ndarray  # (A,) int64
    crowd: np.ndarray  # (A,) bool
    record: np.ndarray  # (A,) int64, index of the annotation's record
    counts: np.ndarray  # (num_records,) int64, annotations per record

    def kept(self, keep: np.ndarray) -> "AnnotationTable":
        """The table of the annotations where ``keep`` (A,) is True."""
        return AnnotationTable(
            annotations=[a for a, k in zip(self.annotations, keep) if k],
            boxes=self.boxes[keep], image_sizes=self.image_sizes[keep],
            classes=self.classes[keep], crowd=self.crowd[keep], record=self.record[keep],
            counts=np.bincount(self.record[keep], minlength=len(self.counts)),
        )


def annotation_table(name: str, dicts: list[dict]) -> AnnotationTable:
    """The annotations of dataset ``name``'s records (detectron2's dataset dicts) as arrays;
    raises :class:`DatasetError` naming the annotation for a bbox that is not 4 numbers
    and for an unsupported ``bbox_mode``."""
    annotations = [a for r in dicts for a in r.get("annotations", ())]
    counts = np.array([len(r.get("annotations", ())) for r in dicts], dtype=np.int64)
    record = np.repeat(np.arange(len(dicts)), counts)
    sizes = np.array(
        [(r.get("width", np.nan), r.get("height", np.nan)) for r in dicts], dtype=np.float64
    ).reshape(-1, 2)
    table = AnnotationTable(
        annotations=annotations,
        boxes=np.zeros((0, 4)),
        image_sizes=sizes[record],
        classes=np.array([a.get("category_id", -1) for a in annotations], dtype=np.int64),
        crowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
        record=record,
        counts=counts,
    )
    table.boxes = _boxes_xywh(name, dicts, table)
    return table


def _boxes_xywh(name: str, dicts: list[dict], table: AnnotationTable) -> np.ndarray:
    """(A, 4) float64 XYWH boxes of the table's annotations (XYWH_ABS or XYXY_ABS)."""
    raw = [a.get("bbox") for a in table.annotations]
    try:
        boxes = np.array(raw, dtype=np.float64).reshape(len(raw), -1 if raw else 4)
        if boxes.shape[1] != 4:
            raise ValueError
    except (TypeError, ValueError):
        i = next(i for i, box in enumerate(raw) if not _is_box(box))
        raise DatasetError(
            f"{dataset_title(name)}: {annotation_name(dicts, table, i)} has bbox {raw[i]!r}; a box "
            "is 4 numbers"
        ) from None
    if raw and np.array(raw).dtype.kind not in "iuf":  # numpy converted strings or bools
        bad = [i for i, box in enumerate(raw) if not all(map(_is_number, box))]
        examples = "; ".join(
            f"{annotation_name(dicts, table, i)}: {raw[i]!r}" for i in bad[:EXAMPLES]
        )
        raise DatasetError(
            f"{dataset_title(name)}: {len(bad)} bbox(es) hold values that are not numbers (strings "
            f"such as \"10\" are not converted), e.g. {examples}; write the coordinates as "
            "json numbers"
        )
    modes = np.array(
        [int(a.get("bbox_mode", BoxMode.XYWH_ABS)) for a in table.annotations], dtype=np.int64
    )
    unsupported = ~np.isin(modes, [int(BoxMode.XYWH_ABS), int(BoxMode.XYXY_ABS)])
    if unsupported.any():
        i = int(np.flatnonzero(unsupported)[0])
        raise DatasetError(
            f"{dataset_title(name)}: {annotation_name(dicts, table, i)} has bbox_mode "
            f"{BoxMode(int(modes[i])).name}; the checks handle XYWH_ABS and XYXY_ABS"
        )
    xyxy = modes == int(BoxMode.XYXY_ABS)
    boxes[xyxy, 2:] -= boxes[xyxy, :2]
    return boxes


def _is_box(value) -> bool:
    try:
        return np.array(value, dtype=np.float64).shape == (4,)
    except (TypeError, ValueError):
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_has_images(name: str, dicts: list[dict], training: bool) -> None:
    """Raises :class:`DatasetError` when dataset ``name`` has no records (detectron2 would
    find an empty test set only after training)."""
    if not dicts:
        role = "trained on (DATASETS.TRAIN)" if training else "evaluated on (DATASETS.TEST)"
        raise DatasetError(f"{dataset_title(name)} has no images, but the run is to be {role} it")


def check_test_categories(train_names: Sequence[str], test_names: Sequence[str]) -> None:
    """Raises :class:`DatasetError` naming both datasets when a loaded test set's
    categories (detectron2's ``thing_classes``, in class-index order, i.e. by json id)
    differ from the first loaded training set's: the model's class index i is the
    training set's i-th category, and ``COCOEvaluator`` maps it to the test set's i-th.
    The same names under other ids in the same order are fine. Datasets whose metadata
    has no categories yet (not loaded, as the training sets of ``--eval-only``) are
    skipped."""
    trained = [n for n in train_names if MetadataCatalog.get(n).get("thing_classes") is not None]
    if not trained:
        return
    train_classes = MetadataCatalog.get(trained[0]).thing_classes
    for name in test_names:
        test_classes = MetadataCatalog.get(name).get("thing_classes")
        if test_classes is None or list(test_classes) == list(train_classes):
            continue
        differ = [
            f"class index {i} is '{a}' in training and '{b}' in the test set"
            for i, (a, b) in enumerate(zip(train_classes, test_classes)) if a != b
        ][:EXAMPLES]
        if len(test_classes) != len(train_classes):
            differ.append(
                f"{len(train_classes)} categories in training, {len(test_classes)} in the test set"
            )
        raise DatasetError(
            f"test {dataset_title(name)} does not have the categories of training "
            f"{dataset_title(trained[0])} at the same class indices: {'; '.join(differ)}. "
            f"Categories (json id: name): training {_categories(trained[0])}; test "
            f"{_categories(name)}. The evaluation would score the model's classes against "
            "other categories: give the test json the training json's categories."
        )


def _categories(name: str) -> str:
    meta = MetadataCatalog.get(name)
    to_json = {v: k for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
    return "{" + ", ".join(
        f"{to_json.get(i, '?')}: {c!r}" for i, c in enumerate(meta.thing_classes)
    ) + "}"


def dataset_title(name: str) -> str:
    """"dataset 'name' (its json file)": how the messages name a dataset."""
    json_file = MetadataCatalog.get(name).get("json_file")
    return f"dataset '{name}'" + (f" ({json_file})" if json_file else "")


def annotation_name(dicts: list[dict], table: AnnotationTable, i: int) -> str:
    """'annotation id 7 in image a.png' (its position in the image if it has no id)."""
    rec = int(table.record[i])
    ann_id = table.annotations[i].get("id")
    if ann_id is None:
        ann = f"annotation #{i - int(np.searchsorted(table.record, rec))} of image"
    else:
        ann = f"annotation id {ann_id} in image"
    image = dicts[rec].get("file_name", f"with image_id {dicts[rec].get('image_id')}")
    return f"{ann} {os.path.basename(str(image))}"
