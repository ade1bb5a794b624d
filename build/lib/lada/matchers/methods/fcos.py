"""``fcos``: detectron2's FCOS matching with centre sampling (docs/methods/fcos.md)."""
from __future__ import annotations

import torch
from detectron2.config import configurable

from ..base import BatchMatcher
from ..contract import MatchInputs, MatchResult
from ..registry import register_matcher
from ..stages.batch import BatchGTs
from ..stages.best_gt import BestGTTiesToLowestIndex
from ..stages.geometry import box_areas, box_centers, is_inside
from ..stages.pairs import WindowIndex, level_maxima, widen
from ..stages.priors import (
    ASPECT_EQUAL_AREA,
    SQUARE,
    center_region_reach,
    fcos_size_ranges,
    in_center_region,
    in_fcos_size_range,
)
from ..validation import require_one_of, require_positive

__all__ = ["FCOSMatcher"]

CENTER_REGIONS = {"square": SQUARE, "epcp": ASPECT_EQUAL_AREA}
"""``MODEL.MATCHER.FCOS.CENTER_PRIOR`` -> centre-region shape (``stages/priors.py``): its
``epcp`` keeps the square's area (``r s sqrt(W / H)``), unlike the ``lada`` matcher's."""
CENTER_PRIORS = tuple(CENTER_REGIONS)


@register_matcher("fcos")
class FCOSMatcher(BatchMatcher):
    """detectron2's ``FCOS.match_anchors``: a point is positive for a GT when it is
    within ``center_sampling_radius`` strides of the GT centre (Chebyshev), strictly
    inside the GT, and the GT's size fits the point's level; a point claimed by several
    GTs goes to the one with the smallest area. ``center_prior="epcp"`` replaces the
    square centre region by the rectangle of the same area with the GT's aspect ratio
    (LADA Table 5; ``ASPECT_EQUAL_AREA``, not LADA's own stretched EPCP).

    Only the points of each GT's centre region (intersected with the GT) are tested,
    found by ``WindowIndex`` for all GT boxes of the batch at once: time and memory grow
    with the positives, not with G x R.
    """

    @configurable
    def __init__(self, *, center_sampling_radius: float = 1.5, center_prior: str = "square"):
        require_positive("MODEL.MATCHER.FCOS.CENTER_SAMPLING_RADIUS", center_sampling_radius)
        require_one_of("MODEL.MATCHER.FCOS.CENTER_PRIOR", center_prior, CENTER_PRIORS)
        self.center_sampling_radius = float(center_sampling_radius)
        self.center_prior = center_prior
        self.center_region_shape = CENTER_REGIONS[center_prior]

    @classmethod
    def from_config(cls, cfg):
        fcos = cfg.MODEL.MATCHER.FCOS
        return {
            "center_sampling_radius": fcos.CENTER_SAMPLING_RADIUS,
            "center_prior": fcos.CENTER_PRIOR,
        }

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        points, strides, gt_boxes = inputs.points, inputs.strides, gts.boxes
        levels = inputs.num_points_per_level
        shape, radius = self.center_region_shape, self.center_sampling_radius
        reach = center_region_reach(
            level_maxima(strides, levels)[None], gt_boxes[:, None], radius, shape
        )  # (M, L, 2)
        centers = box_centers(gt_boxes)[:, None]
        windows = widen(torch.cat([
            torch.maximum(centers - reach, gt_boxes[:, None, :2]),
            torch.minimum(centers + reach, gt_boxes[:, None, 2:]),
        ], dim=2))  # (M, L, 4) centre region within the GT
        lower, upper = fcos_size_ranges(strides, levels)
        smaller_is_better = -box_areas(gt_boxes)
        best = BestGTTiesToLowestIndex(
            gts.num_images * gts.num_points, smaller_is_better.dtype, points.device
        )
        for gt, point in WindowIndex(points, levels).pairs(windows):
            xy, boxes = points.index_select(0, point), gt_boxes.index_select(0, gt)
            positive = in_center_region(xy, strides.index_select(0, point), boxes, radius, shape)
            positive &= is_inside(xy, boxes, eps=0.0)
            positive &= in_fcos_size_range(
                xy, boxes, lower.index_select(0, point), upper.index_select(0, point)
            )
            gt, point = gt[positive], point[positive]
            best.add(gt, gts.keys(gt, point), smaller_is_better.index_select(0, gt))
        return MatchResult(gt_index=gts.local_gt_index(best.gt_index()))
