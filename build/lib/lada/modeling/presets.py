"""Each method's detector: the ``MODEL.FCOS`` settings its paper trains its matcher with.

A matcher is one part of a method; the detector around it (auxiliary branch,
classification loss, box bias and activation, loss normaliser and weighting, test score
and what the score threshold is compared with) is the other, and a matcher on another
method's detector can be far weaker (README: ``ciou_atss`` falls from 41 to 15 AP with
box bias 0). ``configs/quick/<method>.yaml`` and ``configs/quick/own_data_<method>.yaml``
hold each method's detector; :func:`detector_mismatch_warning` names the settings of a
config whose detector is not its matcher's method's, at start-up (``train_net.py``).
Tests check that the quick and COCO configs agree with :data:`METHOD_DETECTORS`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from detectron2.config import CfgNode

from .losses import loss_name

__all__ = ["DETECTOR_KEYS", "METHOD_DETECTORS", "detector_mismatch", "detector_mismatch_warning",
           "method_config", "warn_detector_mismatch"]

logger = logging.getLogger(__name__)

# MODEL.FCOS keys that make up a method's detector; "LOSS" is compared as resolved
# ("auto" -> the loss that consumes the matcher's results).
DETECTOR_KEYS = ("AUX_BRANCH", "CLS_LOSS", "BOX_BIAS_INIT", "BOX_ACTIVATION", "NORMALIZER",
                 "BOX_LOSS_WEIGHTING", "LOSS", "TEST_SCORE", "SCORE_THRESH_ON")


def _detector(aux: str, cls: str = "focal", bias: float = 0.0, activation: str = "linear",
              normalizer: str = "num_pos", weighting: str = "none", loss: str = "dense",
              score: str = "geometric_mean", thresh_on: str = "cls") -> Dict[str, Any]:
    return dict(zip(DETECTOR_KEYS, (aux, cls, bias, activation, normalizer, weighting, loss,
                                    score, thresh_on)))


# Method (= its matcher's registered name) -> its detector's DETECTOR_KEYS.
METHOD_DETECTORS: Dict[str, Dict[str, Any]] = {
    # detectron2's FCOS: centerness, moving-average normaliser, threshold on the score.
    "fcos": _detector("centerness", normalizer="ema", thresh_on="combined"),
    # ATSS: centerness, GIoU weighted by the centerness target.
    "atss": _detector("centerness", weighting="aux_target"),
    # PAA: IoU branch, GIoU weighted by the IoU target.
    "paa": _detector("iou", weighting="aux_target"),
    # LADA: IoU branch (Eq. 9), unweighted GIoU.
    "lada": _detector("iou"),
    # CIoU-ATSS: quality focal loss, IoU branch, boxes start as the 8-stride anchors.
    "ciou_atss": _detector("iou", cls="qfl", bias=4.0, weighting="aux_target"),
    # MMMC (APS): GIoU quality branch.
    "aps": _detector("giou"),
    # DW: pairwise weighted loss on the joint score, ReLU side distances from 4 strides.
    "dw": _detector("centerness", bias=4.0, activation="relu", normalizer="ema",
                    loss="weighted_pairs", score="product", thresh_on="combined"),
}


def method_config(method: str, own_data: bool) -> str:
    """The config(s) that train ``method``'s detector: the own-data one, or the quick and
    the COCO one."""
    if own_data:
        return f"configs/quick/own_data_{method}.yaml"
    return f"configs/quick/{method}.yaml or configs/COCO-Detection/{method}_R_50_FPN_1x.yaml"


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
    return (f"MODEL.MATCHER.NAME is '{name}' but the detector settings are {whose}: {listed}. For "
            f"{name}'s own detector use --config-file {method_config(name, cfg.RECIPE.ENABLED)} "
            "(or set those keys); if the mix is intended, ignore this warning")


def warn_detector_mismatch(cfg: CfgNode) -> None:
    """Logs :func:`detector_mismatch_warning`, if any."""
    message = detector_mismatch_warning(cfg)
    if message:
        logger.warning(message)
