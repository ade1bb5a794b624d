"""The start-up checks of a yaml config, for a LazyConfig: whether the detector is its
matcher's method's (:func:`lada.modeling.presets.detector_mismatch_warning`) and what
gives the GT boxes a matcher leaves without a positive candidates
(:func:`lada.engine.hooks.untrained_gt_advice`), read from the config's ``model`` and
``dataloader`` nodes instead of ``MODEL.FCOS`` keys.

An argument the config does not set has its class's default (the signature's), as
``instantiate`` would give it; a detector key whose argument the config's loss or head
class does not take (``weighted_pairs`` has no ``aux_branch``) is not compared.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, List, Mapping, Optional, Tuple

from detectron2.utils.registry import locate
from omegaconf import DictConfig

from ..matchers import uses_anchors
from ..matchers.declaration import ANCHOR_ARGUMENT
from ..modeling.losses import LOSSES
from ..modeling.presets import DETECTOR_KEYS, METHOD_DETECTORS

__all__ = ["LAZY_DETECTOR_ARGUMENTS", "lazy_detector_mismatch_warning", "lazy_method",
           "lazy_untrained_gt_advice", "warn_lazy_detector_mismatch"]

logger = logging.getLogger(__name__)

LAZY_DETECTOR_ARGUMENTS: Mapping[str, Tuple[str, str]] = {
    "AUX_BRANCH": ("loss", "aux_branch"),
    "CLS_LOSS": ("loss", "cls_loss"),
    "BOX_BIAS_INIT": ("head", "box_bias_init"),
    "BOX_ACTIVATION": ("head", "box_activation"),
    "NORMALIZER": ("loss", "normalizer"),
    "BOX_LOSS_WEIGHTING": ("loss", "box_weighting"),
    "TEST_SCORE": ("", "test_score"),
    "SCORE_THRESH_ON": ("", "test_score_thresh_on"),
    "BOX_LOSS": ("loss", "box_loss"),
    "AUX_PRIOR_PROB": ("head", "aux_prior_prob"),
    "LOSS_WITHOUT_QUALITY": ("loss", "without_quality"),
}
"""Each ``DETECTOR_KEYS`` key but LOSS -> (the node of ``model`` it belongs to, "" for
``model`` itself; the argument its yaml twin's ``from_config`` fills from it). LOSS is
the class of ``model.loss`` (:data:`lada.modeling.losses.LOSSES`)."""


def _target(node: DictConfig) -> Optional[type]:
    """The class a LazyCall node instantiates (a class, or its dotted path once the config
    was saved and loaded again); None if it cannot be found."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # a class of a package that is not installed: nothing to compare
            return None
    return target if isinstance(target, type) else None


def _argument(node: DictConfig, name: str) -> Tuple[bool, Any]:
    """Whether ``node``'s class takes argument ``name``, and its value: the node's, else
    the signature's default."""
    target = _target(node)
    if target is None:
        return False, None
    parameter = inspect.signature(target).parameters.get(name)
    if parameter is None:
        return False, None
    if name in node:
        return True, node[name]
    return parameter.default is not inspect.Parameter.empty, parameter.default


def lazy_method(cfg: DictConfig) -> Optional[type]:
    """The registered matcher class of ``cfg.model.matcher`` (it has a ``METHOD``), or None."""
    matcher = _target(cfg.model.get("matcher"))
    return matcher if matcher is not None and hasattr(matcher, "METHOD") else None


def lazy_detector_mismatch_warning(cfg: DictConfig) -> Optional[str]:
    """The start-up warning for a LazyConfig whose detector (``model``'s head, loss and
    test arguments) is not its matcher's method's, naming each differing argument; None
    when they agree or the matcher declares no detector."""
    matcher = lazy_method(cfg)
    if matcher is None or matcher.METHOD.name not in METHOD_DETECTORS:
        return None
    name = matcher.METHOD.name
    expected = METHOD_DETECTORS[name]
    differences: List[str] = []
    loss_class = _target(cfg.model.get("loss"))
    loss = {cls: key for key, cls in LOSSES.items()}.get(loss_class)
    if loss is not None and loss != expected["LOSS"]:
        differences.append(f"model.loss {LOSSES[loss].__name__} ({name}: "
                           f"{LOSSES[expected['LOSS']].__name__})")
    for key in DETECTOR_KEYS:
        if key == "LOSS":
            continue
        node_name, argument = LAZY_DETECTOR_ARGUMENTS[key]
        node = cfg.model.get(node_name) if node_name else cfg.model
        takes, value = _argument(node, argument)
        if takes and value != expected[key]:
            path = ".".join(filter(None, ("model", node_name, argument)))
            differences.append(f"{path} {value!r} ({name}: {expected[key]!r})")
    if not differences:
        return None
    return (f"model.matcher is {matcher.__name__} ('{name}') but the detector is not {name}'s: "
            f"{', '.join(differences)}. For {name}'s own detector start from "
            f"configs/lazy/quick_{name}.py or configs/lazy/{name}_R_50_FPN_1x.py (or set those "
            "arguments); if the mix is intended, ignore this warning")


def warn_lazy_detector_mismatch(cfg: DictConfig) -> None:
    """Logs :func:`lazy_detector_mismatch_warning`, if any."""
    message = lazy_detector_mismatch_warning(cfg)
    if message:
        logger.warning(message)


def _short_edges(mapper: DictConfig) -> List[Any]:
    return [augmentation.short_edge_length for augmentation in mapper.get("augmentations", [])
            if isinstance(augmentation, DictConfig) and "short_edge_length" in augmentation]


def lazy_untrained_gt_advice(cfg: DictConfig) -> str:
    """:func:`lada.engine.hooks.untrained_gt_advice` for a LazyConfig: smaller anchors
    (``model.matcher.anchor_scale``) for a matcher with anchors, larger inputs in any case
    (the ``short_edge_length`` of the loaders' resize augmentations)."""
    train = _short_edges(cfg.dataloader.train.mapper)
    test = _short_edges(cfg.dataloader.test.mapper)
    sizes = ("larger inputs (short_edge_length of dataloader.train.mapper.augmentations, now "
             f"{', '.join(map(str, train)) or 'unset'}, and of "
             f"dataloader.test.mapper.augmentations, now {', '.join(map(str, test)) or 'unset'})")
    matcher = lazy_method(cfg)
    if matcher is not None and uses_anchors(matcher):
        _, scale = _argument(cfg.model.matcher, ANCHOR_ARGUMENT)
        return f"smaller anchors (model.matcher.{ANCHOR_ARGUMENT}, now {scale:g}) or {sizes}"
    return sizes
