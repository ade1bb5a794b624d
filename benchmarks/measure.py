"""How the benchmarks measure: the crowded COCO-size scene, peak tensor memory, median
wall time, and the machine and its load while measuring.

Peak memory is the same quantity on both devices: the largest number of bytes held at
once by tensors allocated *during* the call (its inputs excluded), as the allocator
counts them. CUDA: ``torch.cuda.max_memory_allocated``. CPU: ``torch.profiler`` with
``profile_memory=True``, whose allocation events carry the CPU allocator's running
total. Unlike a process's peak resident memory, this does not depend on what ran
before in the process, on the C library returning freed pages, or on other processes,
so warm-up runs and repeats in one process are allowed; it does not count Python
objects or numpy arrays (the matchers allocate torch tensors only).
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple, Union

import torch
from torch.profiler import ProfilerActivity, profile

from lada.matchers import MatchInputs

__all__ = [
    "LoadMonitor",
    "add_output_dir_argument",
    "crowded_inputs",
    "machine_description",
    "output_dir",
    "round_robin_seconds",
    "peak_memory_bytes",
]

COCO_SIZE = (800, 1333)
FPN_STRIDES = (8, 16, 32, 64, 128)
# Lines the profiler prints on stderr at every start and stop (kineto's tracing points,
# its failed GPU query on CPU-only machines, the allocator's note about blocks freed
# during profiling that were allocated before it): not errors, filtered out.
_PROFILER_NOISE = ("USDT:", "gpuGetDeviceCount", "allocated before the profiling started")


def crowded_inputs(num_gts: int, device: str = "cpu", seed: int = 0,
                   image_size: Tuple[int, int] = COCO_SIZE, num_classes: int = 80,
                   max_side: float = 304.0) -> MatchInputs:
    """One image of ``image_size`` (H, W) with P3-P7 anchor points (R = 22,300 at
    800x1333), ``num_gts`` seeded random GT boxes of 4 to ``max_side`` pixels a side
    (``4 + u^2 (max_side - 4)``, u uniform: mostly small; 124 as in aerial images, 304
    a mix of sizes), clipped to the image, random logits for ``num_classes`` classes
    (about -4, as early in training) and predicted boxes of 40 pixels around each
    point, jittered; at the last step of a 90k schedule, so that a matcher with a
    warm-up (tal's ATSS) is measured in its own rule."""
    generator = torch.Generator().manual_seed(seed)
    height, width = image_size
    points, point_strides, counts = [], [], []
    for s in FPN_STRIDES:
        ys, xs = torch.meshgrid(torch.arange((height + s - 1) // s),
                                torch.arange((width + s - 1) // s), indexing="ij")
        level = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float() * s + s / 2
        points.append(level)
        point_strides.append(torch.full((len(level),), float(s)))
        counts.append(len(level))
    points = torch.cat(points)
    corner = torch.rand(num_gts, 2, generator=generator) * torch.tensor([width - 40.0, height - 40.0])
    sizes = 4 + torch.rand(num_gts, 2, generator=generator) ** 2 * (max_side - 4)
    far = torch.minimum(corner + sizes, torch.tensor([width - 1.0, height - 1.0]))
    pred = torch.cat([points - 20, points + 20], dim=1) + torch.randn(len(points), 4, generator=generator)
    return MatchInputs(
        points=points.to(device),
        strides=torch.cat(point_strides).to(device),
        num_points_per_level=counts,
        gt_boxes=[torch.cat([corner, far], dim=1).to(device)],
        gt_classes=[torch.randint(0, num_classes, (num_gts,), generator=generator).to(device)],
        pred_logits=(torch.randn(1, len(points), num_classes, generator=generator) - 4).to(device),
        pred_boxes=pred[None].to(device),
        pred_aux=torch.randn(1, len(points), generator=generator).to(device),
        iteration=89_999,
        max_iter=90_000,
    )


def peak_memory_bytes(fn: Callable[[], object], device: str = "cpu") -> Tuple[object, int]:
    """Runs ``fn()`` once; returns its result and the peak bytes of the tensors it
    allocated (module docstring)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - base
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    allocations = sorted(
        (event for event in _walk(prof.profiler.kineto_results.experimental_event_tree())
         if event.tag == torch._C._profiler._EventType.Allocation
         and event.extra_fields.device.type == "cpu"),
        key=lambda event: event.start_time_ns,
    )
    if not allocations:
        return result, 0
    first = allocations[0].extra_fields
    base = first.total_allocated - first.alloc_size  # the running total before the call
    return result, max(event.extra_fields.total_allocated for event in allocations) - base


def round_robin_seconds(
    calls: Dict[str, Callable[[], object]],
    device: str = "cpu",
    repeats: Union[int, Dict[str, int]] = 5,
    warmup: Union[int, Dict[str, int]] = 1,
) -> Dict[str, Tuple[float, float]]:
    """{name: (median wall time, median process CPU time)} of each call, timed in turns:
    after each call's ``warmup`` untimed runs, every round times one run of each call
    that still needs one (``repeats`` per call), so that a change of the machine's speed
    during the measurement (other processes, other virtual machines on the host) weighs
    on all calls alike. On CUDA each run is synchronised before the clocks stop. Wall
    time is what a user waits; CPU time (user + system, all threads) is less sensitive
    to other processes sharing the cores."""
    repeats = {name: repeats for name in calls} if isinstance(repeats, int) else repeats
    warmup = {name: warmup for name in calls} if isinstance(warmup, int) else warmup
    cuda = torch.device(device).type == "cuda"
    for name, call in calls.items():
        for _ in range(warmup[name]):
            call()
    wall: Dict[str, List[float]] = {name: [] for name in calls}
    cpu: Dict[str, List[float]] = {name: [] for name in calls}
    for round_ in range(max(repeats.values(), default=0)):
        for name, call in calls.items():
            if round_ >= repeats[name]:
                continue
            if cuda:
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            if cuda:
                torch.cuda.synchronize(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in calls}


def machine_description(device: str = "cpu") -> Dict[str, object]:
    """CPU model, cores, torch and its thread count, and the GPU when ``device`` is CUDA."""
    info: Dict[str, object] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": device,
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class LoadMonitor:
    """Whether the machine was busy while measuring: the load averages at start and stop
    and the other processes that used at least ``min_share`` of one core in between
    (from ``/proc``; empty where it does not exist)."""

    min_share: float = 0.05
    _start: float = 0.0
    _cpu: Dict[int, Tuple[str, float]] = field(default_factory=dict)
    load_before: Tuple[float, ...] = ()
    load_after: Tuple[float, ...] = ()
    others: List[Tuple[str, float]] = field(default_factory=list)

    def __enter__(self) -> "LoadMonitor":
        self.load_before = os.getloadavg()
        self._cpu = _process_cpu_seconds()
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        after = _process_cpu_seconds()
        self.load_after = os.getloadavg()
        mine = {os.getpid()} | _descendants(os.getpid())
        shares = []
        for pid, (name, seconds) in after.items():
            if pid in mine:
                continue
            share = (seconds - self._cpu.get(pid, (name, 0.0))[1]) / elapsed
            if share >= self.min_share:
                shares.append((name, share))
        self.others = sorted(shares, key=lambda item: -item[1])

    def summary(self) -> str:
        """One line: load averages and the busy processes (share of one core)."""
        load = lambda values: "/".join(f"{v:.2f}" for v in values)  # noqa: E731
        others = ", ".join(f"{name} {share:.0%}" for name, share in self.others) or "none"
        return (f"load average (1/5/15 min) before {load(self.load_before)}, after "
                f"{load(self.load_after)}; other processes using CPU meanwhile: {others}")


MEASURED_RESULTS = "benchmarks/results"
"""Where a measuring run writes by default: the tables the docs cite (tracked)."""
QUICK_RESULTS = "output/benchmarks"
"""Where a ``--quick`` run (a check of the script, no measurement) writes by default, so
that it never replaces the measured tables."""


def add_output_dir_argument(parser) -> None:
    """``--output-dir``: by default ``MEASURED_RESULTS``, or ``QUICK_RESULTS`` with
    ``--quick``; read it with :func:`output_dir`."""
    parser.add_argument("--output-dir", help=f"default {MEASURED_RESULTS}; with --quick "
                        f"{QUICK_RESULTS}, so that a check never replaces the measured tables")


def output_dir(args) -> str:
    """The ``--output-dir`` of parsed ``args`` (:func:`add_output_dir_argument`)."""
    return args.output_dir or (QUICK_RESULTS if args.quick else MEASURED_RESULTS)


def write_results(
    output_dir: str, name: str, rows: List[Dict[str, object]], table: str, argv: Sequence[str],
    machine: Dict[str, object], load: LoadMonitor, **settings: object,
) -> Dict[str, Path]:
    """Writes a benchmark's ``<name>.csv`` (``rows``), ``<name>.md`` (``table``) and
    ``<name>.json`` (the command, UTC date, ``machine``, the benchmark's ``settings`` and
    how busy the machine was) into ``output_dir``; prints the table and returns the paths."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {suffix: output / f"{name}.{suffix}" for suffix in ("csv", "json", "md")}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "command": " ".join(["python", f"benchmarks/{name}.py", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine, **settings,
        "load_before": load.load_before, "load_after": load.load_after,
        "other_processes": [{"command": command, "cpu_share": share} for command, share in load.others],
    }
    paths["json"].write_text(json.dumps(meta, indent=2) + "\n")
    paths["md"].write_text(table)
    print(table)
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return {path.name: path for path in paths.values()}


def _walk(nodes) -> Iterator:
    for node in nodes:
        yield node
        yield from _walk(node.children)


@contextmanager
def _quiet_stderr():
    """Captures file descriptor 2 (the profiler's C++ messages) and re-emits every line
    that is not known profiler noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not any(noise in line for noise in _PROFILER_NOISE):
                    print(line, file=sys.stderr)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _proc_stats() -> Dict[int, Tuple[str, List[str]]]:
    """{pid: (name, fields after the name)} from /proc/<pid>/stat of every readable
    process (empty where there is no /proc)."""
    stats = {}
    if not os.path.isdir("/proc"):
        return stats
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        stats[int(entry)] = (name, text[text.rindex(")") + 2 :].split())
    return stats


def _process_cpu_seconds() -> Dict[int, Tuple[str, float]]:
    """{pid: (command, user + system CPU seconds)} of every readable process."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    result = {}
    for pid, (name, fields) in _proc_stats().items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        result[pid] = ((command or name)[:80], (int(fields[11]) + int(fields[12])) / ticks)
    return result


def _descendants(pid: int) -> set:
    """Pids of all processes descending from ``pid`` (from /proc; empty elsewhere)."""
    children: Dict[int, List[int]] = {}
    for child, (_, fields) in _proc_stats().items():
        children.setdefault(int(fields[1]), []).append(child)
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
