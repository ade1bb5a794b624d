"""Catalogue of bad inputs and faults, as a new user meets them: small hand-written COCO
datasets registered with ``--dataset``, run through ``train_net.main`` (in process, tiny
configs) or, for the kill, as a subprocess. Each case asserts its documented outcome
(docs/reliability.md): the error names the file / key, or the
warning gives the counts, or the run behaves as stated.

``ISSUE`` cases were silent corruption, unclear crashes or unsafe before issue 11, ``ISSUE22``
ones before issue 22, ``ISSUE34`` ones before issue 34, ``WRONG_WEIGHTS`` ones before
inference loads checked the weights (``LadaCheckpointer(for_inference=True)``); ``WORKED``
cases already behaved and must keep doing so."""
import contextlib
import errno
import gc
import io
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_files import GOOD, write_coco
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.utils import logger as d2_logger
from PIL import Image

import train_net
from conftest import REPO
from lada.data import DatasetError, ImageReadError
from lada.engine import (
    CheckpointError, CheckpointSaveError, LadaCheckpointer, OutputDirInUseError,
    build_argument_parser, build_cfg,
)
from lada.engine import lazy
from lada.engine.checkpoint import _AtomicFile
from lada.engine.output_lock import LOCK_FILE

TINY = {
    "DATASETS.TEST": "()", "MODEL.FCOS.NUM_CLASSES": "2", "SOLVER.MAX_ITER": "1",
    "SOLVER.IMS_PER_BATCH": "2", "SOLVER.WARMUP_ITERS": "1", "SOLVER.STEPS": "()",
    "DATALOADER.NUM_WORKERS": "0", "INPUT.MIN_SIZE_TRAIN": "(64,)", "INPUT.MAX_SIZE_TRAIN": "64",
    "INPUT.MIN_SIZE_TEST": "64", "INPUT.MAX_SIZE_TEST": "64",
}


class Workspace:
    """One case: its folder, its datasets, a train_net run and the 'lada' warnings."""

    def __init__(self, root: Path, records: list):
        self.root, self.records = root, records
        self.name = root.name  # unique per case: the catalog is process-wide
        self.datasets = []

    @property
    def out(self) -> Path:
        return self.root / "output"

    def dataset(self, images, *, name=None, **kwargs) -> tuple[Path, Path]:
        """Writes a dataset (in its own folder) and registers it with --dataset under the
        case's name, or ``name`` for a second dataset."""
        name = name or self.name
        json_file, image_dir = write_coco(self.root / f"data_{name}", images, **kwargs)
        self.datasets.append((name, json_file, image_dir))
        return json_file, image_dir

    def edit_json(self, json_file: Path, edit) -> None:
        """Applies ``edit`` to the json's content, e.g. a repeated id."""
        coco = json.loads(json_file.read_text())
        edit(coco)
        json_file.write_text(json.dumps(coco))

    def train_net(self, *flags, **opts) -> subprocess.CompletedProcess:
        """``python train_net.py ...`` as a user runs it, in its own process."""
        return subprocess.run(
            [sys.executable, "train_net.py", *self.argv(*flags, **opts)], cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
            capture_output=True, text=True, timeout=600,
        )

    def argv(self, *flags, config="atss", **opts) -> list[str]:
        """train_net.py's arguments: a quick config, the case's datasets, tiny settings."""
        argv = ["--config-file", str(REPO / f"configs/quick/{config}.yaml"), *flags]
        for name, json_file, image_dir in self.datasets:
            argv += ["--dataset", name, str(json_file), str(image_dir)]
        opts = {"DATASETS.TRAIN": f"('{self.name}',)", **TINY, "OUTPUT_DIR": str(self.out), **opts}
        return argv + [str(x) for item in opts.items() for x in item]

    def train(self, *flags, **opts):
        return train_net.main(build_argument_parser().parse_args(self.argv(*flags, **opts)))

    def logged(self, level: int = logging.INFO) -> str:
        """Messages of the 'detectron2', 'fvcore' and 'lada' loggers during the case."""
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)

    def warned(self) -> str:
        return self.logged(logging.WARNING)

    def trained(self) -> bool:
        return (self.out / "model_final.pth").is_file()


# ---------------------------------------------------------------- cases of issue 11


def zero_size_box_dropped_with_warning(ws):
    ws.dataset([GOOD, GOOD + [(1, [10, 10, 0, 5])]])
    ws.train()
    assert ws.trained()
    assert f"dataset '{ws.name}'" in ws.warned() and "dropped 1 of 5 boxes" in ws.warned()
    assert "ZERO_SIZE drop_with_warning), e.g. annotation id 5 in image img1.png" in ws.warned()
    assert sum(len(r["annotations"]) for r in DatasetCatalog.get(ws.name)) == 4  # what is counted


def out_of_image_box_dropped_with_warning(ws):
    ws.dataset([GOOD + [(2, [100, 100, 5, 5])], GOOD])
    ws.train()
    assert ws.trained()
    assert "OUT_OF_IMAGE drop_with_warning), e.g. annotation id 3 in image img0.png" in ws.warned()


