"""ATSS on hand-built scenes (docs/methods/atss.md)."""
import pytest
import torch
from conftest import random_boxes
from helpers import grid, scene

from lada.matchers import BACKGROUND
from lada.matchers.methods.atss import ATSSMatcher
from lada.matchers.stages.divisions import mean_plus_std_threshold
from lada.matchers.stages.geometry import anchor_boxes, paired_iou
from lada.matchers.stages.candidates import topk_closest_per_level


def test_topk_per_level_with_fewer_points_than_k():
    # Level 0: 10 points on a row; level 1: 3 points. GT centre (4.2, 0).
    level0 = (1, [(float(x), 0.0) for x in range(10)])
    level1 = (20, [(0.0, 0.0), (20.0, 0.0), (40.0, 0.0)])
    inputs = scene([level0, level1], [[[2.2, -1.0, 6.2, 1.0]]])
    candidates = topk_closest_per_level(inputs.points, inputs.num_points_per_level,
                                        inputs.gt_boxes[0], k=5)
    # Level 0: x = 4 (0.2), 5 (0.8), 3 (1.2), 6 (1.8), 2 (2.2); level 1: all three.
    assert candidates.shape == (1, 8)
    assert set(candidates[0, :5].tolist()) == {2, 3, 4, 5, 6}
    assert set(candidates[0, 5:].tolist()) == {10, 11, 12}


def test_mean_plus_unbiased_std_threshold():
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.5, 0.5]])
    # mean 0.3, unbiased std sqrt((0.04 + 0.01 + 0 + 0.09) / 3) = 0.216025
    expected = torch.tensor([[0.3 + 0.216025], [0.5]])
    torch.testing.assert_close(mean_plus_std_threshold(scores), expected)
    assert mean_plus_std_threshold(torch.tensor([[0.7]])).item() == pytest.approx(0.7)


def test_threshold_scene_by_hand():
    # One level of stride 10, points on the row y = 10, anchors 20x20 (scale 2).
    points = [(5.0, 10.0), (15.0, 10.0), (25.0, 10.0), (35.0, 10.0), (85.0, 10.0)]
    # GT [5, 0, 25, 20], centre (15, 10); k = 3 candidates: x = 15 (IoU 1), x = 5 and
    # x = 25 (each 200 / 600 = 1/3). Threshold 5/9 + sqrt(12/81) = 0.9405: only x = 15.
    inputs = scene([(10, points)], [[[5.0, 0.0, 25.0, 20.0]]])
    gt_index = ATSSMatcher(topk=3, anchor_scale=2.0)(inputs).gt_index[0]
    assert gt_index.tolist() == [BACKGROUND, 0, BACKGROUND, BACKGROUND, BACKGROUND]
    # GT [0, 0, 40, 20], k = 4: IoUs 1/3, 1/2, 1/2, 1/3; threshold 0.41667 + 0.09623 =
    # 0.5129 > 1/2, so ATSS leaves this GT without any positive.
    inputs = scene([(10, points)], [[[0.0, 0.0, 40.0, 20.0]]])
    assert (ATSSMatcher(topk=4, anchor_scale=2.0)(inputs).gt_index == BACKGROUND).all()


def test_candidate_outside_the_gt_is_never_positive():
    # Points at x = 4, 12, 20, 28, ...; 8x8 anchors. A slender vertical bar between
    # the columns x = 20 and x = 28 overlaps anchors of the x = 28 column but contains
    # no point: no positive. Widened to contain x = 28, that column becomes positive.
    level = grid(8, 64, 64)
    bar = [[26.0, 4.0, 27.5, 60.0]]
    assert (ATSSMatcher(anchor_scale=1.0)(scene([level], [bar])).gt_index == BACKGROUND).all()
    wider = scene([level], [[[26.0, 4.0, 29.5, 60.0]]])
    gt_index = ATSSMatcher(anchor_scale=1.0)(wider).gt_index[0]
    positives = wider.points[gt_index == 0]
    assert len(positives) > 0 and (positives[:, 0] == 28).all()


def test_conflicts_go_to_highest_iou_whatever_the_gt_order():
    level = grid(8, 64, 64)
    big, small = [4.0, 4.0, 60.0, 60.0], [14.0, 14.0, 46.0, 46.0]
    alone = [ATSSMatcher(anchor_scale=4.0)(scene([level], [[box]])).gt_index[0] >= 0
             for box in (big, small)]
    contested = alone[0] & alone[1]
    assert contested.any()
    forward = ATSSMatcher(anchor_scale=4.0)(scene([level], [[big, small]])).gt_index[0]
    backward = ATSSMatcher(anchor_scale=4.0)(scene([level], [[small, big]])).gt_index[0]
    assert torch.equal(forward[contested], 1 - backward[contested])
    anchors = anchor_boxes(scene([level], [[big]]).points, torch.full((64,), 8.0), 4.0)
    ious = paired_iou(anchors[:, None], torch.tensor([big, small]))  # (R, 2)
    assert torch.equal(forward[contested], ious[contested].argmax(dim=1))


def test_image_without_gt_is_background_next_to_an_annotated_one():
    level = grid(8, 64, 64)
    result = ATSSMatcher()(scene([level], [[], [[8.0, 8.0, 40.0, 40.0]]]))
    assert (result.gt_index[0] == BACKGROUND).all()
    assert (result.gt_index[1] == 0).any()
    assert not result.is_soft


def _reference_atss(points, strides, counts, boxes, k, scale):
    """Per-GT, per-point loops: the algorithm as the paper writes it."""
    best = torch.full((len(points),), -1.0)
    owner = torch.full((len(points),), BACKGROUND)
    anchors = anchor_boxes(points, strides, scale)
    for g, box in enumerate(boxes):
        centre = (box[:2] + box[2:]) / 2
        candidates, start = [], 0
        for count in counts:
            d = (points[start:start + count] - centre).norm(dim=1)
            candidates += (d.argsort()[:min(k, count)] + start).tolist()
            start += count
        ious = torch.stack([paired_iou(anchors[c], box) for c in candidates])
        threshold = ious.mean() + ious.std()
        for c, iou in zip(candidates, ious):
            x, y = points[c]
            inside = min(x - box[0], y - box[1], box[2] - x, box[3] - y) > 0.01
            if iou >= threshold and inside and iou > best[c]:
                best[c], owner[c] = iou, g
    return owner


@pytest.mark.parametrize("seed", range(4))
def test_equals_a_per_gt_reference_on_random_scenes(seed):
    generator = torch.Generator().manual_seed(seed)
    levels = [grid(s, 128, 96) for s in (8, 16, 32, 64)]
    boxes = random_boxes(12, 96, generator)
    inputs = scene(levels, [boxes.tolist()])
    expected = _reference_atss(inputs.points, inputs.strides, inputs.num_points_per_level,
                               inputs.gt_boxes[0], k=9, scale=8.0)
    assert (expected >= 0).any()
    assert torch.equal(ATSSMatcher()(inputs).gt_index[0], expected)
