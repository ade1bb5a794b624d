"""``train_net.py --config-file configs/quick/own_data.yaml`` end to end, as the README's
"Train on your own data": a hand-made COCO dataset of 320 px images, a working folder
where the embedded dataset was never generated, and the embedded-data model (5 classes)
as MODEL.WEIGHTS of this 2-class dataset. Two iterations train."""
import os
import subprocess
import sys

import torch
import yaml
from coco_files import write_coco
from conftest import REPO, small_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

IMAGES = [[(1, [10, 10, 40, 40]), (2, [100, 120, 40, 40])]] * 4


def test_two_iterations_from_an_embedded_data_checkpoint(tmp_path):
    json_file, image_dir = write_coco(tmp_path / "data", IMAGES, size=320)
    DetectionCheckpointer(build_model(small_cfg()), save_dir=str(tmp_path)).save("embedded")
    out = tmp_path / "out"
    command = [
        sys.executable, str(REPO / "train_net.py"),
        "--config-file", str(REPO / "configs/quick/own_data.yaml"),
        "--dataset", "mine", str(json_file), str(image_dir),
        "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "()",
        "SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.WEIGHTS", str(tmp_path / "embedded.pth"), "OUTPUT_DIR", str(out),
    ]
    # the working folder has no datasets/synthetic; the worktree's lada is imported
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert not (tmp_path / "datasets").exists()

    # What the recipe chose, logged at start-up: 4 images, median object 40 px at 320 px
    # -> 320 x 32 / 40 = 256 px; 2 classes; iterations yours.
    assert "own-data recipe (RECIPE.ENABLED): 4 training images, median 320 x 320 px" in log
    assert "short side 256 px (INPUT.MIN_SIZE_TEST)" in log
    # P3 anchor at 0.9 x the 32-px object at that size = 28.8 px = 3.6 strides
    assert "anchors: ANCHOR_SCALE atss 3.6, ciou_atss 3.6, lada 3.6, paa 3.6, tal 3.6" in log
    assert "2 iterations of 8 images" in log and "kept as you set them: SOLVER.MAX_ITER 2" in log
    assert "class head re-initialised: head.cls_score predicts 5 classes in the checkpoint and 2" in log
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["INPUT"]["MIN_SIZE_TEST"] == 256
    assert config["INPUT"]["MIN_SIZE_TRAIN"] == [205, 230, 256, 282, 307]
    assert config["INPUT"]["EXTRA_AUGMENTATIONS"] == ["vertical_flip", "color_jitter"]
    assert config["MODEL"]["MATCHER"]["LADA"]["ANCHOR_SCALE"] == 3.6
    assert config["MODEL"]["FCOS"]["NUM_CLASSES"] == 2 and config["SOLVER"]["IMS_PER_BATCH"] == 8

    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 1  # iterations 0 and 1
    assert final["model"]["head.cls_score.bias"].shape == (2,)
    assert all(torch.isfinite(v).all() for v in final["model"].values() if v.is_floating_point())
