"""Every matcher on one 800x1333 image (COCO test size, five levels, 80 classes) with
1,000 GT boxes: it completes and the assignment is well formed; with 5,000 (the
benchmark's largest G, boxes of 4-304 px, the distribution with the most points inside
the boxes) its peak memory, measured as benchmarks/matchers.py measures it
(benchmarks/measure.py), stays within the bound."""
import pytest
import torch
from benchmarks.measure import crowded_inputs, peak_memory_bytes
from conftest import small_cfg

from lada.matchers import MATCHER_REGISTRY, build_matcher

PEAK_MEMORY_BOUND_MIB = 256


@pytest.fixture(scope="module")
def crowded():
    return crowded_inputs(num_gts=1000, device="cpu")


@pytest.mark.parametrize("name", sorted(name for name, _ in MATCHER_REGISTRY))
def test_one_thousand_gt_boxes(crowded, name):
    gt_index = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))(crowded).gt_index
    assert gt_index.shape == (1, crowded.num_points)
    assert gt_index.min() >= -1 and gt_index.max() < 1000
    assert len(torch.unique(gt_index[gt_index >= 0])) > 500


@pytest.fixture(scope="module")
def five_thousand():
    return crowded_inputs(num_gts=5000, device="cpu")


@pytest.mark.parametrize("name", sorted(name for name, _ in MATCHER_REGISTRY))
def test_peak_memory_bound_at_five_thousand_gt_boxes(five_thousand, name):
    matcher = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))
    result, peak = peak_memory_bytes(lambda: matcher(five_thousand))
    assert peak <= PEAK_MEMORY_BOUND_MIB * 2**20, f"{name}: {peak / 2**20:.1f} MiB"
    assert result.foreground.sum() > 2500  # it assigned: the measurement saw the real work


def test_peak_memory_counts_what_the_call_holds():
    # Two live 4 MB tensors at once, then one freed before the third: peak 8 MB (plus
    # torch's few bytes of scalars); the input, allocated before, is not counted.
    data = torch.ones(1_000_000)

    def call():
        first = data * 2
        second = first + 1
        del first
        third = second * 3
        return third.sum()

    _, peak = peak_memory_bytes(call)
    assert 8_000_000 <= peak < 8_001_000
