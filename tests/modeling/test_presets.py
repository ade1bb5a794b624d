"""Each method's detector (lada.modeling.presets): the shipped configs of every method
agree with METHOD_DETECTORS, the own-data configs give each method its detector, and a
matcher switched on another method's config is named at start-up."""
from pathlib import Path

import pytest
from detectron2.config import get_cfg

from lada.config import add_lada_config
from lada.matchers import MATCHER_REGISTRY
from lada.modeling.presets import METHOD_DETECTORS, detector_mismatch, detector_mismatch_warning

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
METHODS = sorted(METHOD_DETECTORS)


def load(path: Path, *opts):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def test_every_registered_matcher_has_a_detector():
    assert set(METHOD_DETECTORS) == {name for name, _ in MATCHER_REGISTRY}


@pytest.mark.parametrize("path", [f"quick/{m}.yaml" for m in METHODS] + ["quick/aps_plain.yaml"]
                         + [f"COCO-Detection/{m}_R_50_FPN_1x.yaml" for m in METHODS])
def test_method_configs_have_their_methods_detector(path):
    cfg = load(CONFIGS / path)
    assert detector_mismatch(cfg) == []
    assert detector_mismatch_warning(cfg) is None


@pytest.mark.parametrize("method", METHODS)
def test_own_data_config_of_each_method(method):
    cfg = load(CONFIGS / f"quick/own_data_{method}.yaml")
    assert cfg.RECIPE.ENABLED and cfg.MODEL.MATCHER.NAME == method
    assert detector_mismatch(cfg) == []
    # the whole detector is the quick config's, not only the compared keys
    assert cfg.MODEL.FCOS == load(CONFIGS / f"quick/{'aps_plain' if method == 'aps' else method}.yaml").MODEL.FCOS


def test_switching_the_matcher_on_own_data_is_named():
    cfg = load(CONFIGS / "quick/own_data.yaml", "MODEL.MATCHER.NAME", "ciou_atss")
    # own_data.yaml is lada's detector: focal loss, box bias 0, unweighted GIoU; the
    # ciou_atss paper's: QFL, bias 4, GIoU weighted by the IoU target.
    assert detector_mismatch(cfg) == [("CLS_LOSS", "focal", "qfl"), ("BOX_BIAS_INIT", 0.0, 4.0),
                                      ("BOX_LOSS_WEIGHTING", "none", "aux_target")]
    message = detector_mismatch_warning(cfg)
    assert message.startswith("MODEL.MATCHER.NAME is 'ciou_atss' but the detector settings are "
                              "lada's, not ciou_atss's: MODEL.FCOS.CLS_LOSS focal (ciou_atss: qfl)")
    assert "--config-file configs/quick/own_data_ciou_atss.yaml" in message


def test_dw_on_own_data_is_named():
    cfg = load(CONFIGS / "quick/own_data.yaml", "MODEL.MATCHER.NAME", "dw")
    keys = [key for key, _, _ in detector_mismatch(cfg)]
    # LOSS "auto" resolves to DW's weighted pairs, so it is not among them.
    assert keys == ["AUX_BRANCH", "BOX_BIAS_INIT", "BOX_ACTIVATION", "NORMALIZER", "TEST_SCORE",
                    "SCORE_THRESH_ON"]
    assert "configs/quick/own_data_dw.yaml" in detector_mismatch_warning(cfg)


def test_an_intended_mix_outside_the_recipe_names_the_quick_and_coco_configs():
    cfg = load(CONFIGS / "quick/atss.yaml", "MODEL.FCOS.AUX_BRANCH", "iou")
    message = detector_mismatch_warning(cfg)
    assert "MODEL.FCOS.AUX_BRANCH iou (atss: centerness)" in message
    assert "configs/quick/atss.yaml or configs/COCO-Detection/atss_R_50_FPN_1x.yaml" in message


def test_a_method_without_shipped_configs_is_told_to_set_the_keys(tmp_path, monkeypatch):
    # a method of your own has no configs/quick/<name>.yaml: none is named
    from lada.modeling import presets
    cfg = load(CONFIGS / "quick/atss.yaml", "MODEL.FCOS.AUX_BRANCH", "iou")
    monkeypatch.setattr(presets, "REPO", tmp_path)  # a repository without atss's configs
    message = detector_mismatch_warning(cfg)
    assert "For atss's own detector set those keys on the command line;" in message
    assert "configs/" not in message


def test_train_net_setup_logs_the_warning(tmp_path):
    from lada.engine.setup import build_argument_parser, setup_cfg

    args = build_argument_parser().parse_args([
        "--config-file", str(CONFIGS / "quick/ciou_atss.yaml"),
        "MODEL.FCOS.BOX_BIAS_INIT", "0.0", "OUTPUT_DIR", str(tmp_path)])
    setup_cfg(args)
    assert "MODEL.FCOS.BOX_BIAS_INIT 0.0 (ciou_atss: 4.0)" in (tmp_path / "log.txt").read_text()
