"""Slender-object AP: the COCO box-AP table restricted to GT boxes whose aspect ratio
(long side / short side) lies in a band, computed the way COCO restricts AP to an area
range (LADA paper, section 4.3.2 (2) and Table 4, compares assigners on "slender objects";
the paper picks COCO classes by hand, here any COCO-format dataset is split by the
aspect ratio of each box).

COCO's rule for an area range (pycocotools ``COCOeval.evaluateImg``), applied to the
aspect ratio:

* a GT box outside the band is *ignored*, not deleted: a detection matched to it is
  neither a true nor a false positive, so detecting a box of another band costs
  nothing;
* a detection that matches no GT box is a false positive only when its own box's aspect
  ratio lies inside the band (COCO: "unmatched detections outside of area range" are
  ignored); the detection side is decided by the detected box's long/short ratio;
* a detection matched to a GT inside the band is a true positive whatever its own ratio.

The matching itself stays pycocotools' (:class:`AspectRatioCOCOeval` subclasses it and
only sets the two ignore flags), so bands combine with COCO's area ranges: ``APs`` of a
band counts the small GT boxes of that band.
"""
from __future__ import annotations

import contextlib
import io
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets

__all__ = [
    "AspectRatioBand",
    "AspectRatioCOCOeval",
    "BAND_METRICS",
    "aspect_ratio",
    "aspect_ratio_bands",
    "evaluate_aspect_ratio_bands",
]

#: The COCO box-AP table, in ``COCOeval.stats`` order.
BAND_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def aspect_ratio(bbox: Sequence[float]) -> float:
    """Long side / short side (>= 1) of a COCO ``[x, y, w, h]`` box; ``inf`` when a side
    is not positive (such a box belongs to the last band)."""
    short, long = sorted((float(bbox[2]), float(bbox[3])))
    return long / short if short > 0 else math.inf


@dataclass(frozen=True)
class AspectRatioBand:
    """Aspect ratios ``low <= r < high``; the last band (``high`` = inf) includes inf."""

    low: float
    high: float

    def contains(self, ratio: float) -> bool:
        return self.low <= ratio and (ratio < self.high or self.high == math.inf)

    @property
    def label(self) -> str:
        """``ar<3``, ``3<=ar<5``, ``ar>=5``: the suffix of the band's metric names."""
        if self.low <= 1:
            return f"ar<{self.high:g}"
        if self.high == math.inf:
            return f"ar>={self.low:g}"
        return f"{self.low:g}<=ar<{self.high:g}"


def aspect_ratio_bands(
    edges: Sequence[float], key: str = "TEST.ASPECT_RATIO_EDGES"
) -> List[AspectRatioBand]:
    """Bands ``[1, e1), [e1, e2), ..., [ek, inf)`` from edges ``e1 < ... < ek``; no edge,
    no band (the option is off). Raises ValueError naming ``key`` on edges that are not
    finite, not above 1 (every ratio is >= 1) or not strictly increasing."""
    edges = [float(e) for e in edges]
    bad = [e for e in edges if not (math.isfinite(e) and e > 1)]
    if bad or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(
            f"{key} must be strictly increasing finite aspect ratios above 1 (long side / "
            f"short side), e.g. [3.0]; got {edges}"
        )
    if not edges:
        return []
    bounds = [1.0, *edges, math.inf]
    return [AspectRatioBand(low, high) for low, high in zip(bounds, bounds[1:])]


class AspectRatioCOCOeval(COCOevalMaxDets):
    """pycocotools' box ``COCOeval`` (through detectron2's ``COCOevalMaxDets``, which
    summarises with ``params.maxDets[2]`` detections per image) restricted to one
    :class:`AspectRatioBand`: GT boxes outside it are ignored, as crowd boxes are, and
    unmatched detections outside it are ignored, as COCO does for area ranges."""

    def __init__(self, coco_gt, coco_dt, band: AspectRatioBand):
        super().__init__(coco_gt, coco_dt, "bbox")
        self.band = band
        self._dt_outside: Dict[int, bool] = {}

    def _prepare(self) -> None:
        super()._prepare()
        # Copies: the GT dicts belong to coco_gt, which other evaluations share.
        for key, gts in self._gts.items():
            self._gts[key] = [
                dict(g, ignore=bool(g["ignore"]) or not self.band.contains(aspect_ratio(g["bbox"])))
                for g in gts
            ]
        self._dt_outside = {
            d["id"]: not self.band.contains(aspect_ratio(d["bbox"]))
            for dts in self._dts.values()
            for d in dts
        }

    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802,N803 (pycocotools' names)
        result = super().evaluateImg(imgId, catId, aRng, maxDet)
        if result is None:
            return None
        # COCO's last step for area ranges, with the band: unmatched detections outside
        # the band are ignored. dtMatches, dtIgnore: (T, D) over IoU thresholds.
        outside = np.array([self._dt_outside[i] for i in result["dtIds"]], dtype=bool)
        result["dtIgnore"] = np.logical_or(
            result["dtIgnore"], np.logical_and(result["dtMatches"] == 0, outside[None, :])
        )
        return result


def evaluate_aspect_ratio_bands(
    coco_gt,
    coco_dt,
    bands: Sequence[AspectRatioBand],
    *,
    img_ids: Optional[Sequence[int]] = None,
    max_dets: Sequence[int] = (1, 10, 100),
    class_names: Optional[Sequence[str]] = None,
) -> "OrderedDict[str, float]":
    """Box AP of each band, in percent (NaN where undefined, as detectron2 reports):
    ``<metric>@<band label>`` for the metrics of :data:`BAND_METRICS` and, with
    ``class_names`` (one per category of ``coco_gt``, in id order), the band's AP per
    class ``AP-<name>@<band label>``. ``coco_gt`` / ``coco_dt``: pycocotools ``COCO``
    objects of the ground truth and of the detections (``coco_gt.loadRes``)."""
    results: "OrderedDict[str, float]" = OrderedDict()
    for band in bands:
        coco_eval = AspectRatioCOCOeval(coco_gt, coco_dt, band)
        coco_eval.params.maxDets = list(max_dets)
        if img_ids is not None:
            coco_eval.params.imgIds = list(img_ids)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        for name, value in zip(BAND_METRICS, coco_eval.stats):
            results[f"{name}@{band.label}"] = _percent(value)
        if class_names is not None and len(class_names) > 1:
            # precision: (IoU thresholds, recall thresholds, classes, area ranges, max dets);
            # area range 0 is "all", max dets -1 the per-image limit (as detectron2).
            precision = coco_eval.eval["precision"]
            for k, name in enumerate(class_names):
                p = precision[:, :, k, 0, -1]
                p = p[p > -1]
                results[f"AP-{name}@{band.label}"] = _percent(p.mean() if p.size else -1)
    return results


def _percent(value: float) -> float:
    return float(value * 100) if value >= 0 else float("nan")
