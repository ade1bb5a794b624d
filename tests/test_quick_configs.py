"""The quick configs pass the untrained-box check on their own data: the first assignment
step of each (an untrained model, as at the start of ``make demo``) leaves at most 5 % of
the embedded dataset's GT boxes without a positive (lada/engine/hooks.py warns above),
and the former settings (128 px, the papers' 8-stride anchors) did not."""
import argparse

import numpy as np
import pytest
import torch
from conftest import REPO
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from lada.data import ReadCheckedDatasetMapper
from lada.data.synthetic import SyntheticSpec, generate
from lada.engine import build_cfg, register_datasets

# every method's quick config (configs/quick/<method>.yaml), a new one included
METHODS = sorted(path.stem for path in (REPO / "configs/quick").glob("*.yaml")
                 if path.stem != "Base-Quick" and not path.stem.startswith("own_data"))
MAX_SHARE = 0.05  # UntrainedGTWarning's default
NUM_IMAGES = 64  # about 220 GT boxes: the first 64 training images of the embedded data
DATASET = "quick_check_train"


class FixedFeatures(torch.nn.Module):
    """Stands in for a backbone, returning the features it was given: every quick config
    has the same (untrained, randomly initialised) ResNet-18-FPN, so the images go through
    one of them once and each config's own head and matcher run on its features."""

    def __init__(self, backbone: torch.nn.Module, features: dict):
        super().__init__()
        self.size_divisibility = backbone.size_divisibility
        self.padding_constraints = getattr(backbone, "padding_constraints", {})
        self.features = features

    def forward(self, images: torch.Tensor) -> dict:
        return self.features


def quick_cfg(config: str, dataset, *opts):
    cfg, _ = build_cfg(str(REPO / "configs/quick" / f"{config}.yaml"), [
        "DATASETS.TRAIN", f"('{DATASET}',)", "DATASETS.TEST", "()", *opts], dataset)
    register_datasets(cfg, argparse.Namespace(dataset=dataset))
    return cfg


def mapped_batch(cfg) -> list:
    np.random.seed(0)  # the training mapper's flips
    mapper = ReadCheckedDatasetMapper(cfg, True)
    return [mapper(record) for record in DatasetCatalog.get(DATASET)]


def share_without_positive(model, batch) -> tuple[float, float]:
    """(share of the GT boxes without a positive, number of GT boxes) in one training
    forward of ``model`` (untrained) over ``batch``."""
    with EventStorage(0) as storage, torch.no_grad():
        model.train()(batch)
        without = storage.history("assign/gts_without_pos").latest()
        total = storage.history("assign/num_gts").latest()
    return without / total, total


@pytest.fixture(scope="module")
def embedded_head(tmp_path_factory):
    """The first images of the embedded training set (its per-image streams make them the
    same images as the full set's), mapped as the quick configs train on them, and their
    features from an untrained quick backbone."""
    paths = generate(tmp_path_factory.mktemp("embedded"),
                     SyntheticSpec(num_train=NUM_IMAGES, num_val=0))
    dataset = [[DATASET, str(paths["train"]), str(paths["train_images"])]]
    cfg = quick_cfg("lada", dataset)
    batch = mapped_batch(cfg)
    model = build_model(cfg)
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(batch).tensor)
    return {"dataset": dataset, "batch": batch, "features": features}


@pytest.mark.parametrize("method", METHODS)
def test_quick_config_leaves_at_most_five_percent_of_boxes_untrained(method, embedded_head):
    cfg = quick_cfg(method, embedded_head["dataset"])
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (168,) and cfg.INPUT.RANDOM_FLIP == "horizontal"
    model = build_model(cfg)  # the batch was mapped with these settings
    model.backbone = FixedFeatures(model.backbone, embedded_head["features"])
    share, total = share_without_positive(model, embedded_head["batch"])
    assert total > 200
    assert share <= MAX_SHARE, f"{method}: {share:.1%} of {total:.0f} GT boxes without a positive"


def test_the_former_quick_settings_left_more_than_five_percent(embedded_head):
    """The check above can fail: lada at the former 128 px with 8-stride anchors."""
    cfg = quick_cfg("lada", embedded_head["dataset"], "INPUT.MIN_SIZE_TRAIN", "(128,)",
                    "INPUT.MAX_SIZE_TRAIN", "128", "MODEL.MATCHER.LADA.ANCHOR_SCALE", "8.0")
    share, _ = share_without_positive(build_model(cfg), mapped_batch(cfg)[:16])
    assert share > MAX_SHARE
