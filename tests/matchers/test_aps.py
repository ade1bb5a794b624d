"""MMMC's aligned points sampler (docs/methods/aps.md): each stage against values computed by
hand, and invariants of the whole matcher on random scenes."""
import math
from dataclasses import replace

import pytest
import torch
from conftest import small_cfg
from helpers import crowded_scene, grid, scene

from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.methods.aps import APSMatcher, _spatial_score
from lada.matchers.stages.gmm import higher_component
from lada.matchers.stages.candidates import lowest_pairs_per_gt_and_level

INF = float("inf")


def test_candidates_with_fewer_points_than_k_on_a_level():
    # Levels of 4 and 2 points, k = 3: level 0 keeps its 3 lowest finite costs, level 1
    # has 2 slots of which one is eligible.
    # One GT paired with the 6 points in order, so a pair's index is its point's.
    cost = torch.tensor([5.0, INF, 1.0, 3.0, INF, 2.0])
    gt, point = torch.zeros(6, dtype=torch.long), torch.arange(6)
    index, valid = lowest_pairs_per_gt_and_level(gt, point, cost, 1, [4, 2], 3)
    assert valid.tolist() == [[True, True, True, True, False]]
    assert index[valid].tolist() == [2, 3, 0, 5]


def test_spatial_score_by_hand():
    cls, reg = [0.2, 1.0, 0.5], [0.4, 0.3, 0.9]
    soft_cls = [math.exp(-c) / sum(math.exp(-x) for x in cls) for c in cls]
    soft_reg = [math.exp(-r) / sum(math.exp(-x) for x in reg) for r in reg]
    expected = []
    for c, r, sc, sr in zip(cls, reg, soft_cls, soft_reg):
        fitness = sc + sr  # Eq. 7, lower loss -> larger share
        misalignment = 1 / (1 + math.exp(abs(c - r)))  # Eq. 8
        expected.append(math.sqrt(fitness * misalignment))  # Eq. 9
    # A fourth, invalid slot must not enter the softmax.
    score = _spatial_score(torch.tensor([cls + [0.0]]), torch.tensor([reg + [0.0]]),
                           torch.tensor([[True, True, True, False]]))
    torch.testing.assert_close(score[0, :3], torch.tensor(expected))
    assert score[0, 3].item() == 0.0


def test_gmm_split_of_a_bimodal_sample():
    values = torch.tensor([[0.10, 0.90, 0.12, 0.11, 0.92, 0.88, 0.09, 0.5],
                           [0.3, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0],
                           [0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True] * 7 + [False], [True] * 4 + [False] * 4, [True] + [False] * 7])
    positive = higher_component(values, valid)
    assert positive[0].tolist() == [False, True, False, False, True, True, False, False]
    assert positive[1].tolist() == [True] * 4 + [False] * 4  # all equal: one component
    assert positive[2].tolist() == [True] + [False] * 7  # a single candidate


def _three_level_scene(level_logits):
    """One 64 x 64 GT of class 0 covering three levels of points (strides 8, 16, 32);
    every predicted box equals the GT (regression loss 0), and the GT class's logit is
    ``level_logits[l]`` on level l (other classes -6), so the classification loss, hence
    the mean candidate loss, is constant per level."""
    levels = [grid(s, 64, 64) for s in (8, 16, 32)]
    inputs = scene(levels, [[[0.0, 0.0, 64.0, 64.0]]], num_classes=3)
    inputs.pred_boxes[:] = torch.tensor([0.0, 0.0, 64.0, 64.0])
    logits = torch.full((inputs.num_points, 3), -6.0)
    level = torch.repeat_interleave(torch.arange(3), torch.tensor(inputs.num_points_per_level))
    logits[:, 0] = torch.tensor(level_logits)[level]
    return replace(inputs, pred_logits=logits[None]), level


def test_scale_assignment_keeps_the_two_levels_of_lowest_mean_loss():
    inputs, level = _three_level_scene([0.0, 3.0, -3.0])  # loss: level 1 < level 0 < level 2
    positive = APSMatcher()(inputs).gt_index[0] == 0
    assert set(level[positive].tolist()) <= {0, 1}
    # Spatially, level 1's candidates (lower cls loss, S higher) form the upper component.
    assert level[positive].tolist() == [1] * 9
    one_level = APSMatcher(num_levels=1)(inputs).gt_index[0] == 0
    assert set(level[one_level].tolist()) == {1}


