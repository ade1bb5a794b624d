"""Training hooks of the project (detectron2 ``HookBase``)."""
from __future__ import annotations

import logging

from detectron2.config import CfgNode
from detectron2.engine import HookBase

__all__ = ["UntrainedGTWarning", "untrained_gt_advice"]

logger = logging.getLogger(__name__)


def untrained_gt_advice(cfg: CfgNode) -> str:
    """What gives the GT boxes of ``cfg``'s matcher candidates: its anchors when it has
    them (``MODEL.MATCHER.<NAME>.ANCHOR_SCALE``), the input size in any case."""
    name = cfg.MODEL.MATCHER.NAME
    node = cfg.MODEL.MATCHER.get(name.upper())
    sizes = (f"larger inputs (INPUT.MIN_SIZE_TRAIN {tuple(cfg.INPUT.MIN_SIZE_TRAIN)}, "
             f"INPUT.MIN_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST})")
    recipe = "" if cfg.RECIPE.ENABLED else "; RECIPE.ENABLED True sizes both from the data"
    if node is not None and "ANCHOR_SCALE" in node:
        return (f"smaller anchors (MODEL.MATCHER.{name.upper()}.ANCHOR_SCALE, now "
                f"{node.ANCHOR_SCALE:g}) or {sizes}{recipe}")
    return sizes + recipe


class UntrainedGTWarning(HookBase):
    """Logs once the share of the GT boxes of the first ``window`` training iterations
    that got no positive from the matcher (summed over the iterations'
    ``assign/gts_without_pos`` and ``assign/num_gts``, :mod:`lada.modeling.statistics`),
    as a warning naming the remedies when it is above ``max_share``: such boxes are not
    trained, and for the anchor matchers the same boxes stay without a positive for the
    whole training (README, "Why ``paa`` trails")."""

    def __init__(self, advice: str, matcher: str, window: int = 20, max_share: float = 0.05):
        self.advice, self.matcher = advice, matcher
        self.window, self.max_share = window, max_share
        self._without = self._total = 0.0
        self._steps = 0

    def after_step(self) -> None:
        if self._steps >= self.window:
            return
        storage = self.trainer.storage
        histories = storage.histories()
        self._steps += 1
        if "assign/num_gts" in histories:
            total, iteration = histories["assign/num_gts"].values()[-1]
            if iteration == storage.iter:  # a step without GT boxes puts none
                self._total += total
                self._without += histories["assign/gts_without_pos"].values()[-1][0]
        if self._steps == self.window:
            self._report()

    def after_train(self) -> None:
        if 0 < self._steps < self.window:
            self._report()

    def _report(self) -> None:
        share = self._without / max(self._total, 1.0)
        counted = (f"{share:.1%} of the {self._total:.0f} GT boxes of the first {self._steps} "
                   f"iterations got no positive from '{self.matcher}'")
        if share > self.max_share:
            logger.warning(
                f"{counted} (more than {self.max_share:.0%}): they are not trained. Give them "
                f"candidates with {self.advice}; tools/visualize_assignment.py shows which boxes")
        else:
            logger.info(f"{counted} (at most {self.max_share:.0%})")
