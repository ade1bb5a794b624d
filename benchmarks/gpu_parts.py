#!/usr/bin/env python
"""The measuring parts of the GPU check (benchmarks/gpu_check.py, docs/gpu.md), each a
function that reports its rows as it goes, so that a part stopped at its time limit keeps
what it measured:

* ``environment``: Python, torch, CUDA device, the carried packages' versions, and that
  ``lada`` imports (it is the first thing that fails when the set-up is incomplete);
* ``assignment``: every registered matcher's assignment cost on the crowded COCO-size
  scene of ``benchmarks/measure.py`` at each G, on CUDA and then on the CPU: median time,
  peak memory and, on CUDA, the host synchronisations of one call;
* ``train_step``: ``benchmarks/train_step.py``'s round-robin step time and peak memory of
  every matcher and of detectron2's own FCOS on one backbone, float16 AMP on CUDA;
* ``inference``: ``benchmarks/inference.py``'s eager and exported latency per case.

:data:`FULL` sizes them for a GPU; :data:`DRY` is the CPU-sized dry run that the test
suite exercises. Run one part in its own process:

    python benchmarks/gpu_parts.py assignment --result part.json [--dry-run]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for benchmarks.*

Report = Callable[[dict], None]  # receives the part's result so far, after each step

CARRIED = ("detectron2", "fvcore", "iopath", "yacs", "omegaconf", "hydra-core", "termcolor",
           "pycocotools", "antlr4-python3-runtime")
MACHINE = ("numpy", "pillow", "torchvision", "onnx", "onnxruntime", "scipy", "matplotlib",
           "opencv-python-headless", "scikit-learn", "pytest", "setuptools")
ROOT = Path(__file__).resolve().parent.parent
R50 = str(ROOT / "configs/COCO-Detection/fcos_R_50_FPN_1x.yaml")
QUICK_BASE = str(ROOT / "configs/quick/Base-Quick.yaml")
QUICK = str(ROOT / "configs/quick/lada.yaml")


@dataclass(frozen=True)
class Sizes:
    """What the parts measure: on a GPU (:data:`FULL`) or in the dry run (:data:`DRY`)."""

    devices: Tuple[str, ...]  # assignment cost: CUDA first, then the CPU figures
    num_gts: Tuple[int, ...]
    scene: Tuple[int, int]  # (H, W) of the assignment scene
    assign_repeats: int  # timed calls per cell; the CPU's cells above G = 100 get one
    train_config: str
    train_images: int
    train_size: Tuple[int, int]
    train_gts: int
    train_rounds: int
    train_warmup: int
    amp: bool
    inference_cases: Tuple[Tuple[str, str, Tuple[int, int], int], ...]  # name, config, (H, W), rounds
    inference_warmup: int


FULL = Sizes(("cuda", "cpu"), (10, 100, 1000, 5000), (800, 1333), 5, R50, 2, (800, 1333), 10,
             5, 2, True, (("quick 128", QUICK, (128, 128), 30), ("quick 320", QUICK, (320, 320), 20),
                          ("R-50-FPN 800x1333", R50, (800, 1333), 10)), 2)
DRY = Sizes(("cpu",), (10,), (128, 160), 1, QUICK_BASE, 1, (64, 64), 3, 1, 0, False,
            (("quick 64", QUICK, (64, 64), 1),), 0)


def environment(sizes: Sizes, deadline: float, report: Report) -> dict:
    """Versions and device; fails (ImportError) where ``lada`` does not import."""
    import torch

    import lada

    result = {
        "python": platform.python_version(), "executable": sys.executable,
        "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda, "detectron2": lada.compat.detectron2_in_use(),
        "packages": {name: _version(name) for name in CARRIED + MACHINE},
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        result.update(device=torch.cuda.get_device_name(0), capability=f"{properties.major}.{properties.minor}",
                      memory_gib=round(properties.total_memory / 2**30, 1))
        probes = {  # informative only: one that fails is recorded, not raised
            "cudnn": torch.backends.cudnn.version, "nccl": torch.cuda.nccl.version,
            "bf16": torch.cuda.is_bf16_supported, "tf32_matmul": lambda: torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": lambda: torch.backends.cudnn.allow_tf32,
        }
        for name, probe in probes.items():
            try:
                result[name] = str(probe())
            except Exception as error:
                result[name] = f"unknown ({type(error).__name__}: {error})"
    report(result)
    return result


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def host_syncs(call: Callable[[], object]) -> int:
    """The host synchronisations one ``call`` makes on CUDA, as counted by
    ``torch.cuda.set_sync_debug_mode('warn')`` (one warning per synchronising operation:
    ``.item()``, ``nonzero``, copies to the host, ...)."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def assignment(sizes: Sizes, deadline: float, report: Report) -> dict:
    """One row per (device, G, matcher); a cell not started before ``deadline`` is
    recorded as skipped."""
    from benchmarks.matchers import build_matchers
    from benchmarks.measure import crowded_inputs, peak_memory_bytes, round_robin_seconds
    from lada.matchers import MATCHER_REGISTRY

    names = sorted(name for name, _ in MATCHER_REGISTRY)
    result: Dict[str, object] = {"matchers": names, "scene": list(sizes.scene), "rows": [], "skipped": []}
    for device in sizes.devices:
        matchers = build_matchers(names, with_sklearn=False)
        cuda = device == "cuda"
        for count in sizes.num_gts:
            if time.monotonic() > deadline:
                result["skipped"].append({"device": device, "num_gts": count, "why": "time limit"})
                continue
            inputs = crowded_inputs(count, device, image_size=sizes.scene)
            calls = {name: (lambda m=matcher: m(inputs)) for name, matcher in matchers.items()}
            peaks = {name: peak_memory_bytes(call, device) for name, call in calls.items()}  # also the warm-up
            syncs = {name: host_syncs(call) for name, call in calls.items()} if cuda else {}
            repeats = sizes.assign_repeats if cuda or count <= 100 else 1
            times = round_robin_seconds(calls, device, repeats=repeats, warmup=0)
            for name, (match, peak) in peaks.items():
                result["rows"].append({
                    "device": device, "matcher": name, "num_gts": count, "ms": 1e3 * times[name][0],
                    "peak_mib": peak / 2**20, "host_syncs": syncs.get(name),
                    "positives": int(match.foreground.sum()),
                })
            report(result)
    for row in result["rows"]:
        atss = [r for r in result["rows"] if r["matcher"] == "atss" and r["device"] == row["device"]
                and r["num_gts"] == row["num_gts"]]
        row["x_atss"] = row["ms"] / atss[0]["ms"] if atss else None
    report(result)
    return result


