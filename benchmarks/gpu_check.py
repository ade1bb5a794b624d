#!/usr/bin/env python
"""The GPU check: one command that proves (or disproves) the project's CUDA path on a GPU
machine without network, within 8 minutes, and writes ``gpu_check.md``,
``gpu_check.json`` and ``gpu_check.log`` to ``--out`` (docs/gpu.md).

    python3 benchmarks/gpu_check.py --out "$OUT"          # on the GPU machine
    python benchmarks/gpu_check.py --out /tmp/gpu --dry-run  # anywhere: tiny, on the CPU

Parts, each with its own time limit (:data:`BUDGETS`, seconds; 7 min 20 s in all), each
in its own process on a GPU, each failure recorded and the next part run:

1. ``environment``: ``lada`` must import; where it does not, the wheels of
   ``.gpu_wheels/`` (benchmarks/gpu_wheels.py) are installed with ``pip --target`` into
   the work folder, which goes on ``PYTHONPATH`` after the checkout; on a GPU the project
   is then installed with ``--no-deps`` into a folder of its own (a check that it installs
   on that Python; the checkout is what runs); versions and device
   (benchmarks/gpu_parts.py);
2. ``cuda_tests``: the test suite's ``cuda``-marked tests (``pytest -m cuda``);
3. ``assignment``, 4. ``train_step``: benchmarks/gpu_parts.py;
5. ``launch``: ``train_net.py`` through torchrun with ``--dist-url env://`` (NCCL) for 20
   iterations of a quick config with AMP and data-loading workers on a small synthetic
   dataset made here, then ``--num-gpus 1 --eval-only`` on its checkpoint;
6. ``inference``: benchmarks/gpu_parts.py.

Without CUDA (or with ``--dry-run``) the dry run does the CPU-capable parts at tiny sizes
(``gpu_parts.DRY``; ``cuda_tests`` is left to the test suite, which collects and skips
those tests there); after ``environment`` the parts then run in this process, and
``launch`` runs ``train_net.py``'s argument lists through its own functions, for 1
iteration on the CPU without torchrun (tests/engine/test_train_net.py runs it as a
command).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for benchmarks.*

from benchmarks import gpu_report, gpu_wheels

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {"environment": 45, "cuda_tests": 100, "assignment": 75, "train_step": 80,
           "launch": 90, "inference": 50}
MARGIN_S = 8  # a measuring part starts no new cell this close to its limit
ENVIRONMENT_ATTEMPT_S = 20  # one try of `import lada` and the versions (a cold start imports torch)
LOG_TAIL = 200_000  # characters of one command's output kept in gpu_check.log
QUICK_CONFIG = "configs/quick/atss.yaml"
LAUNCH = {  # (iterations, images per batch, loader workers, train / val images, image side)
    "cuda": (20, 16, 4, 64, 16, 128),
    "dry": (1, 2, 0, 4, 2, 64),
}


class Check:
    """The check's state: where it writes, the environment of its commands, the results."""

    def __init__(self, out: Path, work: Path, dry_run: bool, wheels: Path):
        self.out, self.work, self.dry_run, self.wheels = out, work, dry_run, wheels
        self.site = work / "site"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.summary: Dict[str, object] = {
            "mode": "dry run (CPU, tiny sizes)" if dry_run else "CUDA",
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "budgets_s": BUDGETS, "parts": {},
        }
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "gpu_check.log"
        self.log_path.write_text("")

    def log(self, text: str) -> None:
        print(text, flush=True)
        with open(self.log_path, "a") as handle:
            handle.write(text + "\n")

    def command(self, argv: List[str], timeout: float, env: Optional[dict] = None) -> dict:
        """Runs ``argv`` in the checkout in a session of its own (so that a time-out
        kills its children too); its output goes to the log. {command, rc, seconds,
        timed_out, tail}."""
        self.log("+ " + " ".join(argv))
        start = time.monotonic()
        process = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace",
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=max(timeout, 1))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            timed_out = True
        output = output[-LOG_TAIL:]
        self.log(output)
        return {"command": " ".join(argv), "rc": process.returncode, "timed_out": timed_out,
                "seconds": round(time.monotonic() - start, 1), "tail": output[-1500:]}

    def save(self) -> None:
        """Writes gpu_check.json and gpu_check.md as they stand (after every part)."""
        (self.out / "gpu_check.json").write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(gpu_report.markdown(self.summary))

    def run_part(self, name: str, budget: float) -> None:
        """Runs part ``name`` (a method ``part_<name>`` returning its result) and records
        its status, time and result; an exception is recorded, not raised."""
        self.log(f"\n===== {name} (limit {budget:.0f} s) =====")
        start = time.monotonic()
        entry: Dict[str, object] = {"budget_s": budget}
        try:
            entry.update(getattr(self, f"part_{name}")(budget))
        except Exception as error:  # recorded; the next part runs
            entry.update(status="failed", error=f"{type(error).__name__}: {error}",
                         traceback=traceback.format_exc()[-3000:])
            self.log(entry["traceback"])
        entry["seconds"] = round(time.monotonic() - start, 1)
        self.summary["parts"][name] = entry
        self.log(f"----- {name}: {entry.get('status')} in {entry['seconds']} s")
        self.save()

    # The parts. Each returns {"status": ok | failed | timed out | skipped, ...}.

    def measuring_part(self, name: str, budget: float) -> dict:
        """A part of benchmarks/gpu_parts.py: in its own process on a GPU, in this one in
        the dry run; its partial result survives a time-out."""
        result_file = self.work / f"{name}.json"
        result_file.unlink(missing_ok=True)
        if self.dry_run and name != "environment":
            from benchmarks import gpu_parts

            deadline = time.monotonic() + budget - MARGIN_S
            result = gpu_parts.PARTS[name](gpu_parts.DRY, deadline, lambda partial: None)
            return {"status": "ok", "result": result}
        argv = [sys.executable, str(ROOT / "benchmarks" / "gpu_parts.py"), name, "--result", str(result_file),
                "--budget", str(budget - MARGIN_S)] + (["--dry-run"] if self.dry_run else [])
        done = self.command(argv, budget)
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        status = "timed out" if done["timed_out"] else ("ok" if done["rc"] == 0 else "failed")
        entry = {"status": status, "run": done, "result": result}
        if status != "ok":
            entry["error"] = done["tail"].strip().splitlines()[-1] if done["tail"].strip() else status
        return entry

    def part_environment(self, budget: float) -> dict:
        deadline = time.monotonic() + budget
        steps = []
        entry = self.measuring_part("environment", ENVIRONMENT_ATTEMPT_S)
        if entry["status"] != "ok" and self.wheels.is_dir():
            steps.append({"step": "lada did not import", "error": entry.get("error")})
            done = gpu_wheels.install(self.wheels, self.site)
            steps.append({"step": f"install {self.wheels.name}/*.whl into {self.site}", "rc": done.returncode,
                          "output": (done.stdout + done.stderr)[-1500:]})
            self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(self.site)])
            entry = self.measuring_part("environment", min(ENVIRONMENT_ATTEMPT_S, deadline - time.monotonic()))
        if entry["status"] == "ok" and not self.dry_run:
            project = self.command([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                                    "--no-build-isolation", "--target", str(self.work / "project"), str(ROOT)],
                                   max(deadline - time.monotonic(), 5))
            steps.append({"step": "install the project with --no-deps (a check; the checkout is imported)",
                          "rc": project["rc"], "output": project["tail"][-800:]})
        if entry["status"] == "ok":
            sys.path[:0] = [p for p in self.env["PYTHONPATH"].split(os.pathsep) if p not in sys.path]
            self.summary["machine"] = entry["result"]
        entry["steps"] = steps
        return entry

    def part_cuda_tests(self, budget: float) -> dict:
        if self.dry_run:
            return {"status": "skipped", "why": "no CUDA: the test suite collects the cuda-marked tests and skips them"}
        report = self.work / "cuda_tests.xml"
        done = self.command([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={report}", "tests"], budget)
        tests = junit_outcomes(report) if report.exists() else []
        passed = done["rc"] == 0 and tests and all(t["outcome"] in ("passed", "skipped") for t in tests)
        status = "timed out" if done["timed_out"] else ("ok" if passed else "failed")
        return {"status": status, "run": done, "tests": tests}

    def part_assignment(self, budget: float) -> dict:
        return self.measuring_part("assignment", budget)

    def part_train_step(self, budget: float) -> dict:
        return self.measuring_part("train_step", budget)

    def part_inference(self, budget: float) -> dict:
        return self.measuring_part("inference", budget)

    def part_launch(self, budget: float) -> dict:
        from lada.data.synthetic import SyntheticSpec, generate

        deadline = time.monotonic() + budget
        iters, batch, workers, train, val, side = LAUNCH["dry" if self.dry_run else "cuda"]
        paths = generate(self.work / "data", SyntheticSpec(num_train=train, num_val=val, image_size=side))
        output = self.work / "launch"
        overrides = ["DATASETS.REGISTER_COCO",
                    str([["gpu_check_train", str(paths["train"]), str(paths["train_images"])],
                         ["gpu_check_val", str(paths["val"]), str(paths["val_images"])]]),
                    "DATASETS.TRAIN", "('gpu_check_train',)", "DATASETS.TEST", "('gpu_check_val',)",
                    "MODEL.DEVICE", "cpu" if self.dry_run else "cuda", "DATALOADER.NUM_WORKERS", str(workers)]
        common = ["train_net.py", "--config-file", QUICK_CONFIG, "--num-gpus", "1"]
        train = common + ["OUTPUT_DIR", str(output / "train"), "SOLVER.MAX_ITER", str(iters),
                          "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.CHECKPOINT_PERIOD", str(iters),
                          "TEST.EVAL_PERIOD", "0", *overrides]
        if self.dry_run:
            train = [sys.executable, *train]
        else:  # NCCL: one process through torchrun, as on a cluster
            train = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                     *train[:5], "--dist-url", "env://", *train[5:], "SOLVER.AMP.ENABLED", "True"]
        env = dict(self.env, NCCL_DEBUG="INFO")
        runs = {"train": self.train_net(train, deadline - time.monotonic(), env)}
        checkpoint = output / "train" / "model_final.pth"
        if checkpoint.exists():
            evaluate = [sys.executable, *common, "--eval-only", "MODEL.WEIGHTS", str(checkpoint),
                        "OUTPUT_DIR", str(output / "eval"), *overrides]
            runs["eval"] = self.train_net(evaluate, deadline - time.monotonic())
        result = launch_result(output, runs["train"]["tail"], iters)
        ok = all(run["rc"] == 0 for run in runs.values()) and "eval" in runs
        timed_out = any(run["timed_out"] for run in runs.values())
        return {"status": "timed out" if timed_out else ("ok" if ok else "failed"), "runs": runs, "result": result}


    def train_net(self, argv: List[str], timeout: float, env: Optional[dict] = None) -> dict:
        """``argv`` as a command on a GPU; in the dry run, train_net.py's argument list
        (after the interpreter) through its parser, launch check and ``launch`` in this
        process. {command, rc, seconds, timed_out, tail} as :meth:`command`."""
        if not self.dry_run:
            return self.command(argv, timeout, env)
        self.log("+ (in this process) " + " ".join(argv))
        spec = importlib.util.spec_from_file_location("train_net", ROOT / "train_net.py")
        train_net = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(train_net)
        start, rc, tail = time.monotonic(), 0, ""
        try:
            args = train_net.build_argument_parser().parse_args(argv[2:])
            train_net.check_before_launch(args)
            train_net.launch(train_net.main, args.num_gpus, num_machines=args.num_machines,
                             machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
        except (Exception, SystemExit) as error:
            rc, tail = 1, f"{type(error).__name__}: {error}"
            self.log(tail)
        return {"command": " ".join(argv), "rc": rc, "timed_out": False,
                "seconds": round(time.monotonic() - start, 1), "tail": tail}


def junit_outcomes(path: Path) -> List[dict]:
    """[{test, outcome, message}] from pytest's JUnit XML report."""
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "")[:400]
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "message": message})
    return tests


