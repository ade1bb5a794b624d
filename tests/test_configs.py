"""Every shipped config loads, builds its matcher and loss, and the LADA comparison set
differs only where the paper's Table 11 says it does."""
from pathlib import Path

import pytest
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
