"""Every shipped config loads, builds its matcher and loss; the LADA comparison set
differs only where the paper's Table 11 says it does, and the DW Table 6 rows are their
methods on one detector, schedule and test setting."""
from pathlib import Path

import pytest
import yaml
from detectron2.config import get_cfg

from lada.config import add_lada_config
from lada.matchers import build_matcher
from lada.modeling.losses import build_loss

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ALL = sorted(p for p in CONFIGS.rglob("*.yaml") if not p.name.startswith("Base-"))


def load(path: Path):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(path))
    return cfg


def flat(cfg, prefix=""):
    items = {}
    for key, value in cfg.items():
        if hasattr(value, "items"):
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_builds_its_matcher_and_loss(path):
    cfg = load(path)
    build_matcher(cfg)
    build_loss(cfg)
    assert cfg.OUTPUT_DIR.startswith("output/")


def test_comparison_set_differs_only_in_assignment_and_aux_branch():
    paths = sorted((CONFIGS / "COCO-Detection/LADA-Comparison").glob("[!B]*.yaml"))
    assert [p.stem for p in paths] == [
        "atss_centerness", "atss_iou", "fcos_centerness", "lada_iou", "paa_iou"]
    configs = [flat(load(p)) for p in paths]
    differing = {k for k in configs[0] if len({repr(c[k]) for c in configs}) > 1}
    assert differing == {"MODEL.MATCHER.NAME", "MODEL.FCOS.AUX_BRANCH", "OUTPUT_DIR"}
    assert {c["SOLVER.IMS_PER_BATCH"] for c in configs} == {8}
    assert {c["SOLVER.MAX_ITER"] for c in configs} == {180000}


def test_paper_configs_keep_their_own_solver():
    for name in ("atss", "paa"):
        cfg = load(CONFIGS / f"COCO-Detection/{name}_R_50_FPN_1x.yaml")
        assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.01, 90000)
        assert (cfg.SOLVER.WARMUP_METHOD, cfg.SOLVER.WARMUP_ITERS) == ("constant", 500)
        assert cfg.SOLVER.WARMUP_FACTOR == pytest.approx(1 / 3)
        assert (cfg.SOLVER.BIAS_LR_FACTOR, cfg.SOLVER.WEIGHT_DECAY_BIAS) == (2.0, 0.0)


def test_dw_configs_have_the_authors_1x_schedule_and_variants():
    """DW section 4 and the authors' configs: batch 16, lr 0.01, 90k iterations, steps
    60k / 80k, linear warm-up over 1k iterations, 800 / 1333; official variant with and
    without box refinement, and the paper variant with Eq. 11's factors."""
    names = {"dw_R_50_FPN_1x.yaml": ("official", True), "DW/dw_no_refine.yaml": ("official", False),
             "DW/dw_paper_variant.yaml": ("paper", False)}
    for name, (variant, refine) in names.items():
        cfg = load(CONFIGS / "COCO-Detection" / name)
        solver = cfg.SOLVER
        assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER) == (16, 0.01, 90000)
        assert (tuple(solver.STEPS), solver.WARMUP_ITERS, solver.WARMUP_METHOD) == ((60000, 80000), 1000, "linear")
        assert solver.WARMUP_FACTOR == 0.001  # the authors' warmup_ratio
        assert (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN) == ((800,), 1333)
        assert (cfg.MODEL.MATCHER.NAME, cfg.MODEL.MATCHER.DW.VARIANT) == ("dw", variant)
        fcos = cfg.MODEL.FCOS
        assert (fcos.LOSS, fcos.BOX_REFINE, fcos.TEST_SCORE, fcos.NMS_THRESH_TEST) == (
            "weighted_pairs", refine, "product", 0.6)
        assert (fcos.PRIOR_PROB, fcos.BOX_BIAS_INIT, fcos.SCORE_THRESH_TEST) == (0.02, 4.0, 0.05)
        factors = (fcos.WEIGHTED_PAIRS.POS_CLS_WEIGHT, fcos.WEIGHTED_PAIRS.BOX_WEIGHT)
        assert factors == ((0.25, 1.25) if variant == "official" else (1.0, 5.0))


