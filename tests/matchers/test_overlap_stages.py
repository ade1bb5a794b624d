"""The shared stages of the dynamic-k and top-m methods against plain loops:
``stages/overlaps.py`` (the pairs with u > 0, exact; the dynamic k), ``stages/ranking.py``
(the first k per group, ties to the lower point) and ``stages/class_sums.py`` (class-summed
costs without a (pairs, C) tensor)."""
from dataclasses import replace

import pytest
import torch
from helpers import crowded_scene
from torch.nn import functional as F

from lada.matchers.stages.batch import BatchGTs
from lada.matchers.stages.class_sums import ClassSummedCost, soft_label_term, soft_label_zero_term
from lada.matchers.stages.overlaps import dynamic_k, pairs_with_overlap
from lada.matchers.stages.ranking import first_k_per_group


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
    among = torch.rand(inputs.num_images * inputs.num_points, generator=torch.Generator()
                       .manual_seed(0)) < 0.7
    for subset in (None, among):
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


def test_dynamic_k_is_the_floor_of_the_top_q_iou_sum():
    generator = torch.Generator().manual_seed(1)
    gt = torch.randint(0, 6, (400,), generator=generator)
    iou = torch.rand(400, generator=generator).clamp(min=1e-6)
    iou[:40] = 0.25  # equal values
    key = torch.randperm(5000, generator=generator)[:400]
    for q in (1, 10, 13, 20):
        expected = [max(1, int(sum(sorted(iou[gt == g].tolist(), reverse=True)[:q])))
                    for g in range(7)]  # GT 6 has no pair: k = 1
        assert dynamic_k(gt, iou, key, 7, q).tolist() == expected


@pytest.mark.parametrize("exact", [True, False])
def test_first_k_per_group_ranks_by_score_then_point(exact):
    generator = torch.Generator().manual_seed(2)
    for trial in range(8):
        num = int(torch.randint(1, 2000, (), generator=generator))
        group = torch.randint(0, 7, (num,), generator=generator)
        point = torch.randperm(10000, generator=generator)[:num]
        score = torch.randint(0, 20, (num,), generator=generator).double()
        if trial % 2:
            score = score * (1 + 1e-12 * torch.randint(0, 3, (num,), generator=generator))
        score[torch.rand(num, generator=generator) < 0.05] = float("nan")
        score[torch.rand(num, generator=generator) < 0.05] = float("inf")
        score[torch.rand(num, generator=generator) < 0.02] = float("-inf")
        k = torch.randint(0, 20, (7,), generator=generator)
        rounded = (score if exact else score.float().double()).nan_to_num(nan=float("inf"))
        values, points, groups = rounded.tolist(), point.tolist(), group.tolist()
        expected = []
        for g in range(7):
            members = sorted((i for i in range(num) if groups[i] == g),
                             key=lambda i: (values[i], points[i]))
            expected += members[: k[g]]
        assert first_k_per_group(group, score, point, k, exact=exact).tolist() == expected


def test_class_summed_costs_equal_the_direct_sum():
    logits = 5 * torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(3))
    key, cls = torch.tensor([0, 3, 3, 13, 8]), torch.tensor([1, 0, 2, 3, 1])
    target = torch.tensor([0.0, 0.3, 1.0, 0.7, 0.5])
    flat = logits.reshape(-1, 4).double()
    for zero_term in (None, soft_label_zero_term):
        costs = ClassSummedCost(logits, soft_label_term, zero_term)(key, cls, target)
        for i in range(5):
            y = torch.zeros(4, dtype=torch.float64)
            y[cls[i]] = target[i]
            z = flat[key[i]]
            direct = (F.binary_cross_entropy_with_logits(z, y, reduction="none")
                      * (y - z.sigmoid()) ** 2).sum()
            assert costs[i].item() == pytest.approx(direct.item(), rel=3e-7, abs=1e-9)
