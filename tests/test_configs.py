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