def test_a_gt_seen_by_one_level_only():
    # Level 0 has two points inside the GT, level 1 none: a single level is chosen.
    levels = [(8, [(20.0, 4.0), (28.0, 4.0), (60.0, 4.0)]), (16, [(8.0, 40.0), (40.0, 40.0)])]
    inputs = scene(levels, [[[18.0, 0.0, 30.0, 10.0]]])
    gt_index = APSMatcher()(inputs).gt_index[0]
    assert (gt_index[:2] == 0).any() and (gt_index[2:] == BACKGROUND).all()


def test_conflicts_go_to_the_gt_of_lowest_loss():
    # Two identical boxes of classes 0 and 1; the logits favour class 1 everywhere, so a
    # point positive for both (each GT is sampled independently) goes to GT 1.
    inputs, _ = _three_level_scene([0.0, 0.0, 0.0])
    inputs.pred_logits[..., 1] = 2.0
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    alone = []
    for cls in (0, 1):
        single = replace(inputs, gt_boxes=[box], gt_classes=[torch.tensor([cls])])
        alone.append(APSMatcher()(single).gt_index[0] == 0)
    inputs = replace(inputs, gt_boxes=[box.repeat(2, 1)], gt_classes=[torch.tensor([0, 1])])
    gt_index = APSMatcher()(inputs).gt_index[0]
    both = alone[0] & alone[1]
    assert both.any()
    assert (gt_index[both] == 1).all()
    assert (gt_index[alone[0] & ~alone[1]] == 0).all() and (gt_index[alone[1] & ~alone[0]] == 1).all()
    assert torch.equal(gt_index >= 0, alone[0] | alone[1])


def test_no_gt_without_a_positive_and_positives_inside():
    # Disjoint GTs, each containing points: every one gets a positive.
    boxes = [[8.0 + 40 * i, 8.0 + 40 * j, 40.0 + 40 * i, 36.0 + 40 * j] for i in range(6) for j in range(6)]
    inputs = replace(crowded_scene(1, num_images=1, num_small=0, num_large=0),
                     gt_boxes=[torch.tensor(boxes)], gt_classes=[torch.arange(36) % 5])
    gt_index = APSMatcher()(inputs).gt_index[0]
    assert set(gt_index[gt_index >= 0].tolist()) == set(range(36))
    own = inputs.gt_boxes[0][gt_index[gt_index >= 0]]
    points = inputs.points[gt_index >= 0]
    assert ((points > own[:, :2]) & (points < own[:, 2:])).all()


@pytest.mark.parametrize("kwargs", [{}, {"scale": False}, {"spatial": False},
                                    {"scale_criterion": "cls"}, {"scale_criterion": "reg"}])
def test_batched_equals_per_image(kwargs):
    inputs = crowded_scene(2)
    batched = APSMatcher(**kwargs)(inputs).gt_index
    for image in range(inputs.num_images):
        single = replace(
            crowded_scene(2),
            gt_boxes=[inputs.gt_boxes[image]],
            gt_classes=[inputs.gt_classes[image]],
            pred_logits=inputs.pred_logits[image : image + 1],
            pred_boxes=inputs.pred_boxes[image : image + 1],
        )
        assert torch.equal(APSMatcher(**kwargs)(single).gt_index[0], batched[image])
    assert (batched >= 0).sum() > 0


def test_procedures_off_follow_fcos():
    inputs, level = _three_level_scene([0.0, 3.0, -3.0])
    # Spatial off: every point of the chosen levels inside the GT and within 1.5 strides
    # of its centre (32, 32): on level 0 the 4 points at 28 and 36, on level 1 the 4 at
    # 24 and 40 (distance 8 < 24).
    gt_index = APSMatcher(spatial=False)(inputs).gt_index[0]
    assert torch.bincount(level[gt_index == 0], minlength=3).tolist() == [4, 4, 0]
    # Scale off: only points whose largest side distance fits their level's FCOS range
    # (level 0: < 64, level 1: (64, 128), last level: > 128) are candidates.
    gt_index = APSMatcher(scale=False)(inputs).gt_index[0]
    assert set(level[gt_index == 0].tolist()) == {0}


@pytest.mark.parametrize("key, value, message", [
    ("TOPK", 0, "TOPK must be a positive integer"),
    ("SCALE_CRITERION", "iou", "SCALE_CRITERION must be one of"),
    ("SPATIAL", False, "SCALE and SPATIAL are both off"),
])
def test_invalid_hyperparameters(key, value, message):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "aps", f"MODEL.MATCHER.APS.{key}": value})
    if key == "SPATIAL":
        cfg.MODEL.MATCHER.APS.SCALE = False
    with pytest.raises(ValueError, match=message):
        build_matcher(cfg)