def negative_size_box_is_an_error(ws):
    json_file, _ = ws.dataset([GOOD, GOOD + [(1, [60, 60, -30, -25])]])
    with pytest.raises(DatasetError) as error:
        ws.train()
    assert f"dataset '{ws.name}' ({json_file})" in str(error.value)
    assert ("NEGATIVE_SIZE error), e.g. annotation id 5 in image img1.png: [60, 60, -30, -25]"
            in str(error.value))
    assert not ws.trained()


def negative_size_box_dropped_on_request(ws):
    ws.dataset([GOOD, GOOD + [(1, [60, 60, -30, -25])]])
    ws.train(**{"DATASETS.BAD_BOX_POLICY.NEGATIVE_SIZE": "drop_with_warning"})
    assert ws.trained() and "NEGATIVE_SIZE drop_with_warning), e.g. annotation id 5" in ws.warned()


def nan_coordinate_is_an_error(ws):
    ws.dataset([GOOD, [(1, [10, float("nan"), 5, 5])]])
    with pytest.raises(DatasetError, match=r"NON_FINITE error\), e.g. annotation id 3 in image img1.png"):
        ws.train()


def infinite_coordinate_is_an_error(ws):
    ws.dataset([[(1, [10, 10, float("inf"), 5])], GOOD])
    with pytest.raises(DatasetError, match=r"NON_FINITE error\), e.g. annotation id 1 in image img0.png"):
        ws.train()


def class_beyond_num_classes_is_an_error_at_start_up(ws):
    json_file, _ = ws.dataset([GOOD, [(3, [5, 5, 20, 20])]], categories=("a", "b", "c"))
    with pytest.raises(DatasetError) as error:
        ws.train(config="lada")  # a matcher that crashed inside torch before
    message = str(error.value)
    assert f"dataset '{ws.name}' ({json_file})" in message
    assert "1 of class index 2 (json category id 3, 'c')" in message
    assert "MODEL.FCOS.NUM_CLASSES is 2" in message and not (ws.out / "metrics.json").exists()


def no_annotated_image_is_refused(ws):
    ws.dataset([[], []])
    with pytest.raises(DatasetError, match="none of its 2 images has .* DATASETS.ALLOW_UNANNOTATED True"):
        ws.train(**{"DATALOADER.FILTER_EMPTY_ANNOTATIONS": "False"})


def no_annotated_image_trains_when_allowed(ws):
    ws.dataset([[], []])
    ws.train(**{"DATALOADER.FILTER_EMPTY_ANNOTATIONS": "False", "DATASETS.ALLOW_UNANNOTATED": "True"})
    assert ws.trained() and "background class only (DATASETS.ALLOW_UNANNOTATED is True)" in ws.warned()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncated_image_names_file_and_dataset(ws):
    _, images = ws.dataset([GOOD, GOOD])
    _truncate(images / "img1.png")
    with pytest.raises(ImageReadError) as error:
        ws.train()  # a batch of 2 of the 2 images: each iteration reads both
    assert (f"cannot read image {images / 'img1.png'} of dataset '{ws.name}': OSError: image file "
            "is truncated" in str(error.value))


def truncated_image_skipped_on_request(ws):
    _, images = ws.dataset([GOOD, GOOD])
    _truncate(images / "img1.png")
    ws.train(**{"DATASETS.IMAGE_READ_POLICY": "skip_with_warning"})
    assert ws.trained()
    assert f"cannot read image {images / 'img1.png'} of dataset '{ws.name}'" in ws.warned()
    assert "skipped (DATASETS.IMAGE_READ_POLICY skip_with_warning)" in ws.warned()


def weights_not_a_checkpoint_pth(ws):
    ws.dataset([GOOD])
    (ws.root / "notes.pth").write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {ws.root / 'notes.pth'}"):
        ws.train(**{"MODEL.WEIGHTS": ws.root / "notes.pth"})


def weights_not_a_checkpoint_pkl(ws):
    ws.dataset([GOOD])
    (ws.root / "notes.pkl").write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=f"{ws.root / 'notes.pkl'}: not a pickle of weights"):
        ws.train(**{"MODEL.WEIGHTS": ws.root / "notes.pkl"})


def unused_datasets_are_not_checked(ws):
    # The quick config registers the embedded dataset (relative to the working folder,
    # where it has not been generated); a run on one's own data does not need it.
    assert not (Path.cwd() / "datasets/synthetic").exists()
    ws.dataset([GOOD, GOOD])
    ws.train()
    assert ws.trained()


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def malicious_pkl_weights_are_refused(ws):
    ws.dataset([GOOD])
    target, weights = ws.root / "pwned", ws.root / "R-50.pkl"
    weights.write_bytes(pickle.dumps({"conv1_w": np.zeros((32, 3, 7, 7), np.float32),
                                      "x": _Payload(target)}, protocol=2))
    with pytest.raises(CheckpointError, match=f"refused checkpoint {weights}: refused to load global"):
        ws.train(**{"MODEL.WEIGHTS": weights})
    assert not target.exists()


