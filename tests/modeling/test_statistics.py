"""Assignment statistics by hand."""
import pytest
import torch

from lada.modeling.statistics import assignment_statistics


def test_statistics_of_a_hand_made_assignment():
    # Two images, levels of 4 and 2 points. Image 0 has GTs 0, 1, 2 (GT 2 gets nothing),
    # image 1 has one GT with three positives.
    gt_index = torch.tensor([[0, 0, 1, -1, 0, -1], [-1, 0, -1, -1, 0, 0]])
    stats = assignment_statistics(gt_index, [3, 1], [4, 2])
    assert stats["assign/pos_per_image"] == 3.5
    assert stats["assign/pos_per_gt_mean"] == pytest.approx(7 / 4)
    assert stats["assign/pos_per_gt_min"] == 0 and stats["assign/pos_per_gt_max"] == 3
    assert stats["assign/gts_without_pos"] == 1 and stats["assign/num_gts"] == 4
    assert stats["assign/gts_without_pos_share"] == pytest.approx(1 / 4)
    assert stats["assign/pos_share_level0"] == pytest.approx(4 / 7)
    assert stats["assign/pos_share_level1"] == pytest.approx(3 / 7)


def test_statistics_without_any_gt():
    stats = assignment_statistics(torch.full((2, 6), -1), [0, 0], [4, 2])
    assert stats["assign/pos_per_image"] == 0
    assert "assign/pos_per_gt_mean" not in stats
    assert "assign/gts_without_pos_share" not in stats
