"""Shortening (or lengthening) a schedule from the command line works the same in both
routes: SOLVER.MAX_ITER (yaml) and train.max_iter (LazyConfig) alone move the steps and
the warm-up to the config's fractions, logged; steps you set win; steps outside the
schedule are refused in one line naming the keys."""
import pytest
from coco_files import GOOD, write_coco
from conftest import REPO
from detectron2.config import instantiate

from lada.engine import build_argument_parser, build_cfg, check_before_launch
from lada.engine.lazy import load_lazy_config
from lada.schedule import scaled_schedule

YAML = f"""_BASE_: "{REPO}/configs/quick/Base-Quick.yaml"
DATASETS:
  REGISTER_COCO: []
  TRAIN: ()
  TEST: ()
SOLVER:
  MAX_ITER: 1000
  STEPS: (600, 800)
  WARMUP_ITERS: 100
"""
LAZY = """from detectron2.config import LazyCall as L
from lada.engine.lazy import warmup_multistep
lr_multiplier = L(warmup_multistep)(max_iter="${train.max_iter}", steps=[600, 800],
                                    warmup_iters=100)
train = dict(max_iter=1000)
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "schedule.yaml"
    path.write_text(YAML)
    return str(path)


def test_scaled_schedule_keeps_the_fractions():
    # 550, 650, 100 of 700 -> x 100 / 700: 78.6, 92.9, 14.3
    assert scaled_schedule((550, 650), 100, 700, 100) == ((79, 93), 14)
    # x 2 / 700: both steps round to 2, kept inside [1, MAX_ITER - 1]: one step at 1
    assert scaled_schedule((550, 650), 100, 700, 2) == ((1,), 0)
    assert scaled_schedule((550, 650), 100, 700, 1) == ((), 0)  # no room for a step


def test_yaml_max_iter_alone_moves_steps_and_warmup(config):
    notes = []
    cfg, _ = build_cfg(config, ["SOLVER.MAX_ITER", "100"], notes=notes)
    # 600, 800, 100 of 1000 -> of 100: 60, 80, 10
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((60, 80), 10)
    assert notes == [
        "schedule: SOLVER.MAX_ITER 100 (yours) instead of the config's 1000: steps (600, 800) "
        "-> (60, 80) (SOLVER.STEPS), warm-up 100 -> 10 (SOLVER.WARMUP_ITERS), at the config's "
        "fractions of its schedule; set those keys on the command line to choose others"]
    cfg, _ = build_cfg(config, ["SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(50,)"])
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((50,), 10)  # yours win
    cfg, _ = build_cfg(config, ["SOLVER.MAX_ITER", "4000"])
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((2400, 3200), 400)
    cfg, _ = build_cfg(config, [])
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((600, 800), 100)


def test_steps_outside_the_schedule_are_refused_for_training_only(config, tmp_path):
    args = build_argument_parser().parse_args(
        ["--config-file", config, "SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(50, 150)"])
    with pytest.raises(SystemExit) as stop:
        check_before_launch(args)
    assert str(stop.value) == (
        "SOLVER.STEPS (50, 150) must increase within (0, SOLVER.MAX_ITER = 100): set "
        "SOLVER.STEPS to steps inside the schedule, or leave it to the config (it then follows "
        "SOLVER.MAX_ITER at the config's fractions)")
    # a run config saved before steps were checked still evaluates
    json_file, images = write_coco(tmp_path / "mine", [GOOD])
    check_before_launch(build_argument_parser().parse_args(
        ["--config-file", config, "--eval-only", "--dataset", "mine", str(json_file),
         str(images), "DATASETS.TEST", "('mine',)", "SOLVER.MAX_ITER", "100", "SOLVER.STEPS",
         "(50, 150)", "MODEL.WEIGHTS", "model.pth"]))


def test_lazy_max_iter_alone_moves_steps_and_warmup(tmp_path):
    path = tmp_path / "schedule.py"
    path.write_text(LAZY)
    notes = []
    cfg = load_lazy_config(str(path), ["train.max_iter=100"], notes)
    assert (list(cfg.lr_multiplier.steps), cfg.lr_multiplier.warmup_iters) == ([60, 80], 10)
    assert notes[0].startswith("schedule: train.max_iter 100 (yours) instead of the config's "
                               "1000: steps (600, 800) -> (60, 80) (lr_multiplier.steps), "
                               "warm-up 100 -> 10 (lr_multiplier.warmup_iters)")
    cfg = load_lazy_config(str(path), ["train.max_iter=100", "lr_multiplier.warmup_iters=3"])
    assert (list(cfg.lr_multiplier.steps), cfg.lr_multiplier.warmup_iters) == ([60, 80], 3)


def test_the_quick_lazy_config_shortened_to_five_iterations_builds_its_schedule():
    """It was refused with a traceback (lr_multiplier.steps outside train.max_iter)."""
    cfg = load_lazy_config(str(REPO / "configs/lazy/quick_lada.py"), ["train.max_iter=5"])
    assert max(cfg.lr_multiplier.steps) < 5
    instantiate(cfg.lr_multiplier)
