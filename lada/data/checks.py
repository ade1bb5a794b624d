"""Checks of a dataset's annotations where they enter the project: once per load of every
dataset a run uses, vectorised over all its annotations.

* Boxes: each box is classified as non-finite, of negative size, of zero size, entirely
  outside its image, or good. What happens to a bad kind is its policy
  (``DATASETS.BAD_BOX_POLICY.<KIND>``): ``error`` stops with a message naming the dataset,
  the count and the first offending annotation ids and image files; ``drop_with_warning``
  removes those annotations and logs the same. Without these checks detectron2's mapper
  reflects negative-size boxes into valid ones, clips infinite ones to the image and drops
  the others silently (after the log's instance table has counted them).
* Classes: an annotation whose (contiguous) class index is not below
  ``MODEL.FCOS.NUM_CLASSES`` is an error: it would train as background in the focal loss
  while its box is regressed, or crash a matcher deep inside torch.
* Training datasets in which no image keeps an annotation are refused unless
  ``DATASETS.ALLOW_UNANNOTATED``: they would train the background class only.
* A box must be 4 json numbers: strings (``"10"``), which numpy would convert here and
  detectron2's ``Boxes`` would reject at the first iteration, are an error naming them.
* A dataset without images is an error (detectron2 finds an empty test set only after
  training).
* :func:`check_test_categories`: each test set must have the training set's categories
  at the same class indices, or the evaluation would score the model's classes against
  other categories.

:func:`install_dataset_checks` puts the checks into detectron2's ``DatasetCatalog`` for the
datasets of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` (lazily: nothing is loaded then), so
every consumer of the catalog (the training and test loaders) sees checked data.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .errors import DatasetError

__all__ = [
    "BOX_KINDS",
    "BOX_POLICIES",
    "DatasetChecks",
    "check_dataset",
    "check_test_categories",
    "classify_boxes",
    "install_dataset_check",
    "install_dataset_checks",
]

logger = logging.getLogger(__name__)

#: Kinds of bad boxes, in the order a box is classified (a box gets the first that applies),
#: each with its config key under ``DATASETS.BAD_BOX_POLICY`` and a description.
BOX_KINDS: dict[str, tuple[str, str]] = {
    "non_finite": ("NON_FINITE", "a NaN or infinite coordinate"),
    "negative_size": ("NEGATIVE_SIZE", "a negative width or height"),
    "zero_size": ("ZERO_SIZE", "zero width or height"),
    "out_of_image": ("OUT_OF_IMAGE", "no overlap with its image"),
}
BOX_POLICIES = ("error", "drop_with_warning")
_EXAMPLES = 3  # offending annotations named per kind


@dataclass(frozen=True)
class DatasetChecks:
    """What the checks of one dataset enforce.

    box_policy: kind of :data:`BOX_KINDS` -> "error" or "drop_with_warning".
    num_classes: class indices must lie in [0, num_classes) (``MODEL.FCOS.NUM_CLASSES``).
    training: whether the dataset is trained on (then it needs an annotated image).
    allow_unannotated: accept a training dataset without any annotated image.
    """

    box_policy: Mapping[str, str]
    num_classes: int
    training: bool
    allow_unannotated: bool = False

    def __post_init__(self) -> None:
        for kind, (key, _) in BOX_KINDS.items():
            policy = self.box_policy.get(kind)
            if policy not in BOX_POLICIES:
                raise ValueError(
                    f"DATASETS.BAD_BOX_POLICY.{key} must be one of {BOX_POLICIES}, got '{policy}'"
                )

    @classmethod
    def from_config(cls, cfg: CfgNode, training: bool) -> "DatasetChecks":
        policy = cfg.DATASETS.BAD_BOX_POLICY
        return cls(
            box_policy={kind: policy[key] for kind, (key, _) in BOX_KINDS.items()},
            num_classes=cfg.MODEL.FCOS.NUM_CLASSES,
            training=training,
            allow_unannotated=cfg.DATASETS.ALLOW_UNANNOTATED,
        )


def classify_boxes(boxes: np.ndarray, image_sizes: np.ndarray) -> dict[str, np.ndarray]:
    """Which boxes are bad, and how.

    Args:
        boxes: (A, 4) float, XYWH_ABS (COCO) boxes.
        image_sizes: (A, 2) float, width and height of each box's image; NaN if unknown
            (then the box is never "out_of_image").
    Returns:
        kind of :data:`BOX_KINDS` -> (A,) bool mask; the masks are disjoint.
    """
    finite = np.isfinite(boxes).all(axis=1)
    x, y, w, h = np.where(finite[:, None], boxes, 0.0).T
    negative = finite & ((w < 0) | (h < 0))
    zero = finite & ~negative & ((w == 0) | (h == 0))
    width, height = image_sizes.T
    with np.errstate(invalid="ignore"):  # NaN image sizes compare False
        outside = (x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0)
    return {
        "non_finite": ~finite,
        "negative_size": negative,
        "zero_size": zero,
        "out_of_image": finite & (w > 0) & (h > 0) & outside,
    }


@dataclass
class _AnnotationTable:
    """All annotations of a dataset as arrays (A annotations, in record order)."""

    annotations: list[dict]  # (A,) the annotation dicts themselves
    boxes: np.ndarray  # (A, 4) float64, XYWH_ABS
    image_sizes: np.ndarray  # (A, 2) float64, (width, height), NaN if unknown
    classes: np.ndarray  # (A,) int64
    crowd: np.ndarray  # (A,) bool
    record: np.ndarray  # (A,) int64, index of the annotation's record
    counts: np.ndarray  # (num_records,) int64, annotations per record

    def kept(self, keep: np.ndarray) -> "_AnnotationTable":
        """The table of the annotations where ``keep`` (A,) is True."""
        return _AnnotationTable(
            annotations=[a for a, k in zip(self.annotations, keep) if k],
            boxes=self.boxes[keep], image_sizes=self.image_sizes[keep],
            classes=self.classes[keep], crowd=self.crowd[keep], record=self.record[keep],
            counts=np.bincount(self.record[keep], minlength=len(self.counts)),
        )


def check_dataset(
    name: str, dicts: list[dict], checks: DatasetChecks, warn: bool = True
) -> list[dict]:
    """Checks the records of dataset ``name`` (detectron2's dataset dicts) and returns them
    with the annotations dropped by a ``drop_with_warning`` policy removed (in place).

    Raises :class:`DatasetError` naming the dataset, the count and the first offending
    annotations for the bad boxes of every ``error`` policy, for classes outside
    [0, num_classes) and for a training dataset without annotated images. ``warn``: log
    the drops and other warnings (False when they were logged at an earlier load)."""
    if not dicts:
        role = "trained on (DATASETS.TRAIN)" if checks.training else "evaluated on (DATASETS.TEST)"
        raise DatasetError(f"{_title(name)} has no images, but the run is to be {role} it")
    table = _annotation_table(name, dicts)
    kinds = classify_boxes(table.boxes, table.image_sizes)
    found = [kind for kind, mask in kinds.items() if mask.any()]
    errors = [kind for kind in found if checks.box_policy[kind] == "error"]
    if errors:
        raise DatasetError(
            f"{_title(name)}: bad boxes:\n  "
            + "\n  ".join(_describe(dicts, table, kinds[kind], kind, "error") for kind in errors)
            + "\nFix the annotations, or set the policy to drop_with_warning (docs/reliability.md,"
            " 'Data checks and failure behaviour')."
        )
    if found:
        if warn:
            logger.warning(
                "%s: dropped %d of %d boxes:\n  %s", _title(name),
                sum(int(kinds[kind].sum()) for kind in found), len(table.boxes),
                "\n  ".join(
                    _describe(dicts, table, kinds[kind], kind, checks.box_policy[kind])
                    for kind in found
                ),
            )
        keep = ~np.logical_or.reduce([kinds[kind] for kind in found])
        _drop_annotations(dicts, table, keep)
        table = table.kept(keep)
    _check_classes(name, dicts, table, checks.num_classes, warn)
    if checks.training:
        _check_annotated(name, table, checks.allow_unannotated, warn)
    return dicts


def install_dataset_checks(cfg: CfgNode) -> None:
    """Wraps the catalog loader of every registered dataset of ``DATASETS.TRAIN`` and
    ``DATASETS.TEST`` so that each load is checked with the config's policies. Loads
    nothing; a name that is not registered is left to the catalog's own error. Calling it
    again (another config in the same process) replaces the previous checks."""
    for name in dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]):
        install_dataset_check(
            name, DatasetChecks.from_config(cfg, training=name in cfg.DATASETS.TRAIN)
        )


def install_dataset_check(name: str, checks: DatasetChecks) -> None:
    """Wraps the catalog loader of dataset ``name`` so that each load is checked with
    ``checks`` (replacing earlier checks). A name that is not registered is left to the
    catalog's own error."""
    if name not in DatasetCatalog:
        return
    loader = DatasetCatalog[name]
    loader = getattr(loader, "unchecked", loader)
    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, _CheckedLoader(name, loader, checks))


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
        ][:_EXAMPLES]
        if len(test_classes) != len(train_classes):
            differ.append(f"{len(train_classes)} categories in training, {len(test_classes)} in the test set")
        raise DatasetError(
            f"test {_title(name)} does not have the categories of training {_title(trained[0])} "
            f"at the same class indices: {'; '.join(differ)}. Categories (json id: name): "
            f"training {_categories(trained[0])}; test {_categories(name)}. The evaluation "
            "would score the model's classes against other categories: give the test json "
            "the training json's categories."
        )


