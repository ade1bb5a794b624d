"""The stages shared by the dynamic-k and top-m methods (tal, dsl, ota, simota) against
plain loops and direct (pairs, C) evaluations: ``stages/overlaps.py`` (the pairs with
u > 0, exact; the box reach), ``stages/dynamic_k.py``, ``stages/ranking.py`` (the first k
per group, ties to the lower point) and ``stages/class_costs.py`` (class-summed costs
without a (pairs, C) tensor)."""
import math
from dataclasses import replace

import pytest
import torch
from helpers import crowded_scene
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from lada.matchers.stages.batch import BatchGTs
from lada.matchers.stages.class_costs import ClassSummedCost, focal_term, soft_label_term
from lada.matchers.stages.dynamic_k import dynamic_k
from lada.matchers.stages.geometry import rows_at
from lada.matchers.stages.overlaps import box_reach, pairs_with_overlap
from lada.matchers.stages.ranking import _within_subset_bound, first_k_per_group
from lada.matchers.stages.soft import min_per_point_class


def _overlapping_pairs_by_brute_force(inputs, among=None):
    """{(batch gt, flat key)} of every pair with a positive-area overlap, one GT at a time
    against every point of its image."""
    pairs, first = set(), 0
    for image, boxes in enumerate(inputs.gt_boxes):
        pred = inputs.pred_boxes[image].double()
        for g, box in enumerate(boxes.double()):
            width = torch.minimum(pred[:, 2], box[2]) - torch.maximum(pred[:, 0], box[0])
            height = torch.minimum(pred[:, 3], box[3]) - torch.maximum(pred[:, 1], box[1])
            overlap = (width > 0) & (height > 0) & torch.isfinite(pred).all(dim=1)
            for point in overlap.nonzero()[:, 0].tolist():
                key = image * inputs.num_points + point
                if among is None or among[key]:
                    pairs.add((first + g, key))
        first += len(boxes)
    return pairs


@pytest.mark.parametrize("max_pairs", [None, 64])
def test_pairs_with_overlap_are_exact(max_pairs):
    inputs = crowded_scene(3, num_images=3)
    pred = inputs.pred_boxes.clone()
    pred[0, 5] = torch.tensor([-500.0, -500.0, 900.0, 900.0])  # one huge box
    pred[1, 100] = float("nan")
    pred[2, 7, 2] = float("inf")
    inputs = replace(inputs, pred_boxes=pred)
    gts = BatchGTs.of(inputs)
    draw = torch.rand(inputs.num_images * inputs.num_points, generator=torch.Generator()
                      .manual_seed(0))
    for subset in (None, draw < 0.3, draw < 0.95):  # a sparse subset searched alone, a dense
        # one (above overlaps.DENSE_SUBSET) filtered from the full search
        parts = list(pairs_with_overlap(inputs, gts, among=subset, max_pairs=max_pairs))
        found = [(g, k) for part in parts for g, k in zip(part.gt.tolist(), part.key.tolist())]
        assert len(found) == len(set(found))  # each pair once
        assert set(found) == _overlapping_pairs_by_brute_force(inputs, subset)
        gt = torch.cat([part.gt for part in parts])
        assert all(len(set(part.gt.tolist()) & set(other.gt.tolist())) == 0
                   for i, part in enumerate(parts) for other in parts[i + 1:])  # whole GTs
        iou = torch.cat([part.iou for part in parts])
        assert (iou > 0).all() and (iou <= 1).all() and len(gt) == len(iou)
    if max_pairs:
        assert len(parts) > 1


def test_first_duplicates_by_hand():
    # image 0: A, its duplicate, A of another class, A again; image 1: A, its duplicate
    a = [1.0, 2.0, 3.0, 4.0]
    gts = BatchGTs(boxes=torch.tensor([a, a, a, a, a, a]), classes=torch.tensor([0, 0, 1, 0, 0, 0]),
                   image=torch.tensor([0, 0, 0, 0, 1, 1]), first=torch.tensor([0, 4]),
                   num_points=1)
    assert gts.first_duplicates().tolist() == [0, 0, 2, 0, 4, 4]
    unique = BatchGTs(boxes=torch.tensor([a, [1.0, 2.0, 3.0, 4.5]]), classes=torch.tensor([0, 0]),
                      image=torch.tensor([0, 0]), first=torch.tensor([0]), num_points=1)
    assert unique.first_duplicates().tolist() == [0, 1]


def test_box_reach():
    points = torch.tensor([[10.0, 10.0], [0.0, 0.0]])
    boxes = torch.tensor([[[4.0, 9.0, 12.0, 30.0], [float("nan"), 0.0, 1.0, 1.0]]])
    reach = box_reach(points, boxes)
    assert reach[0, 0].item() == 20.0 and not torch.isfinite(reach[0, 1])


