"""Each method's detector: the ``MODEL.FCOS`` settings its paper trains its matcher with.

A matcher is one part of a method; the detector around it (auxiliary branch,
classification loss, box bias and activation, loss normaliser and weighting, test score
and what the score threshold is compared with) is the other, and a matcher on another
method's detector can be far weaker (README: ``ciou_atss`` falls from 41 to 15 AP with
box bias 0). Each matcher class declares its method's detector (``METHOD.detector``,
``lada/matchers/declaration.py``); ``configs/quick/<method>.yaml`` and
``configs/quick/own_data_<method>.yaml`` hold it; :func:`detector_mismatch_warning` names
the settings of a config whose detector is not its matcher's method's, at start-up
(``train_net.py``; a LazyConfig's: ``lada/engine/lazy_checks.py``). Tests check that the quick and COCO configs agree with
:data:`METHOD_DETECTORS`, which reads the declarations.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from detectron2.config import CfgNode, get_cfg

from ..config import add_lada_config
from ..matchers import MATCHER_REGISTRY, matcher_class
from ..paths import REPO
from .losses import loss_consuming, loss_name

__all__ = ["DETECTOR_KEYS", "METHOD_DETECTORS", "detector_mismatch", "detector_mismatch_warning",
           "method_config", "warn_detector_mismatch"]

logger = logging.getLogger(__name__)

# MODEL.FCOS keys that make up a method's detector; "LOSS" is compared as resolved
# ("auto" -> the loss that consumes the matcher's results).
DETECTOR_KEYS = ("AUX_BRANCH", "CLS_LOSS", "BOX_BIAS_INIT", "BOX_ACTIVATION", "NORMALIZER",
                 "BOX_LOSS_WEIGHTING", "LOSS", "TEST_SCORE", "SCORE_THRESH_ON", "BOX_LOSS",
                 "AUX_PRIOR_PROB", "LOSS_WITHOUT_QUALITY")


class _MethodDetectors(Mapping):
    """Method (= its matcher's registered name) -> its detector's ``DETECTOR_KEYS``: the
    defaults of ``MODEL.FCOS`` (detectron2's FCOS) updated by the class's
    ``METHOD.detector``, with LOSS the one that consumes its kind of result. Read from the
    registry on every access, so a method registered later (a user's own) is in it;
    methods that declare no detector are not."""

    def _declared(self) -> Dict[str, Any]:
        return {name: cls.METHOD.detector for name, cls in MATCHER_REGISTRY
                if cls.METHOD.detector is not None}

    def __getitem__(self, method: str) -> Dict[str, Any]:
        declared = self._declared()[method]
        settable = [key for key in DETECTOR_KEYS if key != "LOSS"]  # LOSS follows the result kind
        unknown = sorted(set(declared) - set(settable))
        if unknown:
            raise KeyError(f"matcher '{method}' declares detector keys {unknown}; a detector "
                           f"preset sets some of {settable}")
        defaults = _default_fcos()
        values = {key: declared.get(key, defaults[key]) for key in DETECTOR_KEYS if key != "LOSS"}
        values["LOSS"] = loss_consuming(matcher_class(method).METHOD.result)
        return {key: values[key] for key in DETECTOR_KEYS}

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._declared()))

    def __len__(self) -> int:
        return len(self._declared())


@functools.lru_cache(maxsize=None)
def _default_fcos() -> CfgNode:
    return add_lada_config(get_cfg()).MODEL.FCOS


METHOD_DETECTORS: Mapping[str, Dict[str, Any]] = _MethodDetectors()


def method_config(method: str, own_data: bool) -> str:
    """The config(s) that train ``method``'s detector: the own-data one, or the quick and
    the COCO one (``or`` between them)."""
    return " or ".join(_method_configs(method, own_data))


def _method_configs(method: str, own_data: bool) -> List[str]:
    if own_data:
        return [f"configs/quick/own_data_{method}.yaml"]
    return [f"configs/quick/{method}.yaml", f"configs/COCO-Detection/{method}_R_50_FPN_1x.yaml"]


def _shipped_configs(method: str, own_data: bool) -> List[str]:
    """:func:`method_config`'s configs that the repository holds (none for a method of
    your own)."""
    return [path for path in _method_configs(method, own_data) if (REPO / path).is_file()]


def _settings(cfg: CfgNode) -> Dict[str, Any]:
    values = {key: cfg.MODEL.FCOS[key] for key in DETECTOR_KEYS if key != "LOSS"}
    values["LOSS"] = loss_name(cfg)
    return values


def detector_mismatch(cfg: CfgNode) -> List[Tuple[str, Any, Any]]:
    """(key, the config's value, the method's value) of every ``DETECTOR_KEYS`` on which
    ``cfg``'s detector differs from that of its matcher's method (``MODEL.MATCHER.NAME``);
    empty for a matcher with no entry in :data:`METHOD_DETECTORS`."""
    method = METHOD_DETECTORS.get(cfg.MODEL.MATCHER.NAME)
    if method is None:
        return []
    settings = _settings(cfg)
    return [(key, settings[key], method[key]) for key in DETECTOR_KEYS
            if settings[key] != method[key]]


def detector_mismatch_warning(cfg: CfgNode) -> Optional[str]:
    """The start-up warning for a config whose detector is not its matcher's method's
    (naming the differing keys, the method whose detector it is, if any, and the config
    to use); None when they agree."""
    differences = detector_mismatch(cfg)
    if not differences:
        return None
    name = cfg.MODEL.MATCHER.NAME
    settings = _settings(cfg)
    owners = [method for method, values in METHOD_DETECTORS.items() if values == settings]
    whose = f"{owners[0]}'s, not {name}'s" if owners else f"not {name}'s"
    listed = ", ".join(f"MODEL.FCOS.{key} {yours} ({name}: {theirs})"
                       for key, yours, theirs in differences)
    shipped = _shipped_configs(name, cfg.RECIPE.ENABLED)
    remedy = (f"use --config-file {' or '.join(shipped)} (or set those keys)" if shipped
              else "set those keys on the command line")
    return (f"MODEL.MATCHER.NAME is '{name}' but the detector settings are {whose}: {listed}. For "
            f"{name}'s own detector {remedy}; if the mix is intended, ignore this warning")


def warn_detector_mismatch(cfg: CfgNode) -> None:
    """Logs :func:`detector_mismatch_warning`, if any."""
    message = detector_mismatch_warning(cfg)
    if message:
        logger.warning(message)
