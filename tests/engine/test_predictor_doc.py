"""docs/predict.md, "In Python": the documented DefaultPredictor snippet runs as written
(in a folder holding the files it names: a run's saved config and weights, an image) and
gives the detections of the evaluation's mapper and model for that image."""
import re
import shutil

import torch
from coco_files import write_coco
from conftest import REPO, small_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from lada.data import ReadCheckedDatasetMapper
from lada.engine import LadaCheckpointer

DOC = REPO / "docs/predict.md"


def documented_snippet() -> str:
    text = DOC.read_text()
    section = text[text.index("## In Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_documented_predictor_runs_and_equals_the_evaluation_path(tmp_path, monkeypatch, capsys):
    json_file, images = write_coco(tmp_path / "data", [[(1, [10, 10, 30, 30])]], size=160,
                                   categories=("pine", "oak"))
    name = f"doc_val_{tmp_path.name}"
    cfg = small_cfg(**{"MODEL.FCOS.NUM_CLASSES": 2, "MODEL.FCOS.SCORE_THRESH_TEST": 0.0})
    cfg.DATASETS.REGISTER_COCO = [[name, str(json_file), str(images)]]
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), (name,)
    run = tmp_path / "output/quick/lada"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.dump())
    DetectionCheckpointer(build_model(cfg), save_dir=str(run)).save("model_final")
    image = tmp_path / "datasets/synthetic/val/000000.png"
    image.parent.mkdir(parents=True)
    shutil.copy(images / "img0.png", image)

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(documented_snippet(), str(DOC), "exec"), namespace)
    instances = namespace["instances"]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(instances) > 0  # score threshold 0: an untrained model detects
    assert all(line.split()[0] in ("pine", "oak") for line in printed)

    # the reference: the evaluation's test mapper and the model, as tools/predict.py runs
    # them (the 160 px image resized to the test size, 128 px, and the boxes back)
    model = build_model(cfg).eval()
    LadaCheckpointer(model).load(str(run / "model_final.pth"))
    example = ReadCheckedDatasetMapper(cfg, False, dataset_names=())({"file_name": str(image)})
    with torch.no_grad():
        expected = model([example])[0]["instances"].to("cpu")
    torch.testing.assert_close(instances.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(instances.scores, expected.scores)
    assert torch.equal(instances.pred_classes, expected.pred_classes)
