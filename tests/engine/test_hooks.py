"""UntrainedGTWarning on a hand-fed EventStorage: the share of the first iterations' GT
boxes without a positive, against the 5 % limit, and the advice it names."""
import logging
from types import SimpleNamespace

from detectron2.config import get_cfg
from detectron2.utils.events import EventStorage

from lada.config import add_lada_config
from lada.engine.hooks import UntrainedGTWarning, untrained_gt_advice


def run_hook(steps, window=3):
    """steps: (GT boxes, without a positive) per iteration, or None for no statistics."""
    hook = UntrainedGTWarning("ADVICE", "paa", window=window)
    with EventStorage(0) as storage:
        hook.trainer = SimpleNamespace(storage=storage)
        for step in steps:
            if step is not None:
                storage.put_scalars(**{"assign/num_gts": step[0], "assign/gts_without_pos": step[1]},
                                    smoothing_hint=False)
            hook.after_step()
            storage.iter += 1
        hook.after_train()


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelname, record.getMessage()))


def logged(steps, window=3):
    """(level, message) of the hook's lines on ``steps`` (a handler on its own logger: the "lada" logger
    that train_net sets up does not propagate to pytest's)."""
    handler, logger = Records(), logging.getLogger("lada.engine.hooks")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run_hook(steps, window)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return handler.messages


def test_above_five_percent_warns_once():
    # 3 iterations of 10 boxes, 1 + 0 + 1 without: 2 / 30 = 6.7 % > 5 %; later ones ignored
    messages = logged([(10, 1), (10, 0), (10, 1), (10, 10), (10, 10)])
    assert len(messages) == 1 and messages[0][0] == "WARNING"
    assert messages[0][1].startswith("6.7% of the 30 GT boxes of the first 3 iterations got no "
                                  "positive from 'paa'")
    assert "ADVICE" in messages[0][1]


def test_at_most_five_percent_is_only_counted():
    # 1 / 20 = 5 %: not more than the limit
    assert logged([(10, 1), (10, 0)], window=2) == [
        ("INFO", "5.0% of the 20 GT boxes of the first 2 iterations got no positive from 'paa' "
                 "(at most 5%)")]


def test_steps_without_statistics_count_no_boxes():
    # the second iteration puts nothing (no GT boxes): its stale values are not re-counted,
    # so 1 of 10 = 10 %; a run shorter than the window reports at its end
    assert logged([(10, 1), None], window=5)[0][1].startswith("10.0% of the 10 GT boxes of the first 2 iterations")


def test_advice_names_the_anchor_key_or_the_sizes():
    cfg = add_lada_config(get_cfg())
    cfg.MODEL.MATCHER.NAME = "lada"
    advice = untrained_gt_advice(cfg)
    assert advice.startswith("smaller anchors (MODEL.MATCHER.LADA.ANCHOR_SCALE, now 8) or larger "
                             "inputs (INPUT.MIN_SIZE_TRAIN (800,), INPUT.MIN_SIZE_TEST 800)")
    assert "RECIPE.ENABLED True" in advice
    cfg.MODEL.MATCHER.NAME = "fcos"
    cfg.RECIPE.ENABLED = True
    assert untrained_gt_advice(cfg) == "larger inputs (INPUT.MIN_SIZE_TRAIN (800,), INPUT.MIN_SIZE_TEST 800)"