# The slow save: train_net.py with torch.save writing a few bytes, then hanging on the
# SLOW_AT-th call (touching MARKER first) until the test kills the process.
_SLOW_SAVE = """
import runpy, sys, time, torch
marker, slow_at = sys.argv.pop(1), int(sys.argv.pop(1))
real_save, calls = torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == slow_at:
        f.write(b"the first bytes of a checkpoint")
        f.flush()
        open(marker, "w").close()
        time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv[0] = "train_net.py"
runpy.run_path("train_net.py", run_name="__main__")
"""


def kill_during_checkpoint_save_then_resume(ws):
    """Also the issue's `kill -9 then --resume` (which worked): the resumed run starts
    after the last complete checkpoint."""
    ws.dataset([GOOD, GOOD])
    schedule = {"SOLVER.MAX_ITER": "3", "SOLVER.CHECKPOINT_PERIOD": "1"}  # saves after each
    marker = ws.root / "saving"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(marker), "2", *ws.argv(**schedule)], cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the second checkpoint save never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # during the save of model_0000001.pth
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    files = sorted(os.listdir(ws.out))
    assert "model_0000000.pth" in files and "model_0000001.pth" not in files
    partial = [f for f in files if f.startswith(".model_0000001.pth.") and f.endswith(".partial")]
    assert len(partial) == 1 and (ws.out / partial[0]).read_bytes() == b"the first bytes of a checkpoint"
    assert (ws.out / "last_checkpoint").read_text() == "model_0000000.pth"

    ws.train("--resume", **schedule)
    assert "Starting training from iteration 1" in ws.logged()
    assert f"ignoring unfinished checkpoint writes in {ws.out}" in ws.warned()
    assert partial[0] in ws.warned()
    final = torch.load(ws.out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 2


# ---------------------------------------------------------------- cases that already worked


def unknown_category_id(ws):
    json_file, _ = ws.dataset([GOOD + [(7, [1, 1, 5, 5])]])
    with pytest.raises(DatasetError, match=f"dataset '{ws.name}': cannot load {json_file}: KeyError:"
                                           ".*category_id=7"):
        ws.train()


def missing_image_file(ws):
    _, images = ws.dataset([GOOD, GOOD])
    (images / "img1.png").unlink()
    with pytest.raises(ImageReadError, match=f"cannot read image {images / 'img1.png'} of dataset "
                                             f"'{ws.name}': FileNotFoundError"):
        ws.train()


def invalid_json(ws):
    json_file, _ = ws.dataset([GOOD])
    json_file.write_text(json_file.read_text()[:-20])
    with pytest.raises(DatasetError, match=f"cannot load {json_file}: JSONDecodeError"):
        ws.train()


def unknown_matcher(ws):
    ws.dataset([GOOD])
    with pytest.raises(KeyError, match="MODEL.MATCHER.NAME: unknown matcher 'nope'"):
        ws.train(**{"MODEL.MATCHER.NAME": "nope"})


def invalid_hyperparameter(ws):
    ws.dataset([GOOD])
    with pytest.raises(ValueError, match="MODEL.MATCHER.ATSS.TOPK must be a positive integer, got 0"):
        ws.train(**{"MODEL.MATCHER.ATSS.TOPK": "0"})


def nan_loss(ws):
    ws.dataset([GOOD, GOOD])
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=0"):
        ws.train(**{"MODEL.PIXEL_STD": "[0.0, 0.0, 0.0]"})


def missing_json_of_a_used_dataset(ws):
    json_file, _ = ws.dataset([GOOD])
    json_file.unlink()
    with pytest.raises(FileNotFoundError, match=f"dataset '{ws.name}': annotation file {json_file} "
                                                "does not exist"):
        ws.train()


def missing_image_folder_of_a_used_dataset(ws):
    _, images = ws.dataset([GOOD])
    for path in images.iterdir():
        path.unlink()
    images.rmdir()
    with pytest.raises(FileNotFoundError, match=f"dataset '{ws.name}': image folder {images} "
                                                "does not exist"):
        ws.train()


def unregistered_dataset_name(ws):
    with pytest.raises(KeyError, match="Dataset 'nope' is not registered!"):
        ws.train(**{"DATASETS.TRAIN": "('nope',)"})


def image_size_differs_from_json(ws):
    _, images = ws.dataset([GOOD, GOOD])
    Image.new("RGB", (48, 48)).save(images / "img1.png")
    with pytest.raises(SizeMismatchError, match=f"for image {images / 'img1.png'}, got \\(48, 48\\), "
                                                "expect \\(64, 64\\)"):
        ws.train()


def duplicate_annotation_ids(ws):
    json_file, _ = ws.dataset([GOOD])
    coco = json.loads(json_file.read_text())
    coco["annotations"][1]["id"] = coco["annotations"][0]["id"]
    json_file.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=f"Annotation ids in '{json_file}' are not unique"):
        ws.train()


