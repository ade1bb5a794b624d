"""PAA (spec section 5): policies on hand-built scenes and the whole matcher against a
per-GT scikit-learn separation of the same candidates."""
import numpy as np
import pytest
import torch
from benchmarks.gmm_speed import reference_positives
from helpers import grid, scene

from lada.matchers import BACKGROUND
from lada.matchers.candidates import match_and_score_points, per_level_candidates
from lada.matchers.paa import PAAMatcher


def _with_predictions(levels, boxes_per_image, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs = scene(levels, boxes_per_image, num_classes=5)
    inputs.pred_logits = torch.randn(inputs.pred_logits.shape, generator=generator)
    jitter = torch.rand(inputs.pred_boxes.shape, generator=generator) * 16 - 8
    inputs.pred_boxes = torch.cat([inputs.points - 12, inputs.points + 12], dim=1) + jitter
    return inputs


def test_a_gt_with_a_single_candidate_gets_it():
    # 10x10 anchors (scale 1); the 6x6 GT overlaps only the anchor at (45, 5): IoU 0.36.
    levels = [(10, [(5.0, 5.0), (45.0, 5.0), (85.0, 5.0)])]
    inputs = _with_predictions(levels, [[[42.0, 2.0, 48.0, 8.0]]], seed=0)
    gt_index = PAAMatcher(anchor_scale=1.0)(inputs).gt_index[0]
    assert gt_index.tolist() == [BACKGROUND, 0, BACKGROUND]


@pytest.mark.parametrize("seed", range(3))
def test_matcher_equals_a_per_gt_scikit_learn_separation(seed):
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    rng = np.random.default_rng(seed)
    images = []
    for count in (7, 0, 4):
        xy = rng.uniform(0, 90, (count, 2))
        images.append(np.concatenate([xy, xy + rng.uniform(12, 60, (count, 2))], 1).tolist())
    inputs = _with_predictions(levels, images, seed)
    matcher = PAAMatcher()
    result = matcher(inputs).gt_index
    for image, boxes in enumerate(images):
        expected = torch.full((inputs.num_points,), BACKGROUND)
        if boxes:
            points = match_and_score_points(inputs, image, 8.0, 0.1)
            point_gt, score = points.dense(points.cls + points.reg, torch.ones_like(points.index).bool())
            index, valid, scores = per_level_candidates(inputs, image, point_gt, score, 9)
            for gt in range(len(boxes)):
                chosen = reference_positives(scores[gt][valid[gt]].double().numpy())
                expected[index[gt][valid[gt]][torch.from_numpy(chosen)]] = gt
        assert torch.equal(result[image], expected)
    assert (result >= 0).sum() > 0


def test_positives_are_preliminary_matches_of_their_gt():
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    boxes = [[10.0, 10.0, 60.0, 40.0], [50.0, 30.0, 120.0, 110.0], [5.0, 70.0, 20.0, 120.0]]
    inputs = _with_predictions(levels, [boxes], seed=4)
    gt_index = PAAMatcher()(inputs).gt_index[0]
    prelim = match_and_score_points(inputs, 0, 8.0, 0.1).point_gt
    positive = gt_index >= 0
    assert torch.equal(gt_index[positive], prelim[positive])
    assert set(gt_index[positive].tolist()) == {0, 1, 2}
