"""The start-up checks of a LazyConfig (lada/engine/lazy_checks.py): the detector-mismatch
warning and the untrained-box advice, as a yaml config gets them."""
import pytest
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from lada.config import add_lada_config
from lada.engine.lazy import load_lazy_config
from lada.engine.lazy_checks import (
    LAZY_DETECTOR_ARGUMENTS,
    lazy_detector_mismatch_warning,
    lazy_untrained_gt_advice,
)
from lada.modeling.head import FCOSHead
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.meta_arch import LadaFCOS
from lada.modeling.presets import DETECTOR_KEYS

LAZY = REPO / "configs/lazy"
CONFIGS = sorted(path.name for path in LAZY.glob("*.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_lazy_config_has_its_methods_detector(name):
    assert lazy_detector_mismatch_warning(load_lazy_config(str(LAZY / name))) is None


def test_the_warning_names_each_differing_argument_and_the_methods_value():
    cfg = load_lazy_config(str(LAZY / "quick_ota.py"), [
        "model.loss.aux_branch=centerness", "model.head.box_activation=linear",
        "model.test_score=product"])
    message = lazy_detector_mismatch_warning(cfg)
    assert message.startswith("model.matcher is OTAMatcher ('ota') but the detector is not ota's: "
                              "model.loss.aux_branch 'centerness' (ota: 'iou'), ")
    assert "model.head.box_activation 'linear' (ota: 'relu')" in message
    assert "model.test_score 'product' (ota: 'geometric_mean')" in message
    assert "configs/lazy/quick_ota.py or configs/lazy/ota_R_50_FPN_1x.py" in message


def test_a_matcher_on_another_methods_loss_class_is_named():
    # dw's matcher on fcos's config: its results need the weighted-pairs loss; an argument
    # the config sets on a loss class that does not take it is not compared
    cfg = load_lazy_config(str(LAZY / "quick_fcos.py"), [
        "model.matcher._target_=lada.matchers.methods.dw.DWMatcher"])
    message = lazy_detector_mismatch_warning(cfg)
    assert "model.loss DenseDetectionLoss (dw: PairwiseWeightedLoss)" in message
    cfg = load_lazy_config(str(LAZY / "quick_dw.py"), ["+model.loss.aux_branch=iou"])
    assert lazy_detector_mismatch_warning(cfg) is None


def test_each_detector_key_fills_the_argument_the_table_names():
    # the yaml twin's from_config copies each MODEL.FCOS key into the argument that
    # LAZY_DETECTOR_ARGUMENTS names (a sentinel value shows which one)
    assert set(LAZY_DETECTOR_ARGUMENTS) == set(DETECTOR_KEYS) - {"LOSS"}
    for key, (node, argument) in LAZY_DETECTOR_ARGUMENTS.items():
        cfg = add_lada_config(get_cfg())
        cfg.merge_from_file(str(REPO / "configs/quick/Base-Quick.yaml"))
        sentinel = f"sentinel of {key}"
        if node == "":  # the model's own: built with valid head and loss settings
            cfg.MODEL.FCOS[key] = sentinel
            arguments = LadaFCOS.from_config(cfg)
        else:
            cfg.MODEL.FCOS[key] = sentinel
            arguments = (FCOSHead.from_config(cfg, [ShapeSpec(channels=8)] * 5) if node == "head"
                         else DenseDetectionLoss.from_config(cfg))
        assert arguments[argument] == sentinel, key


def test_untrained_advice_names_the_anchor_argument_and_the_resize():
    advice = lazy_untrained_gt_advice(load_lazy_config(str(LAZY / "quick_atss.py")))
    assert advice == (
        "smaller anchors (model.matcher.anchor_scale, now 3.99) or larger inputs "
        "(short_edge_length of dataloader.train.mapper.augmentations, now [168], and of "
        "dataloader.test.mapper.augmentations, now 168)")
    advice = lazy_untrained_gt_advice(load_lazy_config(str(LAZY / "fcos_R_50_FPN_1x.py")))
    assert advice.startswith("larger inputs (short_edge_length of "
                             "dataloader.train.mapper.augmentations, now [800]")