def weights_file_missing(ws):
    ws.dataset([GOOD])
    with pytest.raises(AssertionError, match=f"Checkpoint {ws.root / 'nope.pth'} not found"):
        ws.train(**{"MODEL.WEIGHTS": ws.root / "nope.pth"})


# ---------------------------------------------------------------- cases of issue 22


def rfa_with_non_finite_features_stops_with_detectron2s_error(ws):
    """PIXEL_STD 0 makes the input infinite, so every feature is NaN: the deformable
    conv of MODEL.FCOS.RFA (configs/quick/aps.yaml) got NaN offsets, and torchvision's
    CPU kernel killed the process (SIGSEGV, no message)."""
    ws.dataset([GOOD, GOOD])
    done = ws.train_net(config="aps", **{"MODEL.PIXEL_STD": "[0.0, 0.0, 0.0]"})
    assert done.returncode == 1, done.stderr[-3000:]  # not -11 (SIGSEGV)
    assert "FloatingPointError: Loss became infinite or NaN at iteration=0" in done.stderr
    weights = ws.root / "untrained.pth"  # --eval-only refuses to run without weights
    cfg, _ = build_cfg(str(REPO / "configs/quick/aps.yaml"), ["MODEL.FCOS.NUM_CLASSES", "2"])
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    evaluated = ws.train_net("--eval-only", config="aps", **{
        "MODEL.PIXEL_STD": "[0.0, 0.0, 0.0]", "DATASETS.TEST": f"('{ws.name}',)",
        "MODEL.WEIGHTS": weights})
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads((ws.out / "eval_results.json").read_text())
    assert results["datasets"] == {ws.name: {"images": 2, "annotations": 4}}


def sixteen_bit_png_is_refused_naming_file_and_mode(ws):
    _, images = ws.dataset([GOOD, GOOD])
    gray = np.random.default_rng(0).integers(0, 65536, (64, 64), dtype=np.uint16)
    Image.fromarray(gray).save(images / "img1.png")  # 16-bit grayscale PNG
    with pytest.raises(ImageReadError) as error:
        ws.train()
    message = str(error.value)
    assert f"cannot read image {images / 'img1.png'} of dataset '{ws.name}'" in message
    assert "Pillow mode I (more than 8 bits per channel" in message and "clips to 255" in message


def bbox_of_strings_is_refused_at_start_up(ws):
    json_file, _ = ws.dataset([GOOD, GOOD])
    ws.edit_json(json_file, lambda coco: coco["annotations"][2].update(bbox=["8", "8", 20, 30]))
    with pytest.raises(DatasetError) as error:
        ws.train()
    message = str(error.value)
    assert f"dataset '{ws.name}' ({json_file}): 1 bbox(es) hold values that are not numbers" in message
    assert "annotation id 3 in image img1.png: ['8', '8', 20, 30]" in message
    assert not (ws.out / "metrics.json").exists()


def repeated_image_id_is_refused_naming_id_and_files(ws):
    json_file, _ = ws.dataset([GOOD, GOOD, GOOD])
    ws.edit_json(json_file, lambda coco: coco["images"][2].update(id=1))
    with pytest.raises(DatasetError) as error:
        ws.train()
    message = str(error.value)
    assert f"dataset '{ws.name}': cannot load {json_file}" in message
    assert "1 image id(s) are used by more than one image" in message
    assert "image id 1 is used by img0.png, img2.png" in message


def detection_only_segmentation_keeps_the_boxes(ws):
    json_file, _ = ws.dataset([GOOD, GOOD])
    segmentations = [[[8, 8, 20, 30]], [[]], [], [[30, 20, 55, 20, 55, 32]]]

    def add(coco):
        for annotation, segmentation in zip(coco["annotations"], segmentations):
            annotation["segmentation"] = segmentation
    ws.edit_json(json_file, add)
    ws.train()
    assert ws.trained()
    assert (f"dataset '{ws.name}' ({json_file}): ignored the segmentation of 2 of 4 annotations"
            in ws.warned())
    assert ("E.g. annotation id 1 in image img0.png: [[8, 8, 20, 30]]; annotation id 2 in image "
            "img0.png: [[]]") in ws.warned()
    assert sum(len(r["annotations"]) for r in DatasetCatalog.get(ws.name)) == 4  # all boxes kept


def empty_test_set_is_refused_at_start_up(ws):
    ws.dataset([GOOD, GOOD])
    json_file, _ = ws.dataset([], name=f"{ws.name}_test")
    with pytest.raises(DatasetError, match=(
            f"dataset '{ws.name}_test' \\({json_file}\\) has no images, but the run is to be "
            "evaluated on \\(DATASETS.TEST\\) it")):
        ws.train(**{"DATASETS.TEST": f"('{ws.name}_test',)"})
    assert "Starting training" not in ws.logged()


