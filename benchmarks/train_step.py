#!/usr/bin/env python
"""Training-step time of one model and one batch with each matcher, and its ratio to
``fcos`` (and to detectron2's own FCOS, with ``--detectron2-fcos``).

Every matcher gets the same model (built from ``--config-file`` with the same seed, so
the same weights), the same batch (``--images`` random images of ``--size`` pixels,
``--gts`` random GT boxes each, seeded) and the same optimizer; only
``MODEL.MATCHER.NAME`` differs. A step is forward with losses, backward and the
optimizer step; the learning rate is 0 so that every step does the same work. After
``--warmup`` untimed steps the matchers take turns, one step each in a shuffled order,
for ``--steps`` rounds (so that a change of the machine's load, or the position in a
round, which measurably mattered on a shared machine, affects all of them alike); the
median step, its process CPU time and the median time inside the matcher are reported;
on CUDA also the peak memory a step allocates beyond what was allocated before it
(``torch.cuda.max_memory_allocated``). ``--amp`` runs the forward pass under float16
autocast with gradient scaling, as detectron2's ``AMPTrainer`` (CUDA only).
``--detectron2-fcos`` adds ``detectron2.modeling.meta_arch.fcos.FCOS`` with its own head
on the same backbone, the reference of the matchers' step time.

    python benchmarks/train_step.py                 # configs/quick/Base-Quick.yaml
    python benchmarks/train_step.py --quick         # one image, one round (a smoke test)

Writes ``train_step.csv``, ``train_step.json`` (machine, load, command, date) and
``train_step.md`` to ``--output-dir`` (``benchmarks/results``; ``output/benchmarks`` with
``--quick``).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from tqdm import tqdm

import lada  # noqa: F401  (registers the matchers and the meta-architecture)
from benchmarks.measure import (LoadMonitor, add_output_dir_argument, machine_description,
                                output_dir, write_results)
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from lada.compat import patch_detectron2_fcos_head_norm
from lada.engine.setup import merged_cfg
from lada.matchers import MATCHER_REGISTRY

DETECTRON2_FCOS = "detectron2_fcos"  # the row of detectron2's own FCOS

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


def make_batch(num_images: int, size: int, num_gts: int, num_classes: int, seed: int = 0,
               width: Optional[int] = None):
    """``num_images`` dicts as detectron2's mapper makes them: random pixels of ``size`` x
    ``width`` (default ``size``) and ``num_gts`` random boxes of 4 px to 2/3 of the
    height a side."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size, width or size
    far = torch.tensor([width - 1.0, height - 1.0])
    batch = []
    for _ in range(num_images):
        corner = torch.rand(num_gts, 2, generator=generator) * (far - 7)
        sides = 4 + torch.rand(num_gts, 2, generator=generator) * (height / 1.5)
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.cat([corner, torch.minimum(corner + sides, far)], 1))
        instances.gt_classes = torch.randint(0, num_classes, (num_gts,), generator=generator)
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
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


def build_detectron2_fcos(cfg):
    """detectron2's own FCOS (``detectron2.modeling.meta_arch.fcos``) with its own head
    (``MODEL.FCOS.NUM_CONVS`` GN convs of the FPN's width) on the backbone of ``cfg``,
    seeded as :func:`build`, and its optimizer."""
    patch_detectron2_fcos_head_norm()  # v0.6's FCOSHead cannot build GN without it
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    backbone = build_backbone(cfg)
    features = cfg.MODEL.FCOS.IN_FEATURES
    shapes = [backbone.output_shape()[name] for name in features]
    head = FCOSHead(input_shape=shapes, conv_dims=[shapes[0].channels] * cfg.MODEL.FCOS.NUM_CONVS,
                    num_classes=cfg.MODEL.FCOS.NUM_CLASSES, norm="GN",
                    prior_prob=cfg.MODEL.FCOS.PRIOR_PROB)
    model = FCOS(backbone=backbone, head=head, head_in_features=features,
                 num_classes=cfg.MODEL.FCOS.NUM_CLASSES, pixel_mean=cfg.MODEL.PIXEL_MEAN,
                 pixel_std=cfg.MODEL.PIXEL_STD).to(cfg.MODEL.DEVICE)
    model.train()
    return model, build_optimizer(cfg, model)


