#!/usr/bin/env python
"""Inference speed of one image: eager PyTorch, TorchScript and onnxruntime, each with
1 and 2 CPU threads (and on CUDA when there is one), for the quick model at 128 and
320 px and R-50-FPN at 800 x 1333.

Random weights (seeded; MODEL.WEIGHTS ""), a random image of the case's size, the
exports of ``lada.export`` traced at that size. After ``--warmup`` untimed calls the
runtimes take turns, one call each in a shuffled order, for ``--iters`` rounds, so that a
change of the machine's load affects them alike; reported are the median and 90th
percentile latency of one image (one call: normalisation to NMS) and the images per
second (1 / mean latency). With random weights almost no point passes the score
threshold, so NMS has little to do: a trained model spends a little more in it.

    python benchmarks/inference.py               # every case, 1 and 2 threads (CPU)
    python benchmarks/inference.py --quick       # one 64 px quick case, 1 thread, 1 call

Writes ``inference.csv``, ``inference.json`` (machine, load, command, date, model sizes)
and ``inference.md`` to ``--output-dir``.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import lada  # noqa: F401  (registers the meta-architecture)
from benchmarks.measure import LoadMonitor, machine_description, write_results
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from lada import export
from lada.config import add_lada_config

QUICK = "configs/quick/lada.yaml"
R50 = "configs/COCO-Detection/lada_R_50_FPN_1x.yaml"
# (name, config, (height, width), timed rounds)
CASES = [
    ("quick 128", QUICK, (128, 128), 30),
    ("quick 320", QUICK, (320, 320), 20),
    ("R-50-FPN 800x1333", R50, (800, 1333), 3),
]
RUNTIMES = ("eager", "torchscript", "onnxruntime")  # onnxruntime on the CPU only


def build(config: str, device: str) -> torch.nn.Module:
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "DATASETS.REGISTER_COCO", []])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def model_size(model: torch.nn.Module) -> Dict[str, float]:
    """Parameters (millions) and their float32 size (MiB)."""
    count = sum(p.numel() for p in model.parameters())
    return {"params_m": count / 1e6, "mib": 4 * count / 2**20}


def runners(model: torch.nn.Module, image: torch.Tensor, folder: str, threads: int,
            device: str) -> Dict[str, Callable[[], object]]:
    """Each runtime as a call on ``image`` that returns once its detections exist."""
    cuda = torch.device(device).type == "cuda"

    def synchronised(fn):
        def call():
            out = fn()
            if cuda:
                torch.cuda.synchronize(device)
            return out
        return call

    def eager():
        with torch.no_grad():
            return export.detections(model, image)

    torchscript = export.trace(model, image)
    calls = {
        "eager": synchronised(eager),
        "torchscript": synchronised(lambda: torchscript(image)),
    }
    if not cuda:  # onnxruntime's CPU build; the CUDA one is not a project dependency
        path = os.path.join(folder, "model.onnx")
        export.export_onnx(model, image, path)
        run_onnx = export.load_exported(path, num_threads=threads)
        cpu_image = image.cpu()
        calls["onnxruntime"] = lambda: run_onnx(cpu_image)
    return calls


def measure(calls: Dict[str, Callable[[], object]], rounds: int, warmup: int, seed: int) -> Dict[str, List[float]]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    seconds: Dict[str, List[float]] = {name: [] for name in calls}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(calls)
        rng.shuffle(order)  # no runtime always first or last
        for name in order:
            start = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def run_case(name: str, config: str, size: Tuple[int, int], rounds: int, warmup: int,
             threads: int, device: str) -> Tuple[List[dict], Dict[str, float]]:
    torch.set_num_threads(threads)
    model = build(config, device)
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *size), generator=generator).float().to(device)
    with tempfile.TemporaryDirectory(prefix="lada-inference-") as folder:
        calls = runners(model, image, folder, threads, device)
        detections = len(calls["eager"]()[1])
        seconds = measure(calls, rounds, warmup, seed=threads)
    rows = []
    for runtime, values in seconds.items():
        ms = np.array(values) * 1e3
        rows.append({
            "case": name, "height": size[0], "width": size[1], "device": device,
            "threads": threads if device == "cpu" else "", "runtime": runtime,
            "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "images_per_s": 1e3 / float(ms.mean()), "calls": len(values), "detections": detections,
        })
    return rows, model_size(model)


def markdown(rows: List[dict]) -> str:
    lines = ["| model, image | device | threads | runtime | median ms | p90 ms | images/s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['device']} | {row['threads']} | {row['runtime']} "
            f"| {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['images_per_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU threads")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls per runtime (TorchScript optimises its graph in the first two)")
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true",
                        help="one 64 px quick case, 1 thread, 1 call: checks the script, measures nothing")
    args = parser.parse_args(argv)
    cases = CASES
    if args.quick:
        cases, args.threads, args.warmup = [("quick 64", QUICK, (64, 64), 1)], [1], 0
    devices = [("cpu", threads) for threads in args.threads]
    if torch.cuda.is_available():
        devices.append(("cuda", torch.get_num_threads()))
    machine = machine_description("cuda" if torch.cuda.is_available() else "cpu")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    rows: List[dict] = []
    sizes: Dict[str, Dict[str, float]] = {}
    with LoadMonitor() as load:
        for name, config, size, rounds in cases:
            for device, threads in devices:
                case_rows, sizes[config] = run_case(name, config, size, rounds, args.warmup, threads, device)
                rows.extend(case_rows)
                print(markdown(case_rows), flush=True)
    print(load.summary())
    return write_results(args.output_dir, "inference", rows, markdown(rows),
                         argv if argv is not None else sys.argv[1:], machine, load,
                         warmup=args.warmup, model_sizes=sizes)


if __name__ == "__main__":
    main()