def other_category_ids_in_a_test_set_are_refused(ws):
    train_json, _ = ws.dataset([GOOD, GOOD])  # a: id 1, b: id 2
    test_json, _ = ws.dataset([GOOD], name=f"{ws.name}_test", categories=("b", "a"))
    with pytest.raises(DatasetError) as error:
        ws.train(**{"DATASETS.TEST": f"('{ws.name}_test',)"})
    message = str(error.value)
    assert (f"test dataset '{ws.name}_test' ({test_json}) does not have the categories of "
            f"training dataset '{ws.name}' ({train_json})") in message
    assert "class index 0 is 'a' in training and 'b' in the test set" in message
    assert "training {1: 'a', 2: 'b'}; test {1: 'b', 2: 'a'}" in message
    assert "Starting training" not in ws.logged()


def second_run_on_one_output_dir_is_refused(ws):
    """A first run hangs in its first checkpoint save; a second run into its folder is
    refused naming the folder and the first run's pid; after the first is killed, its
    lock is taken over with a warning and the folder trains."""
    ws.dataset([GOOD, GOOD])
    marker = ws.root / "saving"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(marker), "1",
         *ws.argv(**{"SOLVER.MAX_ITER": "2", "SOLVER.CHECKPOINT_PERIOD": "1"})],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the first run never saved"
            time.sleep(0.2)
        with pytest.raises(OutputDirInUseError) as error:
            ws.train()
        assert f"OUTPUT_DIR {ws.out} is in use by another run (pid {process.pid} on " in str(error.value)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    ws.train()
    assert ws.trained()
    assert f"OUTPUT_DIR {ws.out}: took over the lock left by a run that did not release it (pid {process.pid} on" in ws.warned()
    assert (ws.out / LOCK_FILE).read_text() == ""  # released at the end


def num_gpus_without_a_gpu_ends_naming_the_key(ws):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    ws.dataset([GOOD])
    done = ws.train_net("--num-gpus", "2", **{"MODEL.DEVICE": "cuda"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "MODEL.DEVICE is 'cuda' but no CUDA device is available; add `MODEL.DEVICE cpu` to "
        "the command line.")
    assert "ProcessExitedException" not in done.stderr and "torch.jit.script" not in done.stderr
    assert not ws.out.exists()  # nothing spawned, nothing written


def eval_results_json_holds_null_for_nan(ws):
    ws.dataset([GOOD, GOOD])  # 64 px images: no medium or large box, so APm and APl are NaN
    ws.train("--eval-only", **{"DATASETS.TEST": f"('{ws.name}',)", "MODEL.FCOS.SCORE_THRESH_TEST": "0.0"})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    results = json.loads((ws.out / "eval_results.json").read_text(), parse_constant=refuse)
    metrics = results["metrics"]
    assert metrics["bbox/APm"] is None and metrics["bbox/APl"] is None
    assert isinstance(metrics["bbox/AP"], float)


# ---------------------------------------------------------------- cases of issue 34

class _Killed(BaseException):
    """A kill, simulated: nothing of the run runs after it but the unwinding."""


def kill_between_checkpoint_and_last_checkpoint_then_resume(ws):
    """detectron2 resumed from the checkpoint last_checkpoint named (model_0000000.pth),
    then overwrote the newer one. The kill comes right after model_0000001.pth was
    renamed into place, before last_checkpoint was updated to name it."""
    ws.dataset([GOOD, GOOD])
    schedule = {"SOLVER.MAX_ITER": "4", "SOLVER.CHECKPOINT_PERIOD": "1"}
    real_tag = LadaCheckpointer.tag_last_checkpoint

    def tag_or_die(self, basename):
        if basename == "model_0000001.pth":
            raise _Killed()
        real_tag(self, basename)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(_Killed):
        patch.setattr(LadaCheckpointer, "tag_last_checkpoint", tag_or_die)
        ws.train(**schedule)
    assert (ws.out / "last_checkpoint").read_text() == "model_0000000.pth"
    newer = ws.out / "model_0000001.pth"
    written = newer.stat().st_mtime_ns
    cut = ws.out / "model_0000002.pth"  # and a copy cut short, as a full disk leaves one
    cut.write_bytes(newer.read_bytes()[:100_000])

    ws.train("--resume", **{**schedule, "SOLVER.MAX_ITER": "3"})
    assert (f"--resume: continuing from {newer} (iteration 1): the newest complete checkpoint, "
            "written after last_checkpoint's model_0000000.pth (iteration 0): the run stopped "
            "after saving it and before updating last_checkpoint") in ws.logged()
    assert f"--resume in {ws.out}: skipping model_0000002.pth: not a complete checkpoint (" in ws.warned()
    assert "Starting training from iteration 2" in ws.logged()
    assert newer.stat().st_mtime_ns == written  # not overwritten by an older restart
    final = torch.load(ws.out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 2


@contextlib.contextmanager
def _file_system(folder: Path):
    """A 256 MiB tmpfs mounted at ``folder`` when this process may mount one (root on
    Linux), yielding True; else the folder on the disk of the tests, yielding False."""
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(folder)], capture_output=True,
    ).returncode == 0
    try:
        yield mounted
    finally:
        _release_files_under(folder)
        left_open = _open_files_under(folder)
        if mounted:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
    assert not left_open, f"still open on the file system of the case: {left_open}"


