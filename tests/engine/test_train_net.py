"""train_net.py end to end on a tiny synthetic dataset: train, --eval-only, --resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from lada.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=8, num_val=4))


def _command(tiny, output_dir, *extra):
    return [
        sys.executable, str(REPO / "train_net.py"),
        "--config-file", str(REPO / "configs/quick/atss.yaml"),
        "--dataset", "tiny_train", str(tiny["train"]), str(tiny["train_images"]),
        "--dataset", "tiny_val", str(tiny["val"]), str(tiny["val_images"]),
        *extra,
        "DATASETS.REGISTER_COCO", "[]",
        "DATASETS.TRAIN", "('tiny_train',)",
        "DATASETS.TEST", "('tiny_val',)",
        "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "3",
        "MODEL.FCOS.SCORE_THRESH_TEST", "0.0",
        "OUTPUT_DIR", str(output_dir),
    ]


def _train_net(tiny, output_dir, *extra):
    command = _command(tiny, output_dir, *extra)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _detections(output_dir):
    path = output_dir / "inference" / "tiny_val" / "coco_instances_results.json"
    return json.loads(path.read_text())


def test_train_then_eval_only_reproduces_then_resume_continues(tiny, tmp_path):
    out = tmp_path / "run"
    log = _train_net(tiny, out, "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)")
    assert "Evaluation results for bbox" in log
    trained = _detections(out)
    assert len(trained) > 0
    # slender-object AP beside the usual table: log, metrics.json, TensorBoard
    assert "Evaluation results for bbox by aspect ratio" in log
    last = json.loads((out / "metrics.json").read_text().splitlines()[-1])
    assert {"bbox/AP", "bbox/AP@ar<3", "bbox/AP@ar>=3", "bbox/AP-bar@ar>=3"} <= set(last)
    events = b"".join(p.read_bytes() for p in out.glob("events.out.tfevents.*"))
    assert b"bbox/AP@ar>=3" in events

    eval_dir = tmp_path / "eval"
    log = _train_net(tiny, eval_dir, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"))
    assert _detections(eval_dir) == trained
    assert "Evaluation results for bbox by aspect ratio" in log
    # --eval-only also writes its results to a file, with the keys of metrics.json
    results = json.loads((eval_dir / "eval_results.json").read_text())
    val = json.loads(tiny["val"].read_text())
    assert results["datasets"] == {
        "tiny_val": {"images": len(val["images"]), "annotations": len(val["annotations"])}
    }
    assert results["weights"] == str(out / "model_final.pth")
    for key in ("bbox/AP", "bbox/AP75", "bbox/AP@ar>=3"):
        assert results["metrics"][key] == pytest.approx(last[key], nan_ok=True)

    checkpoint = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["iteration"] == 3
    assert checkpoint["model"]["loss.loss_normalizer"].item() > 0

    log = _train_net(tiny, out, "--resume", "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "(3,)")
    assert "Starting training from iteration 4" in log
    resumed = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert resumed["iteration"] == 5


def test_two_processes_on_the_cpu(tiny, tmp_path):
    log = _train_net(tiny, tmp_path / "ddp", "--num-gpus", "2", "SOLVER.MAX_ITER", "2",
                     "SOLVER.STEPS", "(1,)", "MODEL.MATCHER.NAME", "lada")
    assert "World size: 2" in log
    assert "on 2 devices" in log  # distributed inference as well
    assert (tmp_path / "ddp" / "model_final.pth").is_file()


def test_ctrl_c_stops_two_processes_with_a_checkpoint_and_no_traceback(tiny, tmp_path):
    # the terminal's Ctrl-C reaches the process group: both training processes stop after
    # the same iteration with rank 0's checkpoint, and the process that spawned them waits
    # and exits 130 without the traceback of its wait (lada/engine/launch.py)
    out = tmp_path / "ddp"
    run = subprocess.Popen(
        _command(tiny, out, "--num-gpus", "2", "SOLVER.MAX_ITER", "100000",
                 "SOLVER.STEPS", "(90000,)", "SOLVER.CHECKPOINT_PERIOD", "100000"),
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,  # as a terminal's job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while "Starting training from iteration 0" not in _text(out / "log.txt"):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    stopped = [line for line in (stdout + stderr).splitlines() if "stopped by SIGINT after" in line]
    assert len(stopped) == 1  # rank 0's line, naming the checkpoint it saved
    saved = sorted(p.name for p in out.glob("model_*.pth"))
    assert len(saved) == 1 and saved[0] in stopped[0]


def _text(path):
    return path.read_text() if path.is_file() else ""
