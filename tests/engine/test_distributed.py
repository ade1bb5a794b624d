"""Distributed training on the CPU (gloo over loopback): two worker processes, two
machines on one host, torchrun with ``--dist-url env://``, and the equivalence of one
worker with batch 4 and two workers with batch 2.

Every run trains configs/quick/lada.yaml (``num_pos`` normaliser, LADA matcher) on 4
synthetic images, without flips, so that the first global batch of every run is the
same four images."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from detectron2.engine.launch import _find_free_port

from lada.data.synthetic import SyntheticSpec, generate

PROBE = Path(__file__).resolve().parent / "distributed_probe.py"
TIMEOUT = 300
PORT_RETRIES = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=4, num_val=0))


def _train_args(tiny, output_dir, *, ims_per_batch=4, max_iter=2, config="lada"):
    return [
        "--config-file", str(REPO / f"configs/quick/{config}.yaml"),
        "--dataset", "tiny_train", str(tiny["train"]), str(tiny["train_images"]),
        "DATASETS.REGISTER_COCO", "[]",
        "DATASETS.TRAIN", "('tiny_train',)",
        "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", "0",
        "INPUT.RANDOM_FLIP", "none",
        "SOLVER.IMS_PER_BATCH", str(ims_per_batch),
        "SOLVER.MAX_ITER", str(max_iter),
        "OUTPUT_DIR", str(output_dir),
    ]


def _check_clean_exit(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    """Runs ``command``; a run whose rendezvous port was taken between finding it free and
    binding it (another job on this host) is repeated, up to PORT_RETRIES times."""
    for _ in range(PORT_RETRIES):
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
        if done.returncode == 0 or "EADDRINUSE" not in done.stderr:
            break
    _check_clean_exit(done)
    return done


def _probe(tiny, out, num_workers, max_iter):
    _run([sys.executable, str(PROBE), "--probe-dir", str(out), "--num-gpus", str(num_workers),
          *_train_args(tiny, out, max_iter=max_iter)])
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(num_workers)]
    grads = torch.load(out / "grads_rank0.pt")
    return records, grads


@pytest.fixture(scope="module")
def two_workers(tiny, tmp_path_factory):
    """Two processes (lada's CPU spawn over gloo), 2 images each, 3 steps."""
    return _probe(tiny, tmp_path_factory.mktemp("two_workers"), num_workers=2, max_iter=3)


def test_two_workers_keep_identical_parameters_and_share_the_normaliser(two_workers):
    (rank0, rank1), _ = two_workers
    assert [s["iter"] for s in rank0] == [s["iter"] for s in rank1] == [0, 1, 2]
    for step, (a, b) in enumerate(zip(rank0, rank1)):
        assert not set(a["images"]) & set(b["images"]), "the ranks must train on different images"
        assert a["param_sha256"] == b["param_sha256"], f"parameters differ after step {step}"
        if step:
            assert a["param_sha256"] != rank0[step - 1]["param_sha256"], "no update"
        # LADA's num_pos normaliser: the positives averaged over both workers, at least 1.
        expected = max(1.0, (a["local_positives"] + b["local_positives"]) / 2)
        assert a["normalizer"] == b["normalizer"] == pytest.approx(expected, abs=1e-6)
    assert any(a["local_positives"] != b["local_positives"] for a, b in zip(rank0, rank1))


def test_one_worker_batch_4_equals_two_workers_batch_2(tiny, tmp_path, two_workers):
    (rank0, rank1), two_grads = two_workers
    (single,), one_grads = _probe(tiny, tmp_path, num_workers=1, max_iter=1)
    assert sorted(single[0]["images"]) == sorted(rank0[0]["images"] + rank1[0]["images"])
    assert single[0]["normalizer"] == pytest.approx(single[0]["local_positives"])
    assert single[0]["normalizer"] == pytest.approx(2 * rank0[0]["normalizer"])
    # Logged losses: the one worker's, and the mean of the two workers' (detectron2).
    assert single[0]["losses"].keys() == rank0[0]["losses"].keys()
    for name, value in single[0]["losses"].items():
        assert rank0[0]["losses"][name] == pytest.approx(value, rel=1e-5), name
    # DDP's averaged gradients (float32 sums in another order: about 1e-6 of the largest).
    assert one_grads.abs().max() > 0
    torch.testing.assert_close(
        two_grads, one_grads, rtol=1e-4, atol=1e-5 * one_grads.abs().max().item()
    )


def _rank_logs(output_dir: Path) -> str:
    """detectron2 logs rank 0 to the console and log.txt, rank r > 0 to log.txt.rank<r> only."""
    return "".join(path.read_text() for path in sorted(output_dir.glob("log.txt*")))


def test_two_machines_on_one_host(tiny, tmp_path):
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    launches = [
        subprocess.Popen(
            [sys.executable, str(REPO / "train_net.py"), "--num-gpus", "1", "--num-machines", "2",
             "--machine-rank", str(rank), "--dist-url", url,
             *_train_args(tiny, tmp_path / f"machine{rank}", config="atss")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},  # both "machines" share this host's cores
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [process.communicate(timeout=TIMEOUT) for process in launches]
    finally:
        for process in launches:
            if process.poll() is None:
                process.kill()
    for rank, (process, (stdout, stderr)) in enumerate(zip(launches, outputs)):
        _check_clean_exit(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        log = _rank_logs(tmp_path / f"machine{rank}")
        assert f"Rank of current process: {rank}. World size: 2" in log
    assert (tmp_path / "machine0" / "model_final.pth").is_file()
    assert not (tmp_path / "machine1" / "model_final.pth").exists()  # rank 0 saves


def test_torchrun_with_env_url(tiny, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    _run([
        *command, "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_find_free_port()),
        str(REPO / "train_net.py"), "--dist-url", "env://",
        *_train_args(tiny, tmp_path, config="atss"),
    ])
    log = _rank_logs(tmp_path)
    assert "Rank of current process: 0. World size: 2" in log
    assert "Rank of current process: 1. World size: 2" in log
    assert (tmp_path / "model_final.pth").is_file()
