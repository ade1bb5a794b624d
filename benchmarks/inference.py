#!/usr/bin/env python
"""Inference speed of one image: eager PyTorch, torch.compile, the ExportedProgram,
AOTInductor and onnxruntime, with 1 and 2 CPU threads (and on CUDA when there is one),
for the quick model at 128 and 320 px and R-50-FPN at 800 x 1333, with each model's
parameters and FLOPs at that size beside each row.

Random weights (seeded; MODEL.WEIGHTS ""), a random image of the case's size. ``eager``
is the model's own forward (``model([{"image": image}])``); ``compile`` is
``torch.compile`` of the export graph (``lada.export.DetectionGraph``: the same
detections; graph breaks where the post-processing's sizes depend on the data);
``exported``, ``aoti`` and ``onnxruntime`` run the exports of ``lada.export`` (dynamic
sizes, made once per model and device; AOTInductor compiles for minutes). After ``--warmup`` untimed
calls (torch.compile compiles in the first) the runtimes take turns, one call each in a
shuffled order, for ``--iters`` rounds, so that a change of the machine's load affects
them alike; reported are the median and 90th percentile latency of one call
(normalisation to NMS) and images per second (1 / mean latency). With random weights
few points pass the score threshold, so NMS has little to do.

    python benchmarks/inference.py               # every case and runtime, 1 and 2 threads
    python benchmarks/inference.py --quick       # one 64 px quick case, 1 thread, 1 call

Writes ``inference.csv``, ``inference.json`` (machine, load, command, date) and
``inference.md`` to ``--output-dir`` (``benchmarks/results``; ``output/benchmarks`` with
``--quick``).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import lada  # noqa: F401  (registers the meta-architecture)
from benchmarks.measure import (LoadMonitor, add_output_dir_argument, machine_description,
                                output_dir, write_results)
from detectron2.modeling import build_model
from lada import export
from lada.analysis import model_cost
from lada.engine.setup import merged_cfg

QUICK = "configs/quick/lada.yaml"
R50 = "configs/COCO-Detection/lada_R_50_FPN_1x.yaml"
# (name, config, (height, width), timed rounds)
CASES = [
    ("quick 128", QUICK, (128, 128), 30),
    ("quick 320", QUICK, (320, 320), 20),
    ("R-50-FPN 800x1333", R50, (800, 1333), 3),
]
RUNTIMES = ("eager", "compile", "exported", "aoti", "onnxruntime")  # onnxruntime: CPU only


def build(config: str, device: str) -> torch.nn.Module:
    cfg = merged_cfg(config, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "DATASETS.REGISTER_COCO", []])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def prepare(model: torch.nn.Module, runtimes: Sequence[str], folder: str) -> Dict[str, Callable]:
    """Each runtime as a function images (N, 3, H, W) -> detections; the exports are made
    here, once for every thread count."""
    functions: Dict[str, Callable] = {}
    if "eager" in runtimes:
        functions["eager"] = lambda images: export.eager_detections(model, images)
    if "compile" in runtimes:
        compiled = torch.compile(export.DetectionGraph(model).eval())
        functions["compile"] = lambda images: compiled(images)
    exports = [r for r in runtimes if r in ("exported", "aoti", "onnxruntime")]
    cuda = model.device.type == "cuda"
    if cuda and "onnxruntime" in exports:
        exports.remove("onnxruntime")  # onnxruntime's CUDA build is not a dependency
    if exports:
        start = time.perf_counter()
        formats = ["onnx" if runtime == "onnxruntime" else runtime for runtime in exports]
        files = export.export_to(model, formats, folder)
        print(f"  exported to {', '.join(formats)} in {time.perf_counter() - start:.0f} s", flush=True)
        functions.update(zip(exports, files))
    return functions


def bind(
    functions: Dict[str, Callable], image: torch.Tensor, threads: int
) -> Dict[str, Callable[[], object]]:
    """Each runtime as a call on ``image`` (1, 3, H, W); an export's file is loaded here,
    onnxruntime with ``threads`` intra-op threads."""
    calls = {}
    for runtime, function in functions.items():
        if isinstance(function, str):
            function = export.load(function, num_threads=threads)
        calls[runtime] = (lambda f: lambda: f(image))(function)
    return calls


def measure(calls: Dict[str, Callable[[], object]], rounds: int, warmup: int, seed: int,
            device: torch.device) -> Dict[str, List[float]]:
    def synchronised(call):
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for call in calls.values():
            for _ in range(warmup):
                synchronised(call)
        seconds: Dict[str, List[float]] = {name: [] for name in calls}
        rng = random.Random(seed)
        for _ in range(rounds):
            order = list(calls)
            rng.shuffle(order)  # no runtime always first or last
            for name in order:
                start = time.perf_counter()
                synchronised(calls[name])
                seconds[name].append(time.perf_counter() - start)
    return seconds


def run_case(name: str, model: torch.nn.Module, functions: Dict[str, Callable], size: Tuple[int, int],
             rounds: int, warmup: int, threads: Sequence[int]) -> List[dict]:
    """The rows of one case: each runtime of ``functions`` (:func:`prepare`) on one image
    of ``size``, with each thread count."""
    device = model.device.type
    cost = model_cost(model, *size, activations=False)
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, *size), generator=generator).float().to(model.device)
    rows = []
    for count in threads:
        torch.set_num_threads(count)
        calls = bind(functions, image, count)
        detections = len(calls["eager"]()[1]) if "eager" in calls else ""
        seconds = measure(calls, rounds, warmup, seed=count, device=model.device)
        for runtime, values in seconds.items():
            ms = np.array(values) * 1e3
            rows.append({
                "case": name, "height": size[0], "width": size[1], "device": device,
                "threads": count if device == "cpu" else "", "runtime": runtime,
                "params_m": round(cost.parameters / 1e6, 2), "gflops": round(cost.flops / 1e9, 2),
                "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                "images_per_s": 1e3 / float(ms.mean()), "calls": len(values), "detections": detections,
            })
        print(markdown(rows[-len(seconds):]), flush=True)
    return rows


def markdown(rows: List[dict]) -> str:
    lines = [
        "| model, image | params (M) | GFLOPs | device | threads | runtime | median ms | p90 ms | images/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['params_m']} | {row['gflops']} | {row['device']} | {row['threads']} "
            f"| {row['runtime']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['images_per_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU threads")
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--cases", nargs="+", choices=[c[0] for c in CASES], default=None,
                        help="the cases to run (default: all)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per runtime")
    add_output_dir_argument(parser)
    parser.add_argument("--quick", action="store_true",
                        help="one 64 px quick case, 1 thread, 1 call: checks the script, measures nothing")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.cases is None or c[0] in args.cases]
    if args.quick:
        cases, args.threads, args.warmup = [("quick 64", QUICK, (64, 64), 1)], [1], 1
    devices = [("cpu", args.threads)]
    if torch.cuda.is_available():
        devices.append(("cuda", [torch.get_num_threads()]))
    machine = machine_description("cuda" if torch.cuda.is_available() else "cpu")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    rows: List[dict] = []
    with LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="lada-inference-") as folder:
        prepared: Dict[Tuple[str, str], Tuple[torch.nn.Module, Dict[str, Callable]]] = {}
        for name, config, size, rounds in cases:
            for device, threads in devices:
                if (config, device) not in prepared:  # the exports take any size: one per model
                    model = build(config, device)
                    subfolder = os.path.join(folder, f"{len(prepared)}")
                    os.makedirs(subfolder)
                    prepared[config, device] = model, prepare(model, args.runtimes, subfolder)
                print(f"{name} on {device}", flush=True)
                rows.extend(run_case(name, *prepared[config, device], size, rounds, args.warmup, threads))
    print(load.summary())
    return write_results(output_dir(args), "inference", rows, markdown(rows),
                         argv if argv is not None else sys.argv[1:], machine, load,
                         warmup=args.warmup, runtimes=args.runtimes)


if __name__ == "__main__":
    main()
