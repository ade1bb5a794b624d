#!/usr/bin/env python
"""Training-step time of one model and one batch with each matcher, and its ratio to
``fcos``.

Every matcher gets the same model (built from ``--config-file`` with the same seed, so
the same weights), the same batch (``--images`` random images of ``--size`` pixels,
``--gts`` random GT boxes each, seeded) and the same optimizer; only
``MODEL.MATCHER.NAME`` differs. A step is forward with losses, backward and the
optimizer step; the learning rate is 0 so that every step does the same work. After
``--warmup`` untimed steps the matchers take turns, one step each in a shuffled order,
for ``--steps`` rounds (so that a change of the machine's load, or the position in a
round, which measurably mattered on a shared machine, affects all of them alike); the
median step, its process CPU time and the median time inside the matcher are reported.

    python benchmarks/train_step.py                 # configs/quick/Base-Quick.yaml
    python benchmarks/train_step.py --quick         # one image, one round (a smoke test)

Writes ``train_step.csv``, ``train_step.json`` (machine, load, command, date) and
``train_step.md`` to ``--output-dir``.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from tqdm import tqdm

import lada  # noqa: F401  (registers the matchers and the meta-architecture)
from benchmarks.measure import LoadMonitor, machine_description, write_results
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from lada.engine.setup import merged_cfg
from lada.matchers import MATCHER_REGISTRY


class TimedMatcher:
    """Wraps a matcher and records the wall time of each call (synchronised on CUDA)."""

    def __init__(self, matcher, device: torch.device):
        self.matcher, self.device, self.seconds = matcher, device, []

    def __call__(self, inputs):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        result = self.matcher(inputs)
        if cuda:
            torch.cuda.synchronize(self.device)
        self.seconds.append(time.perf_counter() - start)
        return result


def make_batch(num_images: int, size: int, num_gts: int, num_classes: int, seed: int = 0):
    """``num_images`` dicts as detectron2's mapper makes them: random pixels and
    ``num_gts`` random boxes of 4 px to 2/3 of the image a side."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        corner = torch.rand(num_gts, 2, generator=generator) * (size - 8)
        sides = 4 + torch.rand(num_gts, 2, generator=generator) * (size / 1.5)
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.cat([corner, (corner + sides).clamp(max=size - 1)], 1))
        instances.gt_classes = torch.randint(0, num_classes, (num_gts,), generator=generator)
        image = torch.randint(0, 256, (3, size, size), generator=generator).float()
        batch.append({"image": image, "instances": instances})
    return batch


def build(cfg, name: str):
    """The model (seeded weights) with matcher ``name``, its timed matcher and optimizer."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.MATCHER.NAME = name
    cfg.MODEL.FCOS.LOSS = "auto"  # the loss that consumes this matcher's results
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    model = build_model(cfg)
    model.train()
    model.matcher = TimedMatcher(model.matcher, torch.device(cfg.MODEL.DEVICE))
    return model, build_optimizer(cfg, model)


def step(model, optimizer, batch, device: torch.device) -> None:
    losses = sum(model(batch).values())
    optimizer.zero_grad()
    losses.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg, names: List[str], batch, rounds: int, warmup: int) -> List[dict]:
    """One step per matcher per round in a shuffled order (seeded), after ``warmup``
    steps per matcher."""
    device = torch.device(cfg.MODEL.DEVICE)
    runs = {name: build(cfg, name) for name in names}
    wall: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    with EventStorage(0):
        for name, (model, optimizer) in tqdm(runs.items(), desc="warm-up", unit="matcher"):
            for _ in range(warmup):
                step(model, optimizer, batch, device)
            model.matcher.seconds.clear()
        for round_ in tqdm(range(rounds), desc="rounds", unit="round"):
            order = list(runs)
            random.Random(round_).shuffle(order)  # no matcher always first or last
            for name in order:
                model, optimizer = runs[name]
                start, start_cpu = time.perf_counter(), time.process_time()
                step(model, optimizer, batch, device)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    rows = []
    for name, (model, _) in runs.items():
        rows.append({"matcher": name, "step_ms": 1e3 * statistics.median(wall[name]),
                     "cpu_ms": 1e3 * statistics.median(cpu[name]),
                     "assign_ms": 1e3 * statistics.median(model.matcher.seconds)})
    if "fcos" in wall:
        fcos = next(row for row in rows if row["matcher"] == "fcos")
        for row in rows:
            row["x_fcos"] = row["step_ms"] / fcos["step_ms"]
            row["cpu_x_fcos"] = row["cpu_ms"] / fcos["cpu_ms"]
    return rows


def markdown(rows: List[dict]) -> str:
    def cell(row, key, digits):
        return f"{row[key]:.{digits}f}" if key in row else ""

    lines = ["| matcher | step ms | x fcos | step cpu ms | x fcos (cpu) | in the matcher ms |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['matcher']}` | {cell(row, 'step_ms', 0)} | {cell(row, 'x_fcos', 3)} "
                     f"| {cell(row, 'cpu_ms', 0)} | {cell(row, 'cpu_x_fcos', 3)} "
                     f"| {cell(row, 'assign_ms', 1)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/quick/Base-Quick.yaml")
    parser.add_argument("--matchers", nargs="+", help="default: every registered matcher")
    parser.add_argument("--images", type=int, default=16, help="images in the batch")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--gts", type=int, default=8, help="GT boxes per image")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per matcher")
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true",
                        help="one 64 px image, one round: checks the script, measures nothing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.size, args.steps, args.warmup = 1, 64, 1, 0
    cfg = merged_cfg(args.config_file, args.opts)  # CUSTOM_IMPORTS: matchers of your own
    cfg.SOLVER.BASE_LR = 0.0  # the same work at every step
    cfg.SOLVER.IMS_PER_BATCH = args.images
    names = args.matchers or sorted(name for name, _ in MATCHER_REGISTRY)
    batch = make_batch(args.images, args.size, args.gts, cfg.MODEL.FCOS.NUM_CLASSES)
    machine = machine_description(cfg.MODEL.DEVICE)
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    with LoadMonitor() as load:
        rows = measure(cfg, names, batch, args.steps, args.warmup)
    print(load.summary())
    return write_results(args.output_dir, "train_step", rows, markdown(rows), argv or sys.argv[1:],
                         machine, load, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                         config_file=args.config_file, images=args.images, size=args.size,
                         gts_per_image=args.gts, rounds=args.steps, warmup=args.warmup)


if __name__ == "__main__":
    main()
