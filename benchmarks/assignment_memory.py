#!/usr/bin/env python
"""Peak memory and time of one assignment step for each matcher, on one image of
800x1333 pixels (the COCO test size) with many GT boxes, five FPN levels, 80 classes.

    python benchmarks/assignment_memory.py --num-gts 1000 [--device cuda]

Each matcher runs in a fresh process; on the CPU the figure is the growth of the
process's peak resident memory during the step, on CUDA torch's peak allocation."""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

MATCHERS = ("fcos", "atss", "paa", "lada", "ciou_atss", "dw")


def build_inputs(num_gts: int, device: str, seed: int = 0):
    import torch

    from lada.matchers import MatchInputs

    generator = torch.Generator().manual_seed(seed)
    height, width, strides = 800, 1333, (8, 16, 32, 64, 128)
    points, point_strides, counts = [], [], []
    for s in strides:
        ys, xs = torch.meshgrid(
            torch.arange((height + s - 1) // s), torch.arange((width + s - 1) // s), indexing="ij"
        )
        level = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float() * s + s / 2
        points.append(level)
        point_strides.append(torch.full((len(level),), float(s)))
        counts.append(len(level))
    points = torch.cat(points)
    xy = torch.rand(num_gts, 2, generator=generator) * torch.tensor([width - 40.0, height - 40.0])
    wh = 4 + torch.rand(num_gts, 2, generator=generator) ** 2 * 300
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width - 1.0, height - 1.0]))], 1)
    pred = torch.cat([points - 20, points + 20], dim=1) + torch.randn(len(points), 4, generator=generator)
    return MatchInputs(
        points=points.to(device),
        strides=torch.cat(point_strides).to(device),
        num_points_per_level=counts,
        gt_boxes=[boxes.to(device)],
        gt_classes=[torch.randint(0, 80, (num_gts,), generator=generator).to(device)],
        pred_logits=torch.randn(1, len(points), 80, generator=generator).to(device) - 4,
        pred_boxes=pred[None].to(device),
        pred_quality=torch.randn(1, len(points), generator=generator).to(device),
    )


def measure_one(name: str, num_gts: int, device: str) -> dict:
    import torch

    import lada  # noqa: F401
    from detectron2.config import get_cfg

    from lada.config import add_lada_config
    from lada.matchers import build_matcher

    cfg = add_lada_config(get_cfg())
    cfg.MODEL.MATCHER.NAME = name
    matcher = build_matcher(cfg)
    inputs = build_inputs(num_gts, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    result = matcher(inputs)
    positives = int((result.gt_index >= 0).sum())
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"matcher": name, "points": inputs.num_points, "gts": num_gts,
            "peak_mib": peak / 2**20, "seconds": seconds, "positives": positives}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-gts", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--matchers", nargs="+", default=list(MATCHERS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.num_gts, args.device)))
        return
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}")
    print(f"{'matcher':8s} {'points':>7s} {'GTs':>5s} {'peak MiB':>9s} {'seconds':>8s} {'positives':>9s}")
    for name in args.matchers:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--num-gts", str(args.num_gts), "--device", args.device],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        print(f"{row['matcher']:8s} {row['points']:7d} {row['gts']:5d} {row['peak_mib']:9.1f} "
              f"{row['seconds']:8.2f} {row['positives']:9d}")


if __name__ == "__main__":
    main()