def step(model, optimizer, batch, device: torch.device,
         scaler: Optional[torch.amp.GradScaler] = None) -> None:
    """Forward with losses, backward, optimizer step; with a ``scaler``, the forward pass
    runs under float16 autocast and the step is scaled, as in detectron2's AMPTrainer."""
    with torch.autocast(device.type, torch.float16, enabled=scaler is not None):
        losses = sum(model(batch).values())
    optimizer.zero_grad()
    if scaler is None:
        losses.backward()
        optimizer.step()
    else:
        scaler.scale(losses).backward()
        scaler.step(optimizer)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_peak_mib(model, optimizer, batch, device: torch.device, scaler=None) -> Optional[float]:
    """One step; on CUDA the peak MiB it allocated beyond what was allocated before it."""
    if device.type != "cuda":
        step(model, optimizer, batch, device, scaler)
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(model, optimizer, batch, device, scaler)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def measure(cfg, names: List[str], batch, rounds: int, warmup: int, amp: bool = False,
            detectron2_fcos: bool = False) -> List[dict]:
    """One step per model per round in a shuffled order (seeded), after ``warmup`` steps
    per model (one at least where the peak memory is measured, on CUDA)."""
    device = torch.device(cfg.MODEL.DEVICE)
    runs: Dict[str, Tuple] = {name: build(cfg, name) for name in names}
    if detectron2_fcos:
        runs[DETECTRON2_FCOS] = build_detectron2_fcos(cfg)
    scalers = {name: torch.amp.GradScaler(device.type) if amp else None for name in runs}
    wall: Dict[str, List[float]] = {name: [] for name in runs}
    cpu: Dict[str, List[float]] = {name: [] for name in runs}
    peak: Dict[str, Optional[float]] = {}
    with EventStorage(0):
        for name, (model, optimizer) in tqdm(runs.items(), desc="warm-up", unit="model"):
            for _ in range(warmup):
                step(model, optimizer, batch, device, scalers[name])
            if device.type == "cuda":
                peak[name] = step_peak_mib(model, optimizer, batch, device, scalers[name])
            if isinstance(getattr(model, "matcher", None), TimedMatcher):
                model.matcher.seconds.clear()
        for round_ in tqdm(range(rounds), desc="rounds", unit="round"):
            order = list(runs)
            random.Random(round_).shuffle(order)  # no matcher always first or last
            for name in order:
                model, optimizer = runs[name]
                start, start_cpu = time.perf_counter(), time.process_time()
                step(model, optimizer, batch, device, scalers[name])
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    rows = []
    for name, (model, _) in runs.items():
        row = {"matcher": name, "step_ms": 1e3 * statistics.median(wall[name]),
               "cpu_ms": 1e3 * statistics.median(cpu[name])}
        if isinstance(getattr(model, "matcher", None), TimedMatcher):
            row["assign_ms"] = 1e3 * statistics.median(model.matcher.seconds)
        if name in peak:
            row["peak_mib"] = peak[name]
        rows.append(row)
    for reference, key in (("fcos", "x_fcos"), (DETECTRON2_FCOS, "x_detectron2_fcos")):
        if reference in wall:
            base = next(row for row in rows if row["matcher"] == reference)
            for row in rows:
                row[key] = row["step_ms"] / base["step_ms"]
                if reference == "fcos":
                    row["cpu_x_fcos"] = row["cpu_ms"] / base["cpu_ms"]
    return rows


def markdown(rows: List[dict]) -> str:
    def cell(row, key, digits):
        return f"{row[key]:.{digits}f}" if key in row else ""

    lines = ["| model | step ms | x fcos | x detectron2 FCOS | step cpu ms | x fcos (cpu) "
             "| in the matcher ms | step peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['matcher']}` | {cell(row, 'step_ms', 0)} | {cell(row, 'x_fcos', 3)} "
                     f"| {cell(row, 'x_detectron2_fcos', 3)} | {cell(row, 'cpu_ms', 0)} "
                     f"| {cell(row, 'cpu_x_fcos', 3)} | {cell(row, 'assign_ms', 1)} "
                     f"| {cell(row, 'peak_mib', 0)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="configs/quick/Base-Quick.yaml")
    parser.add_argument("--matchers", nargs="+", help="default: every registered matcher")
    parser.add_argument("--images", type=int, default=16, help="images in the batch")
    parser.add_argument("--size", type=int, default=128, help="image height in pixels")
    parser.add_argument("--width", type=int, help="image width in pixels (default: --size)")
    parser.add_argument("--gts", type=int, default=8, help="GT boxes per image")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per matcher")
    parser.add_argument("--amp", action="store_true",
                        help="float16 autocast with gradient scaling (CUDA), as AMPTrainer")
    parser.add_argument("--detectron2-fcos", action="store_true",
                        help="add detectron2's own FCOS on the same backbone")
    add_output_dir_argument(parser)
    parser.add_argument("--quick", action="store_true",
                        help="one 64 px image, one round: checks the script, measures nothing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.size, args.width, args.steps, args.warmup = 1, 64, None, 1, 0
    cfg = merged_cfg(args.config_file, args.opts)  # CUSTOM_IMPORTS: matchers of your own
    cfg.SOLVER.BASE_LR = 0.0  # the same work at every step
    cfg.SOLVER.IMS_PER_BATCH = args.images
    names = args.matchers or sorted(name for name, _ in MATCHER_REGISTRY)
    batch = make_batch(args.images, args.size, args.gts, cfg.MODEL.FCOS.NUM_CLASSES, width=args.width)
    machine = machine_description(cfg.MODEL.DEVICE)
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    with LoadMonitor() as load:
        rows = measure(cfg, names, batch, args.steps, args.warmup, args.amp, args.detectron2_fcos)
    print(load.summary())
    return write_results(output_dir(args), "train_step", rows, markdown(rows), argv or sys.argv[1:],
                         machine, load, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                         config_file=args.config_file, images=args.images, size=args.size,
                         width=args.width or args.size, gts_per_image=args.gts, rounds=args.steps,
                         warmup=args.warmup, amp=args.amp)


if __name__ == "__main__":
    main()
