"""Checks of a dataset's annotations where they enter the project: once per load of every
dataset a run uses, vectorised over all its annotations, after the records' structure
(:mod:`lada.data.json_checks`).

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

:func:`install_dataset_checks` puts the checks into detectron2's ``DatasetCatalog`` for the
datasets of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` (lazily: nothing is loaded then), so
every consumer of the catalog (the training and test loaders) sees checked data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from .errors import DatasetError
from .json_checks import (
    EXAMPLES, AnnotationTable, annotation_name, annotation_table, check_has_images, dataset_title,
)

__all__ = [
    "BOX_KINDS",
    "BOX_POLICIES",
    "DatasetChecks",
    "check_dataset",
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


def check_dataset(
    name: str, dicts: list[dict], checks: DatasetChecks, warn: bool = True
) -> list[dict]:
    """Checks the records of dataset ``name`` (detectron2's dataset dicts) and returns them
    with the annotations dropped by a ``drop_with_warning`` policy removed (in place).

    Raises :class:`DatasetError` for what :mod:`lada.data.json_checks` refuses (no
    images, a malformed bbox), and naming the dataset, the count and the first offending
    annotations for the bad boxes of every ``error`` policy, for classes outside
    [0, num_classes) and for a training dataset without annotated images. ``warn``: log
    the drops and other warnings (False when they were logged at an earlier load)."""
    check_has_images(name, dicts, checks.training)
    table = annotation_table(name, dicts)
    kinds = classify_boxes(table.boxes, table.image_sizes)
    found = [kind for kind, mask in kinds.items() if mask.any()]
    errors = [kind for kind in found if checks.box_policy[kind] == "error"]
    if errors:
        raise DatasetError(
            f"{dataset_title(name)}: bad boxes:\n  "
            + "\n  ".join(_describe(dicts, table, kinds[kind], kind, "error") for kind in errors)
            + "\nFix the annotations, or set the policy to drop_with_warning (docs/reliability.md,"
            " 'Data checks and failure behaviour')."
        )
    if found:
        if warn:
            logger.warning(
                "%s: dropped %d of %d boxes:\n  %s", dataset_title(name),
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


def _describe(
    dicts: list[dict], table: AnnotationTable, mask: np.ndarray, kind: str, policy: str
) -> str:
    """'2 box(es) with a negative width or height (DATASETS.BAD_BOX_POLICY.NEGATIVE_SIZE
    error), e.g. annotation id 7 in image a.png: [60, 60, -30, -25]; ...'"""
    key, what = BOX_KINDS[kind]
    examples = "; ".join(
        f"{annotation_name(dicts, table, i)}: {table.annotations[i]['bbox']}"
        for i in np.flatnonzero(mask)[:EXAMPLES].tolist()
    )
    return (
        f"{int(mask.sum())} box(es) with {what} (DATASETS.BAD_BOX_POLICY.{key} {policy}), "
        f"e.g. {examples}"
    )


def _drop_annotations(dicts: list[dict], table: AnnotationTable, keep: np.ndarray) -> None:
    for rec, kept in zip(dicts, np.split(keep, np.cumsum(table.counts)[:-1])):
        if not kept.all():
            rec["annotations"] = [a for a, k in zip(rec["annotations"], kept) if k]


def _check_classes(
    name: str, dicts: list[dict], table: AnnotationTable, num_classes: int, warn: bool
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
            f"{dataset_title(name)}: {int(bad.sum())} annotation(s) of a class the model does not "
            f"have: {described}; e.g. "
            f"{annotation_name(dicts, table, int(np.flatnonzero(bad)[0]))}. "
            f"MODEL.FCOS.NUM_CLASSES is {num_classes}, so class indices must be in "
            f"[0, {num_classes - 1}]{size}: set MODEL.FCOS.NUM_CLASSES to match."
        )
    if warn and classes is not None and len(classes) != num_classes:
        logger.warning(
            "%s has %d categories but MODEL.FCOS.NUM_CLASSES is %d", dataset_title(name),
            len(classes), num_classes,
        )


def _check_annotated(name: str, table: AnnotationTable, allow: bool, warn: bool) -> None:
    annotated = np.zeros(len(table.counts), dtype=bool)
    annotated[table.record[~table.crowd]] = True
    if annotated.any():
        return
    message = (
        f"{dataset_title(name)}: none of its {len(table.counts)} images has a (non-crowd) "
        "annotation left, so training on it would learn the background class only"
    )
    if not allow:
        raise DatasetError(f"{message}; set DATASETS.ALLOW_UNANNOTATED True if that is intended")
    if warn:
        logger.warning("%s (DATASETS.ALLOW_UNANNOTATED is True)", message)
