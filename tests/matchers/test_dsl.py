"""DSL (docs/methods/dsl.md) against an independent per-GT reference written from
RTMDet's rules (mmdetection's dynamic_soft_label_assigner.py: dense costs over the
points inside some GT, dynamic k, lowest-cost selection, conflicts to the cheapest GT of
all), in float64 with plain loops over GT boxes, on seeded crowded scenes with
duplicate, tiny, out-of-image and same-class overlapping boxes; and the hand cases."""
import functools
import math
from dataclasses import replace

import pytest
import torch
from helpers import hard_scene, scene
from torch.nn import functional as F

from lada.matchers import BACKGROUND
from lada.matchers.methods.dsl import DSLMatcher
from lada.matchers.stages.batch import BatchGTs
from lada.matchers.stages.class_costs import ClassSummedCost, soft_label_term

MARGIN = 1e-6  # relative margin of a cost, IoU sum or conflict: below it a near-tie


def _iou(pred, box):
    """IoU of boxes (R, 4) with one box (4,), float64; an inverted box is empty."""
    width = (torch.minimum(pred[:, 2], box[2]) - torch.maximum(pred[:, 0], box[0])).clamp(min=0)
    height = (torch.minimum(pred[:, 3], box[3]) - torch.maximum(pred[:, 1], box[1])).clamp(min=0)
    inter = width * height
    area = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    union = area + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(union))


def _near(a, b):
    return a != b and abs(a - b) / max(abs(a), abs(b), 1.0) < MARGIN


def reference_dsl(inputs, image, topk=13, radius=3.0, iou_weight=3.0):
    """RTMDet's assignment of one image, dense over V, one GT at a time: (gt_index list,
    quality list, near-ties, contested points)."""
    points, strides = inputs.points.double(), inputs.strides.double()
    boxes = inputs.gt_boxes[image].double()
    classes = inputs.gt_classes[image].tolist()
    logits = inputs.pred_logits[image].double()
    pred = inputs.pred_boxes[image].double()
    num_points = len(points)
    inside_some = torch.zeros(num_points, dtype=torch.bool)
    for box in boxes:
        inside_some |= ((points - box[:2]).amin(dim=1) > 0) & ((box[2:] - points).amin(dim=1) > 0)
    valid = inside_some.nonzero()[:, 0].tolist()
    gt_index, quality = [BACKGROUND] * num_points, [0.0] * num_points
    if not valid:
        return gt_index, quality, 0, 0
    cost, iou, near = [], [], 0
    selected = {}
    for g, box in enumerate(boxes):
        u = _iou(pred[valid], box)
        centre = (box[:2] + box[2:]) / 2
        d = (points[valid] - centre).norm(dim=1) / strides[valid]
        target = torch.zeros_like(logits[valid])
        target[:, classes[g]] = u
        cls = (F.binary_cross_entropy_with_logits(logits[valid], target, reduction="none")
               * (target - logits[valid].sigmoid()) ** 2).sum(dim=1)
        c = (cls - iou_weight * torch.log(u + 1e-7) + 10 ** (d - radius)).tolist()
        cost.append(c)
        iou.append(u.tolist())
        largest = sorted(u.tolist(), reverse=True)[:topk]
        total = 0.0
        for value in largest:
            total += value
        near += total >= 1 and _near(total, float(round(total)))
        k = max(1, math.floor(total))
        order = sorted(range(len(valid)), key=lambda i: (c[i], i))
        for i in order[:k]:
            selected.setdefault(i, []).append(g)
        if k < len(valid):
            near += _near(c[order[k - 1]], c[order[k]])
    for i, gts in selected.items():
        if len(gts) == 1:
            g = gts[0]
        else:
            ranked = sorted(range(len(boxes)), key=lambda h: (cost[h][i], h))
            g = ranked[0]
            near += _near(cost[ranked[0]][i], cost[ranked[1]][i])
        gt_index[valid[i]] = g
        quality[valid[i]] = iou[g][i]
    return gt_index, quality, near, sum(len(gts) > 1 for gts in selected.values())


@functools.lru_cache(maxsize=None)
def _reference_of_hard_scene(seed, image):
    return reference_dsl(hard_scene(seed), image)