def _loop_k(gt, iou, num_gts, q):
    """max(1, floor(sum of the q largest)) per group, in plain Python, largest first;
    non-finite values count as 0."""
    ks = []
    for g in range(num_gts):
        values = sorted((v if math.isfinite(v) else 0.0 for v, h in zip(iou.tolist(), gt.tolist())
                         if h == g), reverse=True)
        total = 0.0
        for value in values[:q]:
            total += value
        ks.append(max(1, math.floor(total)))
    return ks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("q", [1, 10, 13, 20])
def test_dynamic_k_equals_a_loop(dtype, q):
    generator = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 40, (3000,), generator=generator)
    iou = (torch.rand(3000, generator=generator, dtype=torch.float64) ** 2).to(dtype)
    iou[:300] = 0.25  # equal values
    iou[300:310] = float("nan")
    iou[310:320] = float("inf")
    gt = torch.cat([gt, torch.full((5,), 41)])  # group 40 has no pair; 41 has five
    iou = torch.cat([iou, torch.full((5,), 0.3, dtype=dtype)])
    ks = dynamic_k(gt, iou, 42, q)
    assert ks.tolist() == _loop_k(gt, iou, 42, q)
    assert ks[40] == 1 and ks[41] == 1  # no pair: 1; 5 x 0.3 = 1.5: 1
    perm = torch.randperm(len(gt), generator=generator)
    assert torch.equal(dynamic_k(gt[perm], iou[perm], 42, q), ks)  # the pairs' order


def test_dynamic_k_of_a_part_of_the_gts():
    # a caller's part holds GTs 10-19 of 42: those as a loop computes them, the others 1
    generator = torch.Generator().manual_seed(4)
    gt = torch.randint(10, 20, (500,), generator=generator)
    iou = torch.rand(500, generator=generator, dtype=torch.float64)
    expected = _loop_k(gt, iou, 42, 13)
    assert dynamic_k(gt, iou, 42, 13).tolist() == expected
    assert all(k == 1 for g, k in enumerate(expected) if not 10 <= g < 20)
    assert all(k > 1 for k in expected[10:20])


