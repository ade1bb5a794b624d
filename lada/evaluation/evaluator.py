"""detectron2's ``COCOEvaluator`` with the slender-object AP beside the usual box AP, and a
clear word on a test set without ground truth."""
from __future__ import annotations

import logging
import math
import os
from typing import Dict, Optional, Sequence

from detectron2.evaluation import COCOEvaluator
from tabulate import tabulate

from .slender import BAND_METRICS, aspect_ratio_bands, evaluate_aspect_ratio_bands

__all__ = ["SlenderCOCOEvaluator"]

logger = logging.getLogger(__name__)


class SlenderCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator`` whose box results also hold the AP table of each aspect-ratio
    band (:mod:`lada.evaluation.slender`): ``AP@ar<3``, ``AP50@ar<3``, ...,
    ``AP-<class>@ar>=3``. They travel with the usual results (``bbox/AP@ar>=3`` in
    metrics.json and TensorBoard) and are logged as two tables. ``aspect_ratio_edges``
    ``[]`` gives plain ``COCOEvaluator`` results.

    A test set without any ground-truth box (a json without annotations, as COCO's
    test-dev, or with only crowd regions) is not scored: COCO's AP is undefined there
    (pycocotools would print tables of -1). A warning names the dataset, the predictions
    are written as usual (``coco_instances_results.json``) and every metric is NaN
    (``null`` in ``eval_results.json``)."""

    def __init__(
        self, dataset_name: str, *, aspect_ratio_edges: Sequence[float] = (3.0,), **kwargs
    ):
        super().__init__(dataset_name, **kwargs)
        self._bands = aspect_ratio_bands(aspect_ratio_edges)
        annotations = self._coco_api.dataset.get("annotations") or []
        self._has_gt_boxes = any(not a.get("iscrowd", 0) for a in annotations)
        self._do_evaluation = self._has_gt_boxes  # detectron2's switch for test-dev sets

    def _eval_predictions(self, predictions, img_ids=None):
        super()._eval_predictions(predictions, img_ids=img_ids)  # writes the predictions
        if self._has_gt_boxes:
            return
        written = (
            "the predictions are in "
            + os.path.join(self._output_dir, "coco_instances_results.json")
            if self._output_dir else "the predictions are not written (no output folder)"
        )
        count = len(self._coco_api.dataset.get("annotations") or [])
        logger.warning(
            f"dataset '{self._metadata.name}' has no ground-truth box ({self._metadata.json_file}: "
            f"{len(self._coco_api.imgs)} images, {count} annotations"
            f"{', all crowd regions' if count else ''}): nothing to score the predictions "
            "against, so its AP is not computed (null in eval_results.json, NaN in "
            f"metrics.json); {written}"
        )
        for task in self._tasks or ("bbox",):
            self._results[task] = {
                **{metric: float("nan") for metric in BAND_METRICS}, **self._undefined_bands()
            }

    def _derive_coco_results(
        self, coco_eval, iou_type: str, class_names: Optional[Sequence[str]] = None
    ):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if iou_type != "bbox" or not self._bands:
            return results
        if coco_eval is None:  # no detection at all: every metric undefined, as detectron2
            results.update(self._undefined_bands())
            return results
        band_results = evaluate_aspect_ratio_bands(
            coco_eval.cocoGt, coco_eval.cocoDt, self._bands,
            img_ids=coco_eval.params.imgIds, max_dets=coco_eval.params.maxDets,
            class_names=class_names,
        )
        self._log_tables(band_results, class_names)
        results.update(band_results)
        return results

    def _undefined_bands(self) -> Dict[str, float]:
        return {f"{m}@{b.label}": float("nan") for b in self._bands for m in BAND_METRICS}

    def _log_tables(self, band_results, class_names: Optional[Sequence[str]]) -> None:
        """Logs the band table and the per-category one; a band whose metrics are all NaN
        (it has no GT box) is left out of both, and a category without a number in the
        bands shown, with one line naming them (the results keep their NaN metrics)."""
        bands = [b for b in self._bands
                 if not all(math.isnan(band_results[f"{m}@{b.label}"]) for m in BAND_METRICS)]
        empty = [b.label for b in self._bands if b not in bands]
        note = f"\n(no GT box in {', '.join(empty)}: left out)" if empty else ""
        if not bands:
            logger.info("Evaluation results for bbox by aspect ratio: no band has a GT box")
            return
        rows = [[b.label] + [band_results[f"{m}@{b.label}"] for m in BAND_METRICS] for b in bands]
        logger.info(
            "Evaluation results for bbox by aspect ratio (long / short side; GT boxes of "
            "other bands ignored):\n"
            + tabulate(rows, headers=["band", *BAND_METRICS], tablefmt="pipe", floatfmt=".3f")
            + note
        )
        if class_names is None or len(class_names) <= 1:
            return
        rows = [[name] + [band_results[f"AP-{name}@{b.label}"] for b in bands]
                for name in class_names]
        shown = [row for row in rows if not all(math.isnan(v) for v in row[1:])]
        absent = [row[0] for row in rows if row not in shown]
        logger.info(
            "Per-category bbox AP by aspect ratio:\n"
            + tabulate(shown, headers=["category", *(b.label for b in bands)],
                       tablefmt="pipe", floatfmt=".3f")
            + (f"\n(no GT box of {', '.join(absent)} in these bands: left out)" if absent else "")
        )