def train_step(sizes: Sizes, deadline: float, report: Report) -> dict:
    """``benchmarks/train_step.py``'s measurement of every matcher and detectron2's FCOS."""
    import torch

    from benchmarks import train_step as bench
    from detectron2.config import get_cfg
    from lada.config import add_lada_config
    from lada.matchers import MATCHER_REGISTRY

    device = "cuda" if "cuda" in sizes.devices else "cpu"
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(sizes.train_config)
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "SOLVER.BASE_LR", 0.0,
                         "SOLVER.IMS_PER_BATCH", sizes.train_images])
    height, width = sizes.train_size
    batch = bench.make_batch(sizes.train_images, height, sizes.train_gts, cfg.MODEL.FCOS.NUM_CLASSES, width=width)
    names = sorted(name for name, _ in MATCHER_REGISTRY)
    result = {"config": sizes.train_config, "device": device, "images": sizes.train_images,
              "size": [height, width], "gts_per_image": sizes.train_gts, "amp": sizes.amp,
              "rounds": sizes.train_rounds, "warmup": sizes.train_warmup}
    result["rows"] = bench.measure(cfg, names, batch, sizes.train_rounds, sizes.train_warmup,
                                   amp=sizes.amp, detectron2_fcos=True)
    if device == "cuda":
        torch.cuda.synchronize()
    report(result)
    return result


# The export runtimes the check times: the ExportedProgram needs seconds to make;
# AOTInductor compiles for minutes and torch.compile for tens of seconds per size, more
# than the part's budget (benchmarks/inference.py runs them all).
INFERENCE_RUNTIMES = ("eager", "exported")


def inference(sizes: Sizes, deadline: float, report: Report) -> dict:
    """``benchmarks/inference.py``'s cases on the part's device (the CPU in the dry run),
    eager and the exported program (:data:`INFERENCE_RUNTIMES`), one export per model."""
    import tempfile

    import torch

    from benchmarks.inference import build, prepare, run_case

    device = "cuda" if "cuda" in sizes.devices else "cpu"
    result: Dict[str, object] = {"device": device, "rows": [], "skipped": []}
    prepared: Dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="lada-gpu-inference-") as folder:
        for name, config, size, rounds in sizes.inference_cases:
            if time.monotonic() > deadline:
                result["skipped"].append({"case": name, "why": "time limit"})
                continue
            if config not in prepared:  # the exports take any size
                model = build(config, device)
                subfolder = Path(folder) / str(len(prepared))
                subfolder.mkdir()
                prepared[config] = model, prepare(model, INFERENCE_RUNTIMES, str(subfolder))
            result["rows"].extend(run_case(name, *prepared[config], size, rounds,
                                           sizes.inference_warmup, [torch.get_num_threads()]))
            report(result)
    return result


PARTS: Dict[str, Callable[[Sizes, float, Report], dict]] = {
    "environment": environment, "assignment": assignment, "train_step": train_step,
    "inference": inference,
}


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--result", type=Path, required=True, help="JSON file the part writes")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds the part may start work in")
    parser.add_argument("--dry-run", action="store_true", help="the CPU-sized dry run")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget

    def report(result: dict) -> None:
        args.result.write_text(json.dumps(result, indent=1, default=str))

    PARTS[args.part](DRY if args.dry_run else FULL, deadline, report)


if __name__ == "__main__":
    main()
