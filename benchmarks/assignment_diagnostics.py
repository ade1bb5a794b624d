#!/usr/bin/env python
"""Assignment statistics of several matchers on the same predictions: a model (its
initialisation or a checkpoint) runs on the first training images of a config, every
matcher assigns from the same MatchInputs, and per matcher the script reports how many
GT boxes get no positive (by aspect-ratio band and size), the positives per GT and the
IoU of the positives' predicted boxes with their GT. For PAA also: how many candidates
each GT keeps after the preliminary IoU match (PAA step 1, re-derived here with
torchvision's box IoU), where the points inside a GT left without candidates went, what
the GMM keeps from few candidates, and the IoU weights of its box loss.

    python -m benchmarks.assignment_diagnostics --config-file configs/quick/paa.yaml \
        --weights /work/runs/quick/paa/model_final.pth --images 64
    python -m benchmarks.assignment_diagnostics --config-file configs/quick/paa.yaml  # init
    python -m benchmarks.assignment_diagnostics --config-file configs/quick/paa.yaml \
        MODEL.MATCHER.PAA.ANCHOR_SCALE 4.0 MODEL.MATCHER.LADA.ANCHOR_SCALE 4.0

A diagnostic, not a test: prints a json report (docs/studies/why-paa-trails.md).
"""
from __future__ import annotations

import argparse
import copy
import json
from collections import defaultdict
from typing import Dict, List, Sequence

import torch
from torchvision.ops import box_iou

import lada  # noqa: F401  (registers the model and matchers)
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from lada.config import add_lada_config
from lada.data import ReadCheckedDatasetMapper, register_coco_datasets
from lada.engine import LadaCheckpointer
from lada.matchers import MatchInputs, build_matcher
from lada.matchers.stages.geometry import is_inside

MATCHERS = ("fcos", "atss", "paa", "lada")
BUCKETS = {"0": (0, 0), "1": (1, 1), "2-3": (2, 3), "4-9": (4, 9), ">=10": (10, 10**9)}


def capture_inputs(cfg: CfgNode, weights: str, num_images: int, batch: int) -> List[MatchInputs]:
    """MatchInputs of the model on the first ``num_images`` training images (train-time
    mapping, seeded), ``batch`` images per step, without any update."""
    model = build_model(cfg)
    if weights:  # trained weights: every one must fit, or the predictions are not theirs
        LadaCheckpointer(model, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
                         for_inference=True).load(weights)
    model.train()
    captured = []
    real_matcher = model.matcher

    def recording_matcher(inputs: MatchInputs):
        captured.append(inputs)
        return real_matcher(inputs)

    model.matcher = recording_matcher
    mapper = ReadCheckedDatasetMapper(cfg, True)
    dataset = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:num_images]
    seed_all_rng(0)  # the augmentations draw from numpy's and Python's generators too
    with torch.no_grad(), EventStorage(0):
        for start in range(0, len(dataset), batch):
            model([mapper(copy.deepcopy(d)) for d in dataset[start : start + batch]])
    return captured


def with_matcher(cfg: CfgNode, name: str):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.MATCHER.NAME = name
    return build_matcher(cfg)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a[i] and b[i], (P, 4) each; inverted boxes count as empty."""
    a = torch.cat([a[:, :2], torch.maximum(a[:, 2:], a[:, :2])], dim=1)
    low, high = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    union = (a[:, 2:] - a[:, :2]).prod(dim=1) + (b[:, 2:] - b[:, :2]).prod(dim=1) - inter
    return inter / union.clamp(min=1e-9)


def inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(G, R) points strictly inside each box."""
    x, y = points[None, :, 0], points[None, :, 1]
    return (x > boxes[:, None, 0]) & (x < boxes[:, None, 2]) & (y > boxes[:, None, 1]) & (y < boxes[:, None, 3])


def preliminary_owner(inputs: MatchInputs, boxes: torch.Tensor, scale: float, thresh: float):
    """(R,) GT of each point after PAA step 1 (official ``Matcher(t, t, True)``: largest
    anchor-box IoU if >= t; a GT's highest-IoU points, ties included, are restored to
    their own largest-IoU GT), -1 for none; anchor box = square of scale * stride."""
    half = (scale * inputs.strides / 2)[:, None]
    anchors = torch.cat([inputs.points - half, inputs.points + half], dim=1)
    iou = box_iou(boxes, anchors)  # (G, R)
    best, owner = iou.max(dim=0)
    restored = (iou == iou.amax(dim=1, keepdim=True)).any(dim=0)
    return torch.where((best >= thresh) | restored, owner, -1)


def gt_statistics(cfg: CfgNode, inputs: MatchInputs) -> Dict[str, torch.Tensor]:
    """Per GT box of all images of ``inputs`` (ΣG,): groups and PAA's candidates."""
    paa = cfg.MODEL.MATCHER.PAA
    stats = defaultdict(list)
    for boxes in inputs.gt_boxes:
        sizes = boxes[:, 2:] - boxes[:, :2]
        ratio = sizes.amax(dim=1) / sizes.amin(dim=1)
        stats["all"].append(torch.ones(len(boxes), dtype=torch.bool))
        stats["ar<3"].append(ratio < 3)
        stats["ar>=3"].append(ratio >= 3)
        stats["small"].append(sizes.prod(dim=1) < 32**2)
        stats["medium"].append(sizes.prod(dim=1) >= 32**2)
        stats["short<8px"].append(sizes.amin(dim=1) < 8)
        inner = inside(inputs.points, boxes)  # (G, R)
        owner = preliminary_owner(inputs, boxes, paa.ANCHOR_SCALE, paa.PRELIM_IOU_THRESH)
        mine = owner[None] == torch.arange(len(boxes))[:, None]
        stats["inside_points"].append(inner.sum(dim=1))
        stats["candidates"].append((inner & mine).sum(dim=1))
        stats["inside_to_other"].append((inner & (owner[None] >= 0) & ~mine).sum(dim=1))
        stats["inside_to_none"].append((inner & (owner[None] < 0)).sum(dim=1))
    return stats