def _release_files_under(folder: Path) -> None:
    """Closes every file object under ``folder`` still open in this process (the run's
    log.txt, which detectron2 caches and closes only at exit, and metrics.json, held by
    the trainer that the caught error's traceback keeps) and removes the logging handlers
    writing to one. Left open on a full tmpfs, their closing fails later, after the whole
    suite: "Exception ignored in atexit callback ... No space left on device"."""
    def under(file) -> bool:
        name = getattr(file, "name", None)
        return isinstance(name, str) and Path(name).is_relative_to(folder)

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for handler in list(lg.handlers):
            if under(getattr(handler, "stream", None)):
                lg.removeHandler(handler)
    for file in gc.get_objects():
        if issubclass(type(file), io.IOBase) and under(file) and not file.closed:
            with contextlib.suppress(OSError):  # its unwritten lines: the disk is full
                file.close()


def _open_files_under(folder: Path) -> list:
    """The files under ``folder`` this process holds open (Linux: /proc/self/fd; none
    elsewhere)."""
    found = []
    for fd in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder) + os.sep):
                found.append(target)
    return found


def _fill(folder: Path) -> None:
    """Writes into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(2**20))


def _no_space(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_during_a_checkpoint_save_says_so(ws):
    """The disk fills up after the first checkpoint: a tmpfs filled to the last byte (so
    that the writers of metrics.json fail after the save too) where the tests may mount
    one, else a checkpoint writer raising ENOSPC. detectron2's last line was torch's
    "[enforce fail at inline_container.cc:672] . unexpected pos"."""
    ws.dataset([GOOD, GOOD])
    disk = ws.root / "disk"
    saves, real_save = [], LadaCheckpointer.save

    def fill_before_the_second(self, name, **kwargs):
        saves.append(name)
        if len(saves) == 2:
            if mounted:
                _fill(disk)
            else:
                patch.setattr(_AtomicFile, "write", _no_space, raising=False)
        return real_save(self, name, **kwargs)

    with _file_system(disk) as mounted, pytest.MonkeyPatch.context() as patch:
        out = disk / "output"
        patch.setattr(LadaCheckpointer, "save", fill_before_the_second)
        with pytest.raises(CheckpointSaveError) as error:
            ws.train(**{"OUTPUT_DIR": out, "SOLVER.MAX_ITER": "3", "SOLVER.CHECKPOINT_PERIOD": "1"})
        files = sorted(os.listdir(out))
        tagged = (out / "last_checkpoint").read_text()
    printed = "".join(traceback.format_exception(error.value)).strip()
    assert printed.splitlines()[-1].startswith(
        f"lada.engine.checkpoint.CheckpointSaveError: cannot save checkpoint "
        f"{out / 'model_0000001.pth'}: No space left on device. Nothing was written under that "
        "name; the checkpoint --resume continues from, model_0000000.pth (iteration 0), is "
        f"intact. Free space on the file system of {out} (")
    assert printed.endswith("then continue with --resume.") and "enforce fail" not in printed
    assert "model_0000000.pth" in files and "model_0000001.pth" not in files
    assert tagged == "model_0000000.pth" and not [f for f in files if f.endswith(".partial")]


def _interrupted_run(ws, **opts) -> subprocess.Popen:
    """train_net.py in its own process group (as a terminal runs it), output to files."""
    return subprocess.Popen(
        [sys.executable, "train_net.py", *ws.argv(**opts)], cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        stdout=open(ws.root / "stdout.txt", "w"), stderr=open(ws.root / "stderr.txt", "w"),
        start_new_session=True,
    )


def ctrl_c_saves_a_checkpoint_that_resume_continues(ws):
    """Ctrl-C reaches the whole process group, the data loader's worker included."""
    ws.dataset([GOOD, GOOD])
    long = {"SOLVER.MAX_ITER": "100000", "SOLVER.CHECKPOINT_PERIOD": "100000",
            "DATALOADER.NUM_WORKERS": "1"}
    process = _interrupted_run(ws, **long)
    try:
        deadline = time.monotonic() + 240
        while "Starting training from iteration 0" not in _text(ws.out / "log.txt"):
            assert process.poll() is None, _text(ws.root / "stderr.txt")[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 128 + signal.SIGINT, _text(ws.root / "stderr.txt")[-3000:]
    finally:
        process.kill()
        process.wait()
    last = _text(ws.root / "stdout.txt").strip().splitlines()[-1]
    stopped = re.search(r"stopped by SIGINT after iteration (\d+): checkpoint (\S+) saved; "
                        r"continue with the same command and --resume$", last)
    assert stopped, last
    iteration = int(stopped[1])
    assert stopped[2] == str(ws.out / f"model_{iteration:07d}.pth")
    assert (ws.out / "last_checkpoint").read_text() == f"model_{iteration:07d}.pth"
    saved = torch.load(stopped[2], map_location="cpu", weights_only=True)
    assert saved["iteration"] == iteration and "optimizer" in saved["trainer"]["_trainer"]
    assert "Traceback" not in _text(ws.root / "stderr.txt")

    ws.train("--resume", **{"SOLVER.MAX_ITER": str(iteration + 2)})
    assert f"Starting training from iteration {iteration + 1}" in ws.logged()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def sigterm_stops_a_lazy_config_run_with_a_checkpoint(ws):
    """The LazyConfig route (tools/lazyconfig_train_net.py) stops the same way."""
    json_file, images = ws.dataset([GOOD, GOOD])
    args = build_argument_parser().parse_args([
        "--config-file", str(REPO / "configs/lazy/quick_atss.py"),
        "--dataset", ws.name, str(json_file), str(images),
        f"dataloader.train.dataset.names=[{ws.name}]", f"dataloader.test.dataset.names=[{ws.name}]",
        "model.num_classes=2", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0", "train.max_iter=100", "lr_multiplier.steps=[50]",
        "lr_multiplier.warmup_iters=1", f"train.output_dir={ws.out}",
    ])
    real_step = lazy.SimpleTrainer.run_step

    def step_then_signal(self):
        real_step(self)
        if self.iter == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster scheduler pre-empting the job

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lazy.SimpleTrainer, "run_step", step_then_signal)
        with pytest.raises(SystemExit) as stop:
            lazy.do_train(lazy.setup(args), resume=False)
    assert stop.value.code == 128 + signal.SIGTERM
    assert (f"stopped by SIGTERM after iteration 1: checkpoint {ws.out / 'model_0000001.pth'} "
            "saved; continue with the same command and --resume") in ws.warned()
    assert torch.load(ws.out / "model_0000001.pth", weights_only=True)["iteration"] == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def eval_only_on_a_test_set_without_ground_truth_says_so(ws):
    """Was pycocotools' tables of -1.000 and NaN AP tables, exit 0, no word."""
    ws.dataset([GOOD, GOOD])
    test_json, _ = ws.dataset([[], []], name=f"{ws.name}_test")
    ws.train("--eval-only", **{"DATASETS.TEST": f"('{ws.name}_test',)",
                               "MODEL.FCOS.SCORE_THRESH_TEST": "0.0"})
    said = re.search(
        f"dataset '{ws.name}_test' has no ground-truth box \\({re.escape(str(test_json))}: 2 "
        "images, 0 annotations\\): nothing to score the predictions against, so its AP is not "
        "computed \\(null in eval_results.json, NaN in metrics.json\\); the predictions are in "
        "(\\S+)$", ws.warned(), re.MULTILINE)
    assert said, ws.warned()
    assert len(json.loads(Path(said[1]).read_text())) > 0  # predictions written
    results = json.loads((ws.out / "eval_results.json").read_text())
    assert results["datasets"] == {f"{ws.name}_test": {"images": 2, "annotations": 0}}
    assert results["metrics"]["bbox/AP"] is None and results["metrics"]["bbox/AP@ar>=3"] is None
    assert set(results["metrics"].values()) == {None}