@pytest.mark.parametrize("seed", range(3))
def test_equals_the_per_gt_reference_on_hard_scenes(seed):
    inputs = hard_scene(seed)
    result = DSLMatcher()(inputs)
    for image in range(inputs.num_images):
        gt_index, quality, near, contested = _reference_of_hard_scene(seed, image)
        assert near == 0  # no decision within the margins: every one is compared
        assert contested > 0 and sum(g >= 0 for g in gt_index) > 30
        assert result.gt_index[image].tolist() == gt_index
        torch.testing.assert_close(result.quality[image].double(),
                                   torch.tensor(quality, dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("changed", [{"topk": 12}, {"soft_center_radius": 2.5},
                                     {"iou_weight": 2.0}])
def test_the_hard_scene_tells_a_changed_rule(changed):
    inputs = hard_scene(0)
    assert DSLMatcher(**changed)(inputs).gt_index[0].tolist() != _reference_of_hard_scene(0, 0)[0]


def test_one_pair_by_hand():
    # All logits 0, u = 0.5, d = 1 stride: prior 10^-2 = 0.01, IoU cost 3 ln(1 / (0.5 +
    # 1e-7)), class cost (C - 1) * 0.25 ln 2 (the GT's class: |0.5 - 0.5|^2 = 0).
    num_classes = 4
    inputs = scene([(8, [(12.0, 4.0)])], [[[-12.0, -12.0, 20.0, 20.0]]], num_classes=num_classes)
    inputs = replace(inputs, pred_boxes=torch.tensor([[[-12.0, -12.0, 20.0, 4.0]]]))
    expected = 0.01 + 3 * math.log(1 / (0.5 + 1e-7)) + (num_classes - 1) * 0.25 * math.log(2)
    matcher = DSLMatcher()
    gts = BatchGTs.of(inputs)
    key = matcher.pair_costs(inputs, gts, torch.tensor([0]), torch.tensor([0]),
                             ClassSummedCost(inputs.pred_logits, soft_label_term))
    assert math.exp(key.item()) - 1 - 3e-7 == pytest.approx(expected, rel=1e-9)


def _row_scene(boxes, pred, num_classes=2):
    """Points of a 64 x 64 image at stride 8, zero logits, the given predicted boxes (a
    dict point -> box, the others a 1-px box far away: IoU 0 with every GT)."""
    level = (8, [(4.0 + 8 * i, 4.0 + 8 * j) for j in range(8) for i in range(8)])
    inputs = scene([level], [boxes], num_classes=num_classes)
    boxes = torch.tensor([[200.0, 200.0, 201.0, 201.0]]).repeat(64, 1)
    for point, box in pred.items():
        boxes[point] = torch.tensor(box)
    return replace(inputs, pred_boxes=boxes[None])


def _point(x, y):
    return (y - 4) // 8 * 8 + (x - 4) // 8


def test_small_gt_takes_the_nearest_point_of_a_large_box_never_one_outside_every_gt():
    # L = [0, 0, 32, 32] holds the points x, y in {4, ..., 28}; S is a 3 x 3 box at
    # (35.5, 14.5) holding none. The point nearest S's centre, (36, 12), lies outside
    # every GT; S takes L's point nearest its centre, (28, 12), which L (k = 1, its own
    # nearest point (12, 12)) does not select.
    inputs = _row_scene([[0.0, 0.0, 32.0, 32.0], [34.0, 13.0, 37.0, 16.0]], {})
    gt_index = DSLMatcher()(inputs).gt_index[0]
    assert gt_index[_point(28, 12)] == 1 and gt_index[_point(36, 12)] == BACKGROUND
    assert (gt_index == 1).sum() == 1 and gt_index[_point(12, 12)] == 0
    assert (gt_index >= 0).sum() == 2


def test_a_contested_point_goes_to_the_cheapest_gt_even_one_that_did_not_select_it():
    # A and B are small boxes holding no point; their only overlapping prediction is
    # p = (4, 12)'s box [0, 0, 20, 8] (IoU 0.048 and 0.073), so each selects p. C = [0, 0,
    # 40, 16] selects q = (36, 4) (its box [8, 0, 40, 16]: IoU 0.8; k_C = floor(0.8 +
    # 0.25) = 1), yet C is the cheapest GT at p (IoU 0.25): p goes to C.
    a, b, c = [1.0, 6.0, 5.0, 10.0], [0.5, 5.0, 4.5, 9.0], [0.0, 0.0, 40.0, 16.0]
    p, q = _point(4, 12), _point(36, 4)
    inputs = _row_scene([a, b, c], {p: [0.0, 0.0, 20.0, 8.0], q: [8.0, 0.0, 40.0, 16.0]})
    result = DSLMatcher()(inputs)
    gt_index = result.gt_index[0]
    assert gt_index[p] == 2 and gt_index[q] == 2 and (gt_index >= 0).sum() == 2
    assert result.quality[0, p].item() == pytest.approx(0.25)
    assert result.quality[0, q].item() == pytest.approx(0.8)
    _, _, _, contested = reference_dsl(inputs, 0)
    assert contested == 1


@pytest.mark.parametrize("boxes, pred, point, first", [
    # two duplicates of a small box overlapping only p's prediction (p inside the large
    # box below them, which it misses): decided among the GTs p's predicted box overlaps
    ([[1.0, 6.0, 5.0, 10.0]] * 2 + [[0.0, 8.0, 64.0, 64.0]],
     {_point(4, 12): [0.0, 0.0, 20.0, 8.0]}, _point(4, 12), 0),
    # two duplicates of S next to L, every prediction far away: S's nearest point of L,
    # decided among the GTs whose centre lies within the locality bound
    ([[0.0, 0.0, 32.0, 32.0]] + [[34.0, 13.0, 37.0, 16.0]] * 2, {}, _point(28, 12), 1),
])
def test_duplicates_contest_a_point_for_the_lower_index_whatever_the_rounding(
        monkeypatch, boxes, pred, point, first):
    # duplicates cost the same at every point, but the same cost computed at another
    # position of a tensor may round differently: here the later duplicate's costs are
    # made 1e-12 lower, and the point still goes to the first one
    original = DSLMatcher.pair_costs

    def rounded(self, inputs, gts, gt, key, costs, distance=None):
        rank = original(self, inputs, gts, gt, key, costs, distance)
        return torch.where(gt == first + 1, rank - 1e-12, rank)

    inputs = _row_scene(boxes, pred)
    monkeypatch.setattr(DSLMatcher, "pair_costs", rounded)
    gt_index = DSLMatcher()(inputs).gt_index[0]
    assert gt_index[point] == first and not (gt_index == first + 1).any()


@pytest.mark.parametrize("held_iou, holder_takes_it", [(0.9, False), (1.0, True)])
def test_an_isolated_gt_selects_the_nearest_valid_point_sixty_strides_away(held_iou,
                                                                           holder_takes_it):
    # A row of 76 points (stride 8); H = [0, 0, 16, 8] holds x = 4 and 12; I, a 2 x 2 box
    # at x = 502, holds none: its nearest valid point, x = 12, is 61 strides away (prior
    # 10^58). H's predictions have IoU held_iou: k_H = floor(2 * held_iou), 1 or 2. With
    # k_H = 1, H keeps x = 4 (equal costs: the lower point) and x = 12 goes to I; with
    # k_H = 2, H selects x = 12 too and, cheaper there, keeps it.
    level = (8, [(4.0 + 8 * i, 4.0) for i in range(76)])
    holder, isolated = [0.0, 0.0, 16.0, 8.0], [501.0, 3.0, 503.0, 5.0]
    inputs = scene([level], [[holder, isolated]], num_classes=2)
    pred = torch.tensor([[900.0, 900.0, 901.0, 901.0]]).repeat(76, 1)
    pred[0] = pred[1] = torch.tensor([0.0, 0.0, 16.0, 8.0 * held_iou])
    result = DSLMatcher()(replace(inputs, pred_boxes=pred[None]))
    gt_index, quality = result.gt_index[0], result.quality[0]
    assert torch.isfinite(quality).all()
    assert gt_index[0] == 0 and gt_index[1] == (0 if holder_takes_it else 1)
    assert (gt_index >= 0).sum() == 2
    assert quality[1].item() == pytest.approx(held_iou if holder_takes_it else 0.0)


def test_an_image_whose_gts_hold_no_point_is_background():
    inputs = _row_scene([[13.0, 13.0, 16.0, 16.0]], {})  # between the grid points
    result = DSLMatcher()(inputs)
    assert (result.gt_index == BACKGROUND).all() and (result.quality == 0).all()


def test_inside_means_every_side_distance_above_zero():
    # (4, 4) lies 0.005 px inside the box: valid for DSL (> 0), unlike TAL's > 0.01.
    inputs = _row_scene([[3.995, 3.995, 11.0, 11.0]], {})
    assert DSLMatcher()(inputs).gt_index[0].tolist() == [0] + [BACKGROUND] * 63
