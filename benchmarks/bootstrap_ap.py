#!/usr/bin/env python
"""How much of an AP difference between two detectors the choice of validation images
alone can make: a paired bootstrap over the images of one COCO-format ground truth.

Each detector's detections (``coco_instances_results.json``, written by the evaluator of
``train_net.py`` into ``OUTPUT_DIR/inference/<dataset>/``) are matched once by
pycocotools' ``COCOeval.evaluate``; every bootstrap sample draws the images with
replacement (the same draw for every detector) and re-runs only ``accumulate`` on the
per-image results of the drawn images, so a sample costs a fraction of an evaluation.

    python -m benchmarks.bootstrap_ap datasets/synthetic/annotations/val.json \
        atss=output/quick/atss/inference/synthetic_val/coco_instances_results.json \
        paa=output/quick/paa/inference/synthetic_val/coco_instances_results.json

``--band 3 inf`` restricts the AP to the slender boxes (docs/slender-ap.md).
Prints each detector's AP with its bootstrap standard deviation and, for each pair, the
difference with its standard deviation and the share of samples where it changes sign.
This is the evaluation's sampling noise only; another training seed adds its own.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
from typing import Dict, List, Optional

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from lada.evaluation import AspectRatioBand, AspectRatioCOCOeval


def matched_eval(gt: COCO, detections: str, band: Optional[AspectRatioBand] = None) -> COCOeval:
    """COCOeval after ``evaluate`` (per-image matching) on all images of ``gt``; with
    ``band``, the slender-object evaluation of that aspect-ratio band."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        coco_eval = COCOeval(gt, dt, "bbox") if band is None else AspectRatioCOCOeval(gt, dt, band)
        coco_eval.evaluate()
    return coco_eval


def resampled_ap(coco_eval: COCOeval, draw: np.ndarray) -> float:
    """Box AP (IoU 0.50:0.95, all areas, 100 detections) with the images at positions
    ``draw`` of ``params.imgIds`` (repeats allowed). ``evalImgs`` is laid out by
    (category, area range, image), which ``accumulate`` indexes by position only."""
    image_ids = coco_eval._paramsEval.imgIds
    per_image = coco_eval.evalImgs
    blocks = len(per_image) // len(image_ids)  # categories x area ranges
    coco_eval.evalImgs = [per_image[b * len(image_ids) + i] for b in range(blocks) for i in draw]
    # accumulate() takes the image list of both params and the evaluated params
    coco_eval.params.imgIds = coco_eval._paramsEval.imgIds = list(range(len(draw)))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.accumulate()
    coco_eval.evalImgs = per_image
    coco_eval.params.imgIds = coco_eval._paramsEval.imgIds = image_ids
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    return float(precision[precision > -1].mean() * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ground_truth", help="COCO-format json of the validation set")
    parser.add_argument("detections", nargs="+", help="NAME=coco_instances_results.json")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--band", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="AP of the aspect-ratio band [LOW, HIGH) only (HIGH may be inf)")
    args = parser.parse_args()
    band = AspectRatioBand(*args.band) if args.band else None
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ground_truth)
    evals = {}
    for item in args.detections:
        name, path = item.split("=", 1)
        evals[name] = matched_eval(gt, path, band)
    num_images = len(gt.getImgIds())
    full = {name: resampled_ap(e, np.arange(num_images)) for name, e in evals.items()}
    rng = np.random.default_rng(args.seed)
    samples: Dict[str, List[float]] = {name: [] for name in evals}
    for _ in tqdm(range(args.samples), desc="bootstrap samples", unit="sample"):
        draw = rng.integers(0, num_images, num_images)
        for name, e in evals.items():
            samples[name].append(resampled_ap(e, draw))
    what = f"band {band.label}" if band else "all boxes"
    print(f"{num_images} images, {args.samples} paired bootstrap samples, AP of {what}")
    for name in evals:
        print(f"{name}: AP {full[name]:.2f} (bootstrap std {np.std(samples[name], ddof=1):.2f})")
    for a, b in itertools.combinations(evals, 2):
        difference = np.array(samples[a]) - np.array(samples[b])
        flipped = float(np.mean(np.sign(difference) != np.sign(full[a] - full[b])))
        print(f"{a} - {b}: {full[a] - full[b]:+.2f} AP (bootstrap std {difference.std(ddof=1):.2f}; "
              f"sign changes in {100 * flipped:.0f} % of samples)")


if __name__ == "__main__":
    main()