# DW Table 6 (section 4.3, "Weighting Strategies"): row -> (matcher, classification loss,
# box refinement), from the paper and the methods' own losses (docs/studies/dw-table6.md).
DW_TABLE6 = {
    "fcos": ("fcos", "focal", False), "atss": ("atss", "focal", False),
    "paa": ("paa", "focal", False), "ota": ("ota", "focal", False),
    "vfl": ("atss", "vfl", False), "tood": ("tal", "qfl", False),
    "dw": ("dw", "focal", False), "dw_box_refine": ("dw", "focal", True),
}


def _base_of(path: Path) -> Path:
    """The config a row's ``_BASE_`` names: its method's own COCO config."""
    base = yaml.safe_load(path.read_text())["_BASE_"]
    return (path.parent / base).resolve()


def test_dw_table6_rows_are_their_methods_on_one_detector_schedule_and_test_setting():
    from lada.modeling.presets import detector_mismatch

    paths = sorted((CONFIGS / "COCO-Detection/DW-Table6").glob("*.yaml"))
    assert {p.stem for p in paths} == set(DW_TABLE6)
    common = load(CONFIGS / "Base-LADA-FCOS.yaml")
    for path in paths:
        cfg = load(path)
        matcher, cls_loss, refine = DW_TABLE6[path.stem]
        fcos = cfg.MODEL.FCOS
        assert (cfg.MODEL.MATCHER.NAME, fcos.CLS_LOSS, fcos.BOX_REFINE) == (matcher, cls_loss, refine), path
        # DW section 4: FCOS R-50-FPN, 1x (batch 16, lr 0.01, 12 epochs, decay at 8 and 11),
        # 800 px; threshold 0.05 and NMS 0.6 at test; detectron2's 100 detections per image.
        assert cfg.SOLVER == common.SOLVER, path
        solver = cfg.SOLVER
        assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER, tuple(solver.STEPS)) == (
            16, 0.01, 90000, (60000, 80000))
        assert (solver.WARMUP_METHOD, solver.WARMUP_ITERS, solver.BIAS_LR_FACTOR) == ("linear", 1000, 1.0)
        for node in ("INPUT", "DATASETS"):
            assert cfg[node] == common[node], (path, node)
        for node in ("WEIGHTS", "BACKBONE", "RESNETS", "FPN", "ANCHOR_GENERATOR"):
            assert cfg.MODEL[node] == common.MODEL[node], (path, node)
        for key in ("NUM_CLASSES", "IN_FEATURES", "NUM_CONVS", "HEAD_NORM", "USE_SCALE", "RFA"):
            assert fcos[key] == common.MODEL.FCOS[key], (path, key)
        assert (fcos.SCORE_THRESH_TEST, fcos.NMS_THRESH_TEST, cfg.TEST.DETECTIONS_PER_IMAGE,
                fcos.TOPK_CANDIDATES_TEST) == (0.05, 0.6, 100, 1000), path
        # each row is its method's own COCO config, only the schedule made common
        own = flat(load(_base_of(path)))
        row = flat(cfg)
        differing = {k for k in row if repr(row[k]) != repr(own[k])}
        assert {k.split(".")[0] for k in differing} <= {"SOLVER", "OUTPUT_DIR"}, (path, differing)
        # the method's detector, but VFL's: ATSS's assignment with VarifocalNet's loss
        mismatch = detector_mismatch(cfg)
        expected = [("CLS_LOSS", "vfl", "focal"), ("BOX_BIAS_INIT", 4.0, 0.0)] if path.stem == "vfl" else []
        assert mismatch == expected, path
    assert len({load(p).OUTPUT_DIR for p in paths}) == len(paths)
