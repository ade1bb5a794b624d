"""``gpu_check.md``: the GPU check's summary (benchmarks/gpu_check.py) as markdown, and
the check of its results against the targets of docs/gpu.md.

Only the standard library is imported: the summary is written even where torch or the
project does not import.
"""
from __future__ import annotations

from typing import Dict, List, Optional

__all__ = ["markdown", "targets"]

# The targets of docs/gpu.md: assignment time and peak memory on CUDA at G = 1,000, and
# the training step against detectron2's own FCOS.
TARGET_GTS = 1000
TARGET_X_ATSS = 1.5
TARGET_PEAK_MIB = 256.0
TARGET_X_DETECTRON2_FCOS = 1.1
PARITY_TEST = "test_cuda_gives_the_cpu_positives"  # tests/matchers/test_cuda.py


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ratio(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _table(header: List[str], rows: List[List[object]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows), ""]


def _result(summary: dict, part: str) -> Optional[dict]:
    return (summary["parts"].get(part) or {}).get("result")


def targets(summary: dict) -> List[dict]:
    """[{target, verdict (met / not met / not measured), detail}] for docs/gpu.md's
    targets, from the summary's CUDA results (a dry run measures none of them)."""
    cuda = summary["mode"] == "CUDA"
    found: List[dict] = []
    tests = (summary["parts"].get("cuda_tests") or {}).get("tests") or []
    parity = [t for t in tests if PARITY_TEST in t["test"]]
    found.append(_verdict(
        "every matcher's positives equal on CUDA and CPU (cuda tests)", cuda and bool(parity),
        all(t["outcome"] == "passed" for t in parity),
        ", ".join(f"{t['test'].rsplit('::', 1)[-1]} {t['outcome']}" for t in parity if t["outcome"] != "passed")))
    rows = [r for r in (_result(summary, "assignment") or {}).get("rows", [])
            if r["device"] == "cuda" and r["num_gts"] == TARGET_GTS]
    slow = [f"{r['matcher']} {r['x_atss']:.2f}x" for r in rows if (r.get("x_atss") or 0) > TARGET_X_ATSS]
    found.append(_verdict(f"no matcher above {TARGET_X_ATSS}x atss at G = {TARGET_GTS} (CUDA)",
                          cuda and bool(rows), not slow, ", ".join(slow)))
    big = [f"{r['matcher']} {r['peak_mib']:.0f} MiB" for r in rows if r["peak_mib"] > TARGET_PEAK_MIB]
    found.append(_verdict(f"no matcher above {TARGET_PEAK_MIB:.0f} MiB at G = {TARGET_GTS} (CUDA)",
                          cuda and bool(rows), not big, ", ".join(big)))
    all_cuda = [r for r in (_result(summary, "assignment") or {}).get("rows", []) if r["device"] == "cuda"]
    growing = _syncs_growing_with_gts(all_cuda)
    found.append(_verdict("no host sync inside a matcher's GT loop (syncs per call do not grow with G)",
                          cuda and bool(all_cuda), not growing, ", ".join(growing)))
    steps = (_result(summary, "train_step") or {}).get("rows", [])
    over = [f"{r['matcher']} {r['x_detectron2_fcos']:.2f}x" for r in steps
            if r["matcher"] != "detectron2_fcos" and (r.get("x_detectron2_fcos") or 0) > TARGET_X_DETECTRON2_FCOS]
    found.append(_verdict(f"train step of every matcher within {TARGET_X_DETECTRON2_FCOS}x detectron2's FCOS",
                          cuda and bool(steps), not over, ", ".join(over)))
    return found


def _verdict(target: str, measured: bool, met: bool, detail: str) -> dict:
    verdict = "not measured" if not measured else ("met" if met else "not met")
    return {"target": target, "verdict": verdict, "detail": detail if measured else ""}


def _syncs_growing_with_gts(rows: List[dict]) -> List[str]:
    """Matchers whose host syncs per call at the largest G exceed those at the smallest."""
    growing = []
    for name in dict.fromkeys(r["matcher"] for r in rows):
        mine = sorted((r for r in rows if r["matcher"] == name), key=lambda r: r["num_gts"])
        if len(mine) > 1 and (mine[-1]["host_syncs"] or 0) > (mine[0]["host_syncs"] or 0):
            growing.append(f"{name} {mine[0]['host_syncs']} -> {mine[-1]['host_syncs']}")
    return growing


def markdown(summary: dict) -> str:
    """The whole summary: machine, parts, targets, then each part's tables."""
    machine = summary.get("machine") or {}
    lines = [f"# GPU check, {summary['mode']}", "",
             f"Started {summary['started']}; {_cell(summary.get('seconds'))} s in all. "
             f"Device: {machine.get('device', 'none')}; Python {machine.get('python', '?')}, "
             f"torch {machine.get('torch', '?')} (CUDA {machine.get('torch_cuda')}), "
             f"{machine.get('detectron2', '')}.", ""]
    lines += _table(["part", "status", "seconds", "limit s", "error"],
                    [[name, part.get("status"), part.get("seconds"), part.get("budget_s"),
                      (part.get("error") or part.get("why") or "").replace("|", "/")[:200]]
                     for name, part in summary["parts"].items()])
    lines += ["## Targets", ""] + _table(["target", "verdict", "detail"],
                                         [[t["target"], t["verdict"], t["detail"]] for t in targets(summary)])
    for name, render in (("environment", _environment), ("cuda_tests", _cuda_tests),
                         ("assignment", _assignment), ("train_step", _train_step),
                         ("launch", _launch), ("inference", _inference)):
        if name in summary["parts"]:
            lines += [f"## {name}", ""] + render(summary["parts"][name])
    return "\n".join(lines) + "\n"


def _environment(part: dict) -> List[str]:
    lines = [f"- {step['step']}: rc {step.get('rc', '')} {step.get('error') or ''}".rstrip()
             for step in part.get("steps", [])]
    packages: Dict[str, str] = (part.get("result") or {}).get("packages", {})
    return lines + [""] + _table(["package", "version"], sorted(packages.items()))


def _cuda_tests(part: dict) -> List[str]:
    tests = part.get("tests", [])
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    lines = [", ".join(f"{n} {o}" for o, n in counts.items()), ""]
    bad = [[t["test"], t["outcome"], t["message"].replace("|", "/").replace("\n", " ")[:300]]
           for t in tests if t["outcome"] in ("failed", "error")]
    return lines + (_table(["test", "outcome", "message"], bad) if bad else [])


def _assignment(part: dict) -> List[str]:
    result = part.get("result") or {}
    rows = result.get("rows", [])
    cpu = {(r["matcher"], r["num_gts"]): r for r in rows if r["device"] == "cpu"}
    table = []
    for r in sorted(rows, key=lambda r: (r["device"] != "cuda", r["num_gts"], r["matcher"])):
        if r["device"] == "cpu" and any(x["device"] == "cuda" for x in rows):
            continue  # shown next to the CUDA row
        other = cpu.get((r["matcher"], r["num_gts"]), {}) if r["device"] == "cuda" else {}
        table.append([f"`{r['matcher']}`", r["num_gts"], r["device"], r["ms"], _ratio(r.get("x_atss")), r["peak_mib"],
                      r.get("host_syncs"), r["positives"], other.get("ms"), other.get("peak_mib"),
                      other.get("positives")])
    scene = "x".join(map(str, result.get("scene", [])))
    lines = [f"One {scene} image; ms: median wall time of a call; host syncs: of one call "
             "(torch.cuda.set_sync_debug_mode); CPU columns: the same cell on the CPU.", ""]
    lines += _table(["matcher", "G", "device", "ms", "x atss", "peak MiB", "host syncs", "positives",
                     "CPU ms", "CPU peak MiB", "CPU positives"], table)
    skipped = result.get("skipped", [])
    return lines + ([f"Skipped (time limit): {skipped}", ""] if skipped else [])


def _train_step(part: dict) -> List[str]:
    result = part.get("result") or {}
    lines = [f"{result.get('images')} images of {result.get('size')} px, {result.get('gts_per_image')} GT boxes "
             f"each, AMP {result.get('amp')}, {result.get('config', '')}; median of {result.get('rounds')} "
             "round-robin steps.", ""]
    return lines + _table(["model", "step ms", "x detectron2 FCOS", "x fcos", "in the matcher ms", "step peak MiB"],
                          [[f"`{r['matcher']}`", r["step_ms"], _ratio(r.get("x_detectron2_fcos")), _ratio(r.get("x_fcos")),
                            r.get("assign_ms"), r.get("peak_mib")] for r in result.get("rows", [])])


def _launch(part: dict) -> List[str]:
    lines = [f"- `{run['command']}`: rc {run['rc']}, {run['seconds']} s" + (" (timed out)" if run["timed_out"] else "")
             for run in part.get("runs", {}).values()]
    result = part.get("result") or {}
    losses = ", ".join(f"{k} {v:.3f}" for k, v in result.get("last_losses", {}).items())
    metrics = (result.get("eval") or {}).get("metrics", {})
    lines += ["", f"Iterations: {result.get('last_iteration')} of {result.get('iterations_asked')}; "
              f"last losses: {losses}; NCCL log lines: {result.get('nccl_log_lines')}; "
              f"--eval-only bbox/AP: {metrics.get('bbox/AP', 'none')} (full results in gpu_check.json)", ""]
    return lines


def _inference(part: dict) -> List[str]:
    result = part.get("result") or {}
    return _table(["model, image", "device", "runtime", "median ms", "p90 ms", "images/s"],
                  [[r["case"], r["device"], r["runtime"], r["median_ms"], r["p90_ms"], r["images_per_s"]]
                   for r in result.get("rows", [])])