def positives_per_gt(inputs: MatchInputs, gt_index: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per GT (ΣG,): "count" of positives, "iou" the mean IoU of their predicted boxes
    with the GT, "outside" how many of its positives' points lie outside it."""
    counts, ious, outside = [], [], []
    for image, boxes in enumerate(inputs.gt_boxes):
        fg = gt_index[image] >= 0
        gt = gt_index[image][fg]
        count = torch.bincount(gt, minlength=len(boxes)).float()
        iou = paired_iou(inputs.pred_boxes[image][fg], boxes[gt])
        inner = is_inside(inputs.points[fg], boxes[gt])  # the matchers' inside-GT rule
        counts.append(count)
        ious.append(torch.zeros(len(boxes)).index_add_(0, gt, iou) / count)
        outside.append(torch.bincount(gt[~inner], minlength=len(boxes)).float())
    return {"count": torch.cat(counts), "iou": torch.cat(ious), "outside": torch.cat(outside)}


def report(cfg: CfgNode, captured: List[MatchInputs], matchers: Sequence[str]) -> dict:
    gts = defaultdict(list)
    positives = defaultdict(lambda: defaultdict(list))
    for inputs in captured:
        for key, values in gt_statistics(cfg, inputs).items():
            gts[key] += values
        for name in matchers:
            per_gt = positives_per_gt(inputs, with_matcher(cfg, name)(inputs).gt_index)
            for key, values in per_gt.items():
                positives[name][key].append(values)
    gts = {key: torch.cat(values) for key, values in gts.items()}
    groups = ("all", "ar<3", "ar>=3", "small", "medium", "short<8px")
    candidates = gts["candidates"]
    lost = (candidates == 0) & (gts["inside_points"] > 0)
    out = {
        "gts": {g: int(gts[g].sum()) for g in groups},
        "gts_without_inside_point": int((gts["inside_points"] == 0).sum()),
        "paa_candidates": {b: int(((candidates >= lo) & (candidates <= hi)).sum())
                           for b, (lo, hi) in BUCKETS.items()},
        "paa_gts_without_candidate_but_with_inside_points": {
            "gts": int(lost.sum()),
            "their_inside_points_to_another_gt": int(gts["inside_to_other"][lost].sum()),
            "their_inside_points_to_no_gt": int(gts["inside_to_none"][lost].sum()),
        },
        "matchers": {},
    }
    for name, values in positives.items():
        count, iou = torch.cat(values["count"]), torch.cat(values["iou"])
        outside = torch.cat(values["outside"])
        out["matchers"][name] = {
            "without_positive_pct": {g: round(100 * float((count[gts[g]] == 0).float().mean()), 1)
                                     for g in groups},
            "positives_per_gt": round(float(count.mean()), 2),
            "positive_iou_mean": round(float(iou[count > 0].mean()), 3),
            "positives_outside_their_gt_pct": round(100 * float(outside.sum() / count.sum()), 1),
        }
        if name == "paa":
            out["paa_positives_by_candidates"] = {
                b: round(float(count[m].mean()), 2)
                for b, (lo, hi) in BUCKETS.items()
                for m in [(candidates >= lo) & (candidates <= hi)] if m.any()
            }
    return out


def paa_box_loss_weights(cfg: CfgNode, captured: List[MatchInputs]) -> dict:
    """The paa config weights each positive's GIoU loss by the IoU of its predicted box
    with its GT (BOX_LOSS_WEIGHTING aux_target, AUX_BRANCH iou): share of PAA positives
    whose weight is exactly 0 (no box-loss gradient) and the mean weight."""
    matcher = with_matcher(cfg, "paa")
    weights = []
    for inputs in captured:
        gt_index = matcher(inputs).gt_index
        for image, boxes in enumerate(inputs.gt_boxes):
            fg = gt_index[image] >= 0
            weights.append(paired_iou(inputs.pred_boxes[image][fg], boxes[gt_index[image][fg]]))
    w = torch.cat(weights)
    return {"positives": int(len(w)), "zero_weight_pct": round(100 * float((w == 0).float().mean()), 1),
            "mean_weight": round(float(w.mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", default="", help="checkpoint (default: the initialisation)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--matchers", nargs="+", default=list(MATCHERS))
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args()
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    register_coco_datasets(cfg.DATASETS.REGISTER_COCO)
    torch.manual_seed(cfg.SEED)
    captured = capture_inputs(cfg, args.weights, args.images, args.batch)
    out = {"weights": args.weights or "initialisation", "images": args.images,
           "overrides": args.opts, **report(cfg, captured, args.matchers),
           "paa_box_loss_weights": paa_box_loss_weights(cfg, captured)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