def a_test_dev_style_set_evaluated_during_training_says_so(ws):
    """A json without any "annotations" (COCO's test-dev): predictions written, as before."""
    ws.dataset([GOOD, GOOD])
    test_json, _ = ws.dataset([[], []], name=f"{ws.name}_test")
    ws.edit_json(test_json, lambda coco: coco.pop("annotations"))
    ws.train(**{"DATASETS.TEST": f"('{ws.name}_test',)", "MODEL.FCOS.SCORE_THRESH_TEST": "0.0"})
    assert ws.trained()
    assert f"dataset '{ws.name}_test' has no ground-truth box ({test_json}: 2 images, 0 annotations)" in ws.warned()
    last = json.loads((ws.out / "metrics.json").read_text().splitlines()[-1])
    assert np.isnan(last["bbox/AP"])


def eval_only_with_weights_of_another_class_count_is_refused(ws):
    """Was an evaluation of the model with a random class head, exit 0: the checkpoint's
    5-class head was skipped as for fine-tuning, with an INFO line. Training from the same
    weights still re-initialises the head."""
    ws.dataset([GOOD, GOOD])
    weights = ws.root / "five_classes" / "model_final.pth"
    weights.parent.mkdir()
    cfg, _ = build_cfg(str(REPO / "configs/quick/atss.yaml"),
                       ["MODEL.FCOS.NUM_CLASSES", "5", "DATASETS.REGISTER_COCO", "[]"])
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    with pytest.raises(SystemExit) as error:
        ws.train("--eval-only", **{"DATASETS.TEST": f"('{ws.name}',)", "MODEL.WEIGHTS": weights})
    message = str(error.value)
    assert message.startswith(f"--eval-only: refused checkpoint {weights} for inference: ")
    assert "predicts 5 classes, the model's 2 (MODEL.FCOS.NUM_CLASSES 2)" in message
    assert "`MODEL.FCOS.NUM_CLASSES 5` (the checkpoint's class count)" in message
    assert "\n" not in message and not (ws.out / "eval_results.json").exists()
    ws.train(**{"MODEL.WEIGHTS": weights})
    assert ws.trained() and ("class head re-initialised: head.cls_score predicts 5 classes in "
                             "the checkpoint and 2 in the model") in ws.logged()


