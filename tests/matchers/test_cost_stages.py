"""The stages shared by ota and simota, against plain per-group loops and direct (pairs, C)
evaluations: dynamic k (stages/dynamic_k.py), class-summed costs (stages/class_costs.py),
box reach (stages/overlaps.py)."""
import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from lada.matchers.stages.class_costs import class_summed_pair_costs, focal_term, negative_class_sums
from lada.matchers.stages.dynamic_k import dynamic_k, top_values_per_group
from lada.matchers.stages.overlaps import box_reach


def _loop_k(gt, iou, num_gts, q):
    """max(1, floor(sum of the q largest)) per group, in plain Python."""
    ks = []
    for g in range(num_gts):
        values = sorted((v for v, h in zip(iou.tolist(), gt.tolist()) if h == g), reverse=True)
        total = 0.0
        for value in values[:q]:
            total += value
        ks.append(max(1, math.floor(total)))
    return ks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dynamic_k_equals_a_loop(dtype):
    generator = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 40, (3000,), generator=generator)
    iou = (torch.rand(3000, generator=generator, dtype=torch.float64) ** 2).to(dtype)
    gt = torch.cat([gt, torch.full((5,), 41)])  # group 40 has no pair; 41 has five
    iou = torch.cat([iou, torch.full((5,), 0.3, dtype=dtype)])
    assert dynamic_k(gt, iou, 42, 20).tolist() == _loop_k(gt, iou, 42, 20)
    ks = dynamic_k(gt, iou, 42, 20)
    assert ks[40] == 1 and ks[41] == 1  # no pair: 1; 5 x 0.3 = 1.5: 1


def test_dynamic_k_ignores_non_finite_values_and_order():
    gt = torch.tensor([0, 0, 0, 1, 1])
    iou = torch.tensor([0.9, float("nan"), 0.8, float("inf"), 0.7])
    assert dynamic_k(gt, iou, 2, 10).tolist() == [1, 1]
    perm = torch.tensor([4, 2, 0, 3, 1])
    assert dynamic_k(gt[perm], iou[perm], 2, 10).tolist() == [1, 1]
    assert dynamic_k(torch.tensor([0] * 4), torch.tensor([0.9, 0.8, 0.7, 0.6]), 1, 3).tolist() == [2]


def test_top_values_per_group_in_descending_order():
    group = torch.tensor([1, 0, 1, 1, 0])
    values = torch.tensor([0.25, 0.5, 0.875, 0.375, 0.125])  # exact in float32
    expected = [[0.5, 0.125], [0.875, 0.375], [0.0, 0.0]]
    assert top_values_per_group(group, values, 3, 2).tolist() == expected  # one int64 sort
    assert top_values_per_group(group, values.double(), 3, 2).tolist() == expected  # two sorts


def test_class_summed_costs_equal_the_direct_sum():
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(50, 7, generator=generator)
    keys = torch.randint(0, 50, (200,), generator=generator)  # points repeat
    classes = torch.randint(0, 7, (200,), generator=generator)
    term = focal_term()
    cost = class_summed_pair_costs(logits, keys, classes, negative_class_sums(logits, term), term)
    target = torch.nn.functional.one_hot(classes, 7).double()
    direct = sigmoid_focal_loss(logits[keys].double(), target, 0.25, 2.0).sum(1)
    torch.testing.assert_close(cost, direct, rtol=1e-6, atol=1e-6)
    soft = torch.rand(200, generator=generator, dtype=torch.float64)
    cost = class_summed_pair_costs(logits, keys, classes, negative_class_sums(logits, term), term,
                                   own_target=soft)
    direct = sigmoid_focal_loss(logits[keys].double(), target * soft[:, None], 0.25, 2.0).sum(1)
    torch.testing.assert_close(cost, direct, rtol=1e-6, atol=1e-6)


def test_box_reach():
    points = torch.tensor([[10.0, 10.0], [0.0, 0.0]])
    boxes = torch.tensor([[[4.0, 9.0, 12.0, 30.0], [float("nan"), 0.0, 1.0, 1.0]]])
    assert box_reach(points, boxes).tolist() == [[20.0, 0.0]]
