"""Every matcher on one 800x1333 image with 1,000 GT boxes (COCO test size, five levels,
80 classes): it completes, and the assignment is well formed. Peak memory and time are
printed by benchmarks/assignment_memory.py."""
import pytest
import torch
from benchmarks.assignment_memory import build_inputs
from conftest import small_cfg

from lada.matchers import build_matcher


@pytest.fixture(scope="module")
def crowded():
    return build_inputs(num_gts=1000, device="cpu")


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "lada", "ciou_atss", "dw"])
def test_one_thousand_gt_boxes(crowded, name):
    gt_index = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))(crowded).gt_index
    assert gt_index.shape == (1, crowded.num_points)
    assert gt_index.min() >= -1 and gt_index.max() < 1000
    assert len(torch.unique(gt_index[gt_index >= 0])) > 500
