"""The ``fcos`` matcher's centre region: detectron2's square and LADA Table 5's EPCP
(same area, the GT's aspect ratio). Equality with detectron2's FCOS is tested in
tests/modeling/test_detectron2_equivalence.py."""
import pytest
import torch
from conftest import small_cfg
from helpers import scene

from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.methods.fcos import FCOSMatcher
from lada.matchers.stages import priors

# GT 80 x 20 centred at (100, 100); stride 8, radius 1.5: the square reaches 12 px each
# way; EPCP reaches 12 * sqrt(80 / 20) = 24 px along x and 12 * sqrt(20 / 80) = 6 px
# along y (area 48 x 12 = 24 x 24, the square's).
GT = [60.0, 90.0, 140.0, 110.0]
POINTS = [(120.0, 100.0), (123.9, 100.0), (124.1, 100.0), (100.0, 105.9), (100.0, 106.1),
          (110.0, 100.0)]
SQUARE = [False, False, False, True, True, True]
EPCP = [True, True, False, True, False, True]


def test_center_regions_by_hand():
    points = torch.tensor(POINTS)
    strides = torch.full((len(POINTS),), 8.0)
    gt = torch.tensor([GT])
    square, equal_area = priors.SQUARE, priors.ASPECT_EQUAL_AREA
    assert priors.in_center_region(points, strides, gt, 1.5, square).tolist() == SQUARE
    assert priors.in_center_region(points, strides, gt, 1.5, equal_area).tolist() == EPCP


@pytest.mark.parametrize("center_prior, expected", [("square", SQUARE), ("epcp", EPCP)])
def test_matcher_positives(center_prior, expected):
    inputs = scene([(8, POINTS)], [[GT]])  # a single level: no scale range applies
    gt_index = FCOSMatcher(center_prior=center_prior)(inputs).gt_index[0]
    assert gt_index.tolist() == [0 if e else BACKGROUND for e in expected]


def test_config_key():
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "fcos", "MODEL.MATCHER.FCOS.CENTER_PRIOR": "epcp"})
    assert build_matcher(cfg).center_prior == "epcp"
    cfg.MODEL.MATCHER.FCOS.CENTER_PRIOR = "circle"
    with pytest.raises(ValueError, match="MODEL.MATCHER.FCOS.CENTER_PRIOR must be one of"):
        build_matcher(cfg)