def test_dynamic_k_of_a_small_case():
    gt = torch.tensor([0, 0, 0, 1, 1])
    iou = torch.tensor([0.9, float("nan"), 0.8, float("inf"), 0.7])
    assert dynamic_k(gt, iou, 2, 10).tolist() == [1, 1]
    top_three = torch.tensor([0.9, 0.8, 0.7, 0.6])  # 2.4 -> 2
    assert dynamic_k(torch.tensor([0] * 4), top_three, 1, 3).tolist() == [2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_first_k_per_group_ranks_by_score_then_point(dtype):
    generator = torch.Generator().manual_seed(2)
    for trial in range(8):
        num = int(torch.randint(1, 2000, (), generator=generator))
        group = torch.randint(0, 7, (num,), generator=generator)
        if trial % 4 >= 2:  # each group's pairs together, as the matchers find them
            group = group.sort().values
        point = torch.randperm(10000, generator=generator)[:num]
        score = torch.randint(0, 20, (num,), generator=generator).double()
        if trial % 2:
            # float64 scores that float32 cannot tell apart
            score = score * (1 + 1e-12 * torch.randint(0, 3, (num,), generator=generator).double())
        score[torch.rand(num, generator=generator) < 0.05] = float("nan")
        score[torch.rand(num, generator=generator) < 0.05] = float("inf")
        score[torch.rand(num, generator=generator) < 0.02] = float("-inf")
        score = score.to(dtype)
        k = torch.randint(0, 20, (7,), generator=generator)
        exact = score.double().nan_to_num(nan=float("inf"))
        values, points, groups = exact.tolist(), point.tolist(), group.tolist()
        expected = []
        for g in range(7):
            members = sorted((i for i in range(num) if groups[i] == g),
                             key=lambda i: (values[i], points[i]))
            expected += members[: k[g]]
        assert first_k_per_group(group, score, point, k).tolist() == expected
        # without a point index, equal scores may come in any order: the same scores
        chosen = first_k_per_group(group, score, None, k)
        assert [(groups[i], values[i]) for i in chosen.tolist()] == [
            (groups[i], values[i]) for i in expected]


def test_subset_bound_keeps_the_first_k_and_few_more():
    # 50 groups of 200 consecutive pairs, random scores: the bound keeps each group's 13
    # lowest (a superset) and, dealing 32 subsets of about 6 pairs, under 2 k in all
    generator = torch.Generator().manual_seed(3)
    group = torch.arange(50).repeat_interleave(200)
    score = torch.rand(len(group), generator=generator, dtype=torch.float64)
    k = torch.full((50,), 13)
    kept = _within_subset_bound(group, score, k)
    lowest = score.view(50, 200).argsort(dim=1)[:, :13] + 200 * torch.arange(50)[:, None]
    assert set(lowest.reshape(-1).tolist()) <= set(kept.tolist())
    assert len(kept) < 2 * 13 * 50
    one_subset = torch.zeros(0, dtype=torch.long)  # k = 0: any superset of nothing
    assert len(_within_subset_bound(one_subset, one_subset.double(), torch.zeros(3, dtype=torch.long))) == 0


def test_first_k_per_group_of_a_part_of_the_groups():
    # pairs of groups 3-5 of 10, one k per group: each group's first k by (score, point)
    group = torch.tensor([5, 3, 3, 4, 5, 3, 5, 4])
    score = torch.tensor([0.5, 0.2, 0.1, 0.9, 0.5, 0.3, 0.1, 0.8], dtype=torch.float64)
    point = torch.tensor([7, 1, 2, 3, 4, 5, 6, 0])
    k = torch.tensor([9, 9, 9, 2, 1, 2, 9, 9, 9, 9])
    # group 3: 0.1 (2), 0.2 (1); group 4: 0.8 (7); group 5: 0.1 (6), then 0.5 at point 4
    assert first_k_per_group(group, score, point, k).tolist() == [2, 1, 7, 6, 4]


def _direct(logits, keys, classes, target, term):
    """sum_c of the per-class loss of each pair, (pairs, C) in float64."""
    y = F.one_hot(classes, logits.shape[1]).double() * target[:, None]
    z = logits[keys].double()
    if term == "focal":
        return sigmoid_focal_loss(z, y, 0.25, 2.0).sum(1)
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return (bce * (y - z.sigmoid()) ** 2).sum(1)


@pytest.mark.parametrize("term, rtol, atol", [("focal", 1e-6, 1e-6), ("soft_label", 3e-7, 1e-9)])
def test_class_summed_costs_equal_the_direct_sum(term, rtol, atol):
    # the terms in float32, summed in float64: a few float32 steps of the terms
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(2, 25, 7, generator=generator)
    flat = logits.reshape(50, 7)
    keys = torch.randint(0, 50, (200,), generator=generator)  # points repeat
    classes = torch.randint(0, 7, (200,), generator=generator)
    soft = torch.rand(200, generator=generator, dtype=torch.float64)
    one_hot = torch.ones(200, dtype=torch.float64)
    costs = ClassSummedCost(logits, focal_term() if term == "focal" else soft_label_term)
    half = keys[:100]  # two calls: the second reuses the first's sums
    for target in (one_hot, soft):
        cost = torch.cat([costs(half, classes[:100], target[:100]),
                          costs(keys[100:], classes[100:], target[100:])])
        torch.testing.assert_close(cost, _direct(flat, keys, classes, target, term),
                                   rtol=rtol, atol=atol)
    torch.testing.assert_close(costs(keys, classes), _direct(flat, keys, classes, one_hot, term),
                               rtol=rtol, atol=atol)  # the default target: one-hot
    all_zero = _direct(flat, torch.arange(50), torch.zeros(50, dtype=torch.long),
                       torch.zeros(50, dtype=torch.float64), term)
    torch.testing.assert_close(costs.negative_sums(), all_zero, rtol=rtol, atol=atol)


def test_rows_at_gathers_as_advanced_indexing():
    table = torch.arange(24.0).view(6, 4)
    index = torch.tensor([[5, 0, 2], [1, 1, 4]])
    assert torch.equal(rows_at(table, index), table[index])  # (2, 3, 4)
    assert torch.equal(rows_at(table[:, 0], index), table[:, 0][index])  # a 1-D table
    empty = torch.zeros((0, 3), dtype=torch.long)
    assert rows_at(table, empty).shape == (0, 3, 4)


@pytest.mark.parametrize("unwritten", [1.0, 0.75])
def test_min_per_point_class_by_hand(unwritten):
    # 3 points x 2 classes. Slot (0, 1): 0.4 and 0.9 -> 0.4; slot (2, 0): 0.95 alone
    # (above 0.75: a table started at 0.75 must not keep 0.75); slot (1, 1): 0.2 and NaN
    # -> NaN -> unwritten, outside the sum; slot (2, 1): 1.0 twice, counted once.
    values = torch.tensor([0.4, 0.9, 0.95, 0.2, float("nan"), 1.0, 1.0])
    point = torch.tensor([0, 0, 2, 1, 1, 2, 2])
    cls = torch.tensor([1, 1, 0, 1, 1, 1, 1])
    slots, total = min_per_point_class(values, point, cls, 3, 2, unwritten)
    w = unwritten
    torch.testing.assert_close(slots, torch.tensor([[w, 0.4], [w, w], [0.95, 1.0]]), rtol=0, atol=0)
    assert total.item() == pytest.approx((1 - 0.4) + (1 - 0.95) + (1 - 1.0))
