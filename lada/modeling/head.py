"""The FCOS head: classification tower, box tower with a per-level scale, and an
auxiliary branch (centerness, IoU, GIoU; or none) on the box tower."""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm
from torch import nn
from torch.nn import functional as F

from .box_refine import BoxRefinement
from .rfa import DeformableConv3x3

__all__ = ["FCOSHead"]

BOX_ACTIVATIONS = ("linear", "relu")


def _tower(in_channels: int, num_convs: int, norm: str) -> nn.Sequential:
    layers: List[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1))
        if norm:
            layers.append(get_norm(norm, in_channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Shared across levels. Submodule names follow detectron2's ``FCOSHead``
    (``cls_subnet``, ``bbox_subnet``, ``cls_score``, ``bbox_pred``); the box output of
    level ``l`` is multiplied by a learnable ``scales[l]`` (FCOS paper), initialised to
    1 so that the head starts as detectron2's. ``box_activation="relu"`` keeps the
    predicted side distances non-negative (FCOS with normalised targets), so that a
    predicted box is never inverted; "linear" is detectron2's FCOS. With ``rfa`` (MMMC's
    receptive-field adaptor) the ``rfa_position``-th conv of each tower is a deformable
    conv starting as the plain one (Table 3: positions 0-3). ``box_bias_init`` is the
    initial side distance in strides: 0 (detectron2) starts every predicted box at its
    point, 4 starts it as the 8-stride square anchor box of ATSS-style detectors. With
    ``box_refine`` (DW section 3.4) the side distances are refined by
    :class:`BoxRefinement` from the box tower, then take the box activation again (the
    authors' code: ReLU before and after). ``with_aux=False`` (``AUX_BRANCH none``)
    builds no auxiliary branch; ``aux_prior_prob`` sets the auxiliary output's initial
    probability as ``prior_prob`` the classification's: 0.5 (bias 0, detectron2's FCOS)
    or 0.01 for an objectness branch trained at every point (YOLOX)."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.01,
        use_scale: bool = True,
        box_activation: str = "linear",
        rfa: bool = False,
        rfa_position: int = 0,
        box_bias_init: float = 0.0,
        box_refine: bool = False,
        anchor_offset: float = 0.5,
        with_aux: bool = True,
        aux_prior_prob: float = 0.5,
    ):
        super().__init__()
        if box_activation not in BOX_ACTIVATIONS:
            raise ValueError(
                f"MODEL.FCOS.BOX_ACTIVATION must be one of {BOX_ACTIVATIONS}, got '{box_activation}'"
            )
        self.box_activation = box_activation
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOSHead needs equal channels on every level, got {channels}")
        (in_channels,) = channels
        if not 0 < prior_prob < 1:
            raise ValueError(f"MODEL.FCOS.PRIOR_PROB must be in (0, 1), got {prior_prob}")
        self.num_classes = num_classes
        self.cls_subnet = _tower(in_channels, num_convs, norm)
        self.bbox_subnet = _tower(in_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, kernel_size=3, padding=1)
        # No auxiliary branch (MODEL.FCOS.AUX_BRANCH none): no conv, so that no parameter
        # goes untrained; a checkpoint with one loads with aux_pred.* reported unused.
        self.aux_pred = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1) if with_aux else None
        self.scales = nn.Parameter(torch.ones(len(input_shape))) if use_scale else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))
        if not 0 < aux_prior_prob < 1:
            raise ValueError(f"MODEL.FCOS.AUX_PRIOR_PROB must be in (0, 1), got {aux_prior_prob}")
        if self.aux_pred is not None:
            nn.init.constant_(self.aux_pred.bias, -math.log((1 - aux_prior_prob) / aux_prior_prob))
        if not math.isfinite(box_bias_init):
            raise ValueError(f"MODEL.FCOS.BOX_BIAS_INIT must be finite, got {box_bias_init}")
        nn.init.constant_(self.bbox_pred.bias, box_bias_init)
        self.box_refine = BoxRefinement(in_channels, anchor_offset) if box_refine else None
        if rfa:
            if not 0 <= rfa_position < num_convs:
                raise ValueError(
                    f"MODEL.FCOS.RFA_POSITION must be in [0, NUM_CONVS = {num_convs}), got {rfa_position}"
                )
            for tower in (self.cls_subnet, self.bbox_subnet):
                index = [i for i, m in enumerate(tower) if isinstance(m, nn.Conv2d)][rfa_position]
                tower[index] = DeformableConv3x3.from_conv(tower[index])

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "num_convs": cfg.MODEL.FCOS.NUM_CONVS,
            "norm": cfg.MODEL.FCOS.HEAD_NORM,
            "prior_prob": cfg.MODEL.FCOS.PRIOR_PROB,
            "use_scale": cfg.MODEL.FCOS.USE_SCALE,
            "box_activation": cfg.MODEL.FCOS.BOX_ACTIVATION,
            "rfa": cfg.MODEL.FCOS.RFA,
            "rfa_position": cfg.MODEL.FCOS.RFA_POSITION,
            "box_bias_init": cfg.MODEL.FCOS.BOX_BIAS_INIT,
            "box_refine": cfg.MODEL.FCOS.BOX_REFINE,
            "anchor_offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
            "with_aux": cfg.MODEL.FCOS.AUX_BRANCH != "none",
            "aux_prior_prob": cfg.MODEL.FCOS.AUX_PRIOR_PROB,
        }

    def forward(
        self, features: List[torch.Tensor]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """Per level l, features (N, D, H_l, W_l) -> class logits (N, C, H_l, W_l),
        box deltas (N, 4, H_l, W_l) in strides, auxiliary-branch logits ``pred_aux``
        (N, 1, H_l, W_l), from the ``aux_pred`` convolution (an empty list without an
        auxiliary branch)."""
        logits, deltas, pred_aux = [], [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_feature = self.bbox_subnet(feature)
            delta = self.bbox_pred(box_feature)
            if self.scales is not None:
                delta = delta * self.scales[level]
            delta = self._activate(delta)
            if self.box_refine is not None:
                delta = self._activate(self.box_refine(box_feature, delta))
            deltas.append(delta)
            if self.aux_pred is not None:
                pred_aux.append(self.aux_pred(box_feature))
        return logits, deltas, pred_aux

    def _activate(self, delta: torch.Tensor) -> torch.Tensor:
        return F.relu(delta) if self.box_activation == "relu" else delta
