"""``fcos``: detectron2's FCOS matching with centre sampling (spec section 2)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import PerImageMatcher
from ..contract import MatchInputs
from ..registry import register_matcher
from ..stages.divisions import assign_to_best_gt
from ..stages.geometry import box_areas, is_inside
from ..stages.priors import center_sampling_prior, fcos_scale_prior

__all__ = ["FCOSMatcher"]

CENTER_PRIORS = ("square", "epcp")


@register_matcher("fcos")
class FCOSMatcher(PerImageMatcher):
    """detectron2's ``FCOS.match_anchors``: a point is positive for a GT when it is
    within ``center_sampling_radius`` strides of the GT centre (Chebyshev), strictly
    inside the GT, and the GT's size fits the point's level; a point claimed by several
    GTs goes to the one with the smallest area. ``center_prior="epcp"`` replaces the
    square centre region by the rectangle of the same area with the GT's aspect ratio
    (LADA Table 5)."""

    @configurable
    def __init__(self, *, center_sampling_radius: float = 1.5, center_prior: str = "square"):
        if not center_sampling_radius > 0:
            raise ValueError(
                f"MODEL.MATCHER.FCOS.CENTER_SAMPLING_RADIUS must be > 0, got {center_sampling_radius}"
            )
        if center_prior not in CENTER_PRIORS:
            raise ValueError(
                f"MODEL.MATCHER.FCOS.CENTER_PRIOR must be one of {CENTER_PRIORS}, got '{center_prior}'"
            )
        self.center_sampling_radius = float(center_sampling_radius)
        self.center_prior = center_prior

    @classmethod
    def from_config(cls, cfg):
        fcos = cfg.MODEL.MATCHER.FCOS
        return {
            "center_sampling_radius": fcos.CENTER_SAMPLING_RADIUS,
            "center_prior": fcos.CENTER_PRIOR,
        }

    def match_image(self, inputs: MatchInputs, image: int) -> torch.Tensor:
        points, strides, gt_boxes = inputs.points, inputs.strides, inputs.gt_boxes[image]
        positive = center_sampling_prior(
            points, strides, gt_boxes, self.center_sampling_radius,
            elliptic=self.center_prior == "epcp",
        )
        positive &= is_inside(points[None], gt_boxes[:, None], eps=0.0)
        positive &= fcos_scale_prior(points, strides, inputs.num_points_per_level, gt_boxes)
        smaller_is_better = -box_areas(gt_boxes)[:, None].expand_as(positive)
        return assign_to_best_gt(smaller_is_better, positive)