def launch_result(output: Path, train_log: str, iters: int) -> dict:
    """Iterations trained, the last losses, NCCL's log lines, and the evaluation's AP."""
    metrics = output / "train" / "metrics.json"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    trained = [r for r in records if "total_loss" in r]
    result = {"iterations_asked": iters, "last_iteration": trained[-1]["iteration"] + 1 if trained else 0,
              "last_losses": {k: v for k, v in trained[-1].items() if k.startswith("loss")} if trained else {},
              "nccl_log_lines": sum("NCCL INFO" in line for line in train_log.splitlines())}
    results = output / "eval" / "eval_results.json"
    if results.exists():
        result["eval"] = json.loads(results.read_text())
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of gpu_check.md/.json/.log")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lada-gpu-check"),
                        help="scratch folder: installed wheels, data, runs")
    parser.add_argument("--wheels", type=Path, default=gpu_wheels.WHEEL_DIR)
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU run (automatic without CUDA)")
    parser.add_argument("--parts", nargs="+", choices=list(BUDGETS), default=list(BUDGETS),
                        help="a subset, e.g. to rerun a failed part (environment always runs first)")
    args = parser.parse_args(argv)
    dry_run = args.dry_run or not cuda_available()
    check = Check(args.out.absolute(), args.work.absolute(), dry_run, args.wheels.absolute())
    check.log(f"GPU check, {check.summary['mode']}, in {ROOT}")
    start = time.monotonic()
    for name in dict.fromkeys(["environment", *args.parts]):
        if name != "environment" and check.summary["parts"]["environment"]["status"] != "ok":
            check.summary["parts"][name] = {"status": "skipped", "why": "the environment part failed"}
            continue
        check.run_part(name, BUDGETS[name])
    check.summary["seconds"] = round(time.monotonic() - start, 1)
    check.save()
    check.log(f"GPU check done in {check.summary['seconds']} s: {check.out / 'gpu_check.md'}")
    return check.summary


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False where torch does not import)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