def _categories(name: str) -> str:
    meta = MetadataCatalog.get(name)
    to_json = {v: k for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
    return "{" + ", ".join(
        f"{to_json.get(i, '?')}: {c!r}" for i, c in enumerate(meta.thing_classes)
    ) + "}"


class _CheckedLoader:
    """A catalog loader followed by :func:`check_dataset`. Warnings are logged at the first
    load only: a test set is loaded at start-up and again at every evaluation."""

    def __init__(self, name: str, unchecked: Callable[[], list[dict]], checks: DatasetChecks):
        self.name, self.unchecked, self.checks = name, unchecked, checks
        self._warned = False

    def __call__(self) -> list[dict]:
        dicts = check_dataset(self.name, self.unchecked(), self.checks, warn=not self._warned)
        self._warned = True
        return dicts


# ---------------------------------------------------------------- helpers


def _title(name: str) -> str:
    json_file = MetadataCatalog.get(name).get("json_file")
    return f"dataset '{name}'" + (f" ({json_file})" if json_file else "")


def _annotation_table(name: str, dicts: list[dict]) -> _AnnotationTable:
    annotations = [a for r in dicts for a in r.get("annotations", ())]
    counts = np.array([len(r.get("annotations", ())) for r in dicts], dtype=np.int64)
    record = np.repeat(np.arange(len(dicts)), counts)
    sizes = np.array(
        [(r.get("width", np.nan), r.get("height", np.nan)) for r in dicts], dtype=np.float64
    ).reshape(-1, 2)
    table = _AnnotationTable(
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


def _boxes_xywh(name: str, dicts: list[dict], table: _AnnotationTable) -> np.ndarray:
    """(A, 4) float64 XYWH boxes of the table's annotations (XYWH_ABS or XYXY_ABS)."""
    raw = [a.get("bbox") for a in table.annotations]
    try:
        boxes = np.array(raw, dtype=np.float64).reshape(len(raw), -1 if raw else 4)
        if boxes.shape[1] != 4:
            raise ValueError
    except (TypeError, ValueError):
        i = next(i for i, box in enumerate(raw) if not _is_box(box))
        raise DatasetError(
            f"{_title(name)}: {_annotation_name(dicts, table, i)} has bbox {raw[i]!r}; a box "
            "is 4 numbers"
        ) from None
    if raw and np.array(raw).dtype.kind not in "iuf":  # numpy converted strings or bools
        bad = [i for i, box in enumerate(raw) if not all(map(_is_number, box))]
        examples = "; ".join(
            f"{_annotation_name(dicts, table, i)}: {raw[i]!r}" for i in bad[:_EXAMPLES]
        )
        raise DatasetError(
            f"{_title(name)}: {len(bad)} bbox(es) hold values that are not numbers (strings "
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
            f"{_title(name)}: {_annotation_name(dicts, table, i)} has bbox_mode "
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


def _annotation_name(dicts: list[dict], table: _AnnotationTable, i: int) -> str:
    """'annotation id 7 in image a.png' (its position in the image if it has no id)."""
    rec = int(table.record[i])
    ann_id = table.annotations[i].get("id")
    if ann_id is None:
        ann = f"annotation #{i - int(np.searchsorted(table.record, rec))} of image"
    else:
        ann = f"annotation id {ann_id} in image"
    image = dicts[rec].get("file_name", f"with image_id {dicts[rec].get('image_id')}")
    return f"{ann} {os.path.basename(str(image))}"


def _describe(
    dicts: list[dict], table: _AnnotationTable, mask: np.ndarray, kind: str, policy: str
) -> str:
    """'2 box(es) with a negative width or height (DATASETS.BAD_BOX_POLICY.NEGATIVE_SIZE
    error), e.g. annotation id 7 in image a.png: [60, 60, -30, -25]; ...'"""
    key, what = BOX_KINDS[kind]
    examples = "; ".join(
        f"{_annotation_name(dicts, table, i)}: {table.annotations[i]['bbox']}"
        for i in np.flatnonzero(mask)[:_EXAMPLES].tolist()
    )
    return (
        f"{int(mask.sum())} box(es) with {what} (DATASETS.BAD_BOX_POLICY.{key} {policy}), "
        f"e.g. {examples}"
    )


def _drop_annotations(dicts: list[dict], table: _AnnotationTable, keep: np.ndarray) -> None:
    for rec, kept in zip(dicts, np.split(keep, np.cumsum(table.counts)[:-1])):
        if not kept.all():
            rec["annotations"] = [a for a, k in zip(rec["annotations"], kept) if k]


def _check_classes(
    name: str, dicts: list[dict], table: _AnnotationTable, num_classes: int, warn: bool
) -> None:
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes")
    bad = (table.classes < 0) | (table.classes >= num_classes)
    if bad.any():
        to_json = {v: k for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
        values, counts = np.unique(table.classes[bad], return_counts=True)
        described = ", ".join(
            f"{n} of class index {v}"
            + (f" (json category id {to_json[v]}, '{classes[v]}')" if v in to_json else "")
            for v, n in zip(values.tolist(), counts.tolist())
        )
        size = f"; the dataset has {len(classes)} categories" if classes else ""
        raise DatasetError(
            f"{_title(name)}: {int(bad.sum())} annotation(s) of a class the model does not have: "
            f"{described}; e.g. {_annotation_name(dicts, table, int(np.flatnonzero(bad)[0]))}. "
            f"MODEL.FCOS.NUM_CLASSES is {num_classes}, so class indices must be in "
            f"[0, {num_classes - 1}]{size}: set MODEL.FCOS.NUM_CLASSES to match."
        )
    if warn and classes is not None and len(classes) != num_classes:
        logger.warning(
            "%s has %d categories but MODEL.FCOS.NUM_CLASSES is %d", _title(name), len(classes),
            num_classes,
        )


def _check_annotated(name: str, table: _AnnotationTable, allow: bool, warn: bool) -> None:
    annotated = np.zeros(len(table.counts), dtype=bool)
    annotated[table.record[~table.crowd]] = True
    if annotated.any():
        return
    message = (
        f"{_title(name)}: none of its {len(table.counts)} images has a (non-crowd) annotation"
        " left, so training on it would learn the background class only"
    )
    if not allow:
        raise DatasetError(f"{message}; set DATASETS.ALLOW_UNANNOTATED True if that is intended")
    if warn:
        logger.warning("%s (DATASETS.ALLOW_UNANNOTATED is True)", message)