WRONG_WEIGHTS = [eval_only_with_weights_of_another_class_count_is_refused]
ISSUE34 = [
    kill_between_checkpoint_and_last_checkpoint_then_resume,
    full_disk_during_a_checkpoint_save_says_so, ctrl_c_saves_a_checkpoint_that_resume_continues,
    sigterm_stops_a_lazy_config_run_with_a_checkpoint,
    eval_only_on_a_test_set_without_ground_truth_says_so,
    a_test_dev_style_set_evaluated_during_training_says_so,
]
ISSUE = [
    zero_size_box_dropped_with_warning, out_of_image_box_dropped_with_warning,
    negative_size_box_is_an_error, negative_size_box_dropped_on_request,
    nan_coordinate_is_an_error, infinite_coordinate_is_an_error,
    class_beyond_num_classes_is_an_error_at_start_up, no_annotated_image_is_refused,
    no_annotated_image_trains_when_allowed, truncated_image_names_file_and_dataset,
    truncated_image_skipped_on_request, weights_not_a_checkpoint_pth,
    weights_not_a_checkpoint_pkl, unused_datasets_are_not_checked,
    malicious_pkl_weights_are_refused, kill_during_checkpoint_save_then_resume,
]
ISSUE22 = [
    rfa_with_non_finite_features_stops_with_detectron2s_error,
    sixteen_bit_png_is_refused_naming_file_and_mode, bbox_of_strings_is_refused_at_start_up,
    repeated_image_id_is_refused_naming_id_and_files, detection_only_segmentation_keeps_the_boxes,
    empty_test_set_is_refused_at_start_up, other_category_ids_in_a_test_set_are_refused,
    second_run_on_one_output_dir_is_refused, num_gpus_without_a_gpu_ends_naming_the_key,
    eval_results_json_holds_null_for_nan,
]
WORKED = [
    unknown_category_id, missing_image_file, invalid_json, unknown_matcher,
    invalid_hyperparameter, nan_loss, missing_json_of_a_used_dataset,
    missing_image_folder_of_a_used_dataset, unregistered_dataset_name,
    image_size_differs_from_json, duplicate_annotation_ids, weights_file_missing,
]


@pytest.fixture(scope="module")
def tried(request):
    """Names of the cases run; their number is printed at the end of the module."""
    names = []
    yield names
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nfailure catalogue: tried {len(names)} cases "
              f"({sum(n in ISSUE_NAMES for n in names)} of issue 11, "
              f"{sum(n in ISSUE22_NAMES for n in names)} of issue 22, "
              f"{sum(n in ISSUE34_NAMES for n in names)} of issue 34, "
              f"{sum(n in WRONG_WEIGHTS_NAMES for n in names)} of the inference loads, "
              f"{sum(n in WORKED_NAMES for n in names)} that already worked)")


@pytest.fixture(scope="module")
def working_folder(tmp_path_factory):
    """The working folder of every case: the quick configs register the embedded dataset
    relative to it (always the same paths), and it has not been generated there."""
    return tmp_path_factory.mktemp("cwd")


ISSUE_NAMES = {case.__name__ for case in ISSUE}
ISSUE22_NAMES = {case.__name__ for case in ISSUE22}
ISSUE34_NAMES = {case.__name__ for case in ISSUE34}
WRONG_WEIGHTS_NAMES = {case.__name__ for case in WRONG_WEIGHTS}
WORKED_NAMES = {case.__name__ for case in WORKED}


@pytest.fixture
def workspace(tmp_path, monkeypatch, tried, working_folder, request):
    """A case's own folder. Logger handlers that train_net's setup adds are removed
    afterwards."""
    root = tmp_path  # removed when the case passes (pyproject: tmp_path_retention_policy)
    monkeypatch.chdir(working_folder)
    loggers = [logging.getLogger(name) for name in ("detectron2", "fvcore", "lada")]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    for lg in loggers:
        lg.addHandler(handler)
    yield Workspace(root, records)
    tried.append(request.node.callspec.id)
    for lg, handlers, propagate, level in saved:
        for added in [h for h in lg.handlers if h not in handlers]:
            lg.removeHandler(added)
            added.close()
        lg.propagate, lg.level = propagate, level
    d2_logger.setup_logger.cache_clear()


@pytest.mark.parametrize("case", ISSUE + ISSUE22 + ISSUE34 + WRONG_WEIGHTS + WORKED,
                         ids=lambda case: case.__name__)
def test_case(case, workspace):
    case(workspace)
