"""The sparse building blocks that replace dense (G, R) matrices: window search, GT
chunks, best GT per point, lowest-k per (GT, level), pair anchor losses; each against a
plain loop written from its definition, and every matcher unchanged by the chunk size."""
import math

import pytest
import torch
from helpers import crowded_scene
from references import preliminary_match
from fvcore.nn import sigmoid_focal_loss as fvcore_focal_loss
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from lada.matchers import BACKGROUND, MATCHER_REGISTRY
from lada.matchers.methods import aps, atss, ciou_atss, fcos, lada, paa
from lada.matchers.stages import pairs as pairs_module
from lada.matchers.stages.best_gt import BestGTTiesToLowestIndex, assign_candidates_to_best_gt
from lada.matchers.stages.geometry import anchor_boxes
from lada.matchers.stages.pairs import WindowIndex, gt_chunks
from lada.matchers.stages.candidates import lowest_pairs_per_gt_and_level
from lada.matchers.stages.preliminary import preliminary_iou_match
from lada.matchers.stages.class_costs import ClassSummedCost, focal_term
from lada.matchers.stages.scores import (anchor_losses, anchor_losses_of_pairs,
                                         constant_target_focal_losses, one_hot_focal_losses)

MATCHER_CLASSES = {"fcos": fcos.FCOSMatcher, "atss": atss.ATSSMatcher, "paa": paa.PAAMatcher,
                   "lada": lada.LADAMatcher, "ciou_atss": ciou_atss.CIoUATSSMatcher,
                   "aps": aps.APSMatcher}


def random_points(generator, counts, grid):
    """Points of len(counts) levels: on a grid of spacing 3.5 (repeated x and y), or
    uniform in [-20, 80)^2."""
    if grid:
        return torch.cat([torch.randint(0, 20, (c, 2), generator=generator).float() * 3.5
                          for c in counts])
    return torch.cat([torch.rand(c, 2, generator=generator) * 100 - 20 for c in counts])


@pytest.mark.parametrize("grid", [True, False])
def test_window_pairs_equal_a_loop_over_points(grid):
    generator = torch.Generator().manual_seed(1)
    for trial in range(20):
        counts = torch.randint(0, 40, (3,), generator=generator).tolist()
        points = random_points(generator, counts, grid)
        num_gts = int(torch.randint(0, 10, (1,), generator=generator))
        low = torch.rand(num_gts, 3, 2, generator=generator) * 120 - 30
        windows = torch.cat([low, low + torch.rand(num_gts, 3, 2, generator=generator) * 50 - 5], 2)
        level = [lvl for lvl, count in enumerate(counts) for _ in range(count)]
        expected = {
            (g, r) for g in range(num_gts) for r in range(len(points))
            if windows[g, level[r], 0] <= points[r, 0] <= windows[g, level[r], 2]
            and windows[g, level[r], 1] <= points[r, 1] <= windows[g, level[r], 3]
        }
        found = []
        for gt, point in WindowIndex(points, counts).pairs(windows, max_pairs=1 + trial % 7):
            found += list(zip(gt.tolist(), point.tolist()))
        assert len(found) == len(set(found))
        assert set(found) == expected
        assert [g for g, _ in found] == sorted(g for g, _ in found)  # chunks of whole GTs


def test_window_pairs_on_feature_maps_equal_a_loop_in_column_order(monkeypatch):
    # Full grids (feature maps) take the row search once per window (for inputs larger
    # than SMALL_PROBLEM_ELEMENTS): the same pairs in the same order as the column
    # search, per GT and level by x, then y.
    monkeypatch.setattr(pairs_module, "SMALL_PROBLEM_ELEMENTS", 0)
    generator = torch.Generator().manual_seed(5)
    levels = [torch.stack(torch.meshgrid(torch.arange(w) * s + s / 2, torch.arange(h) * s + s / 2,
                                         indexing="xy"), dim=-1).reshape(-1, 2)
              for s, w, h in ((4, 13, 9), (8, 7, 5), (16, 4, 3))]
    points, counts = torch.cat(levels), [len(level) for level in levels]
    index = WindowIndex(points, counts)
    assert index.is_grid and index.row_major
    level = [lvl for lvl, count in enumerate(counts) for _ in range(count)]
    low = torch.rand(12, 3, 2, generator=generator) * 70 - 10
    windows = torch.cat([low, low + torch.rand(12, 3, 2, generator=generator) * 30 - 3], 2)
    expected = sorted(
        ((g, level[r], points[r, 0].item(), points[r, 1].item()), r)
        for g in range(12) for r in range(len(points))
        if windows[g, level[r], 0] <= points[r, 0] <= windows[g, level[r], 2]
        and windows[g, level[r], 1] <= points[r, 1] <= windows[g, level[r], 3]
    )
    for max_pairs in (None, 5):
        found = [(g, r) for gt, point in index.pairs(windows, max_pairs)
                 for g, r in zip(gt.tolist(), point.tolist())]
        assert found == [(key[0], r) for key, r in expected]


def test_one_hot_focal_losses_are_fvcores_bit_for_bit():
    # Also their sums in anchor_losses, computed in blocks of rows (several blocks here).
    generator = torch.Generator().manual_seed(6)
    for rows, classes in ((1, 1), (3, 5), (37, 80), (1000, 7), (3001, 80)):
        logits = torch.randn(rows, classes, generator=generator) * 6 - 2
        extremes = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0, 1e-30, 90.0, -90.0, 1e4])
        logits.view(-1)[torch.randint(0, logits.numel(), (8,), generator=generator)] = extremes
        target = torch.randint(0, classes, (rows,), generator=generator)
        corner = torch.rand(rows, 2, generator=generator) * 50
        boxes = torch.cat([corner, corner + 10], 1)
        for alpha, gamma in ((0.25, 2.0), (0.5, 1.5)):  # the fast terms; fvcore itself
            expected = fvcore_focal_loss(logits, torch.nn.functional.one_hot(target, classes).float(),
                                         alpha=alpha, gamma=gamma)
            found = one_hot_focal_losses(logits, target, alpha, gamma)
            same = (found.view(torch.int32) == expected.view(torch.int32))
            assert (same | (found.isnan() & expected.isnan())).all()
            sums = anchor_losses(logits, boxes[:rows], boxes[:rows], target, focal_alpha=alpha,
                                 focal_gamma=gamma)[0]
            same = (sums.view(torch.int32) == expected.sum(1).view(torch.int32))
            assert (same | (sums.isnan() & expected.sum(1).isnan())).all()


def test_constant_target_focal_losses_and_ota_background_are_fvcores_bit_for_bit():
    # float32 in the fast form, float64 through fvcore; the all-zero sums of OTA's class
    # costs in blocks of 384 rows (three blocks here) equal fvcore's on all rows at once
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(1000, 80, generator=generator) * 6 - 2
    extremes = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0, 1e-30, 90.0, -90.0, 1e4])
    logits.view(-1)[torch.randint(0, logits.numel(), (8,), generator=generator)] = extremes
    for dtype in (torch.float32, torch.float64):
        for target in (0, 1):
            for alpha, gamma in ((0.25, 2.0), (0.5, 1.5)):
                x = logits.to(dtype)
                expected = fvcore_focal_loss(x, torch.full_like(x, float(target)), alpha=alpha,
                                             gamma=gamma)
                found = constant_target_focal_losses(x, target, alpha, gamma)
                assert torch.equal(found.isnan(), expected.isnan())
                assert torch.equal(found.nan_to_num(-1.0), expected.nan_to_num(-1.0))
    finite = logits.clamp(-50, 50)
    background = ClassSummedCost(finite[None], focal_term()).negative_sums()
    direct = fvcore_focal_loss(finite, torch.zeros_like(finite), alpha=0.25, gamma=2.0)
    assert torch.equal(background, direct.sum(dim=1, dtype=torch.float64))


def test_gt_chunks_cover_every_gt_in_bounded_ranges():
    costs = torch.tensor([3, 0, 5, 9, 1, 1, 1, 4, 0, 2])
    chunks = gt_chunks(costs, max_elements=6)
    covered = [i for chunk in chunks for i in range(chunk.start, chunk.stop)]
    assert covered == list(range(len(costs)))
    for chunk in chunks:
        assert costs[chunk].sum() <= 6 + costs[chunk.start]
    assert len(chunks) > 2
    assert gt_chunks(torch.zeros(0, dtype=torch.long)) == []


def test_best_gt_equals_a_loop_over_points_in_any_parts():
    generator = torch.Generator().manual_seed(2)
    num_points, num_gts = 30, 8
    gt = torch.randint(0, num_gts, (200,), generator=generator)
    point = torch.randint(0, num_points, (200,), generator=generator)
    score = torch.randint(0, 4, (200,), generator=generator).float()  # many ties
    score[::17] = float("-inf")
    expected = []
    for r in range(num_points):
        claims = [(score[i].item(), gt[i].item()) for i in range(200) if point[i] == r]
        best = max((s for s, _ in claims), default=-math.inf)
        expected.append(BACKGROUND if best == -math.inf else min(g for s, g in claims if s == best))
    for parts in (1, 3, 7):
        best = BestGTTiesToLowestIndex(num_points, torch.float32, torch.device("cpu"))
        order = torch.randperm(200, generator=generator)
        for part in order.chunk(parts):
            best.add(gt[part], point[part], score[part])
        assert best.gt_index().tolist() == expected


def test_assign_candidates_to_best_gt_by_hand():
    # GT 0 and GT 1 both claim point 2: GT 1 has the higher score; GT 0's claim of
    # point 0 is not positive; point 4 ties between GT 0 and 1 and goes to GT 0.
    index = torch.tensor([[0, 2, 4], [2, 3, 4]])
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.7, 0.2, 0.5]])
    positive = torch.tensor([[False, True, True], [True, True, True]])
    assert assign_candidates_to_best_gt(index, scores, positive, 6).tolist() == [-1, -1, 1, 1, 0, -1]


def test_lowest_pairs_per_gt_and_level_equal_a_loop():
    generator = torch.Generator().manual_seed(3)
    levels, k, num_gts = [7, 4, 2], 3, 5
    level_of = [lvl for lvl, count in enumerate(levels) for _ in range(count)]
    gt = torch.randint(0, num_gts, (60,), generator=generator)
    point = torch.randint(0, sum(levels), (60,), generator=generator)
    score = torch.randint(-3, 4, (60,), generator=generator).float() / 2  # ties, negatives
    score[::11] = float("inf")
    score[5] = float("nan")
    index, valid = lowest_pairs_per_gt_and_level(gt, point, score, num_gts, levels, k)
    widths = [min(k, count) for count in levels]
    assert index.shape == valid.shape == (num_gts, sum(widths))
    for g in range(num_gts):
        start = 0
        for lvl, width in enumerate(widths):
            mine = [i for i in range(60) if gt[i] == g and level_of[point[i]] == lvl
                    and math.isfinite(score[i].item())]
            mine.sort(key=lambda i: score[i].item())  # stable: equal scores in pair order
            chosen = mine[:width]
            slots = slice(start, start + width)
            assert index[g, slots][valid[g, slots]].tolist() == chosen
            assert valid[g, slots].tolist() == [True] * len(chosen) + [False] * (width - len(chosen))
            start += width


def test_anchor_losses_of_pairs_equal_the_per_pair_sum():
    generator = torch.Generator().manual_seed(4)
    logits = 3 * torch.randn(12, 6, generator=generator)
    boxes = torch.rand(12, 4, generator=generator) * 50
    point = torch.randint(0, 12, (40,), generator=generator)
    xy = torch.rand(40, 2, generator=generator) * 40
    gt_boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=generator) * 30], 1)
    classes = torch.randint(0, 6, (40,), generator=generator)
    cls, reg = anchor_losses_of_pairs(logits, boxes, point, gt_boxes, classes)
    target = torch.nn.functional.one_hot(classes, 6).double()
    expected_cls = sigmoid_focal_loss(logits[point].double(), target, alpha=0.25, gamma=2).sum(1)
    own = boxes[point].double()
    own = torch.cat([own[:, :2], torch.maximum(own[:, :2], own[:, 2:])], 1)  # inverted clamped
    expected_reg = generalized_box_iou_loss(own, gt_boxes.double())
    torch.testing.assert_close(cls.double(), expected_cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reg.double(), expected_reg, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_preliminary_match_equals_the_reference_on_crowded_scenes(seed, monkeypatch):
    inputs = crowded_scene(seed, num_small=60, num_large=6)
    anchors = anchor_boxes(inputs.points, inputs.strides, 8.0)
    for max_pairs, small in ((pairs_module.MAX_CHUNK_ELEMENTS, pairs_module.SMALL_PROBLEM_ELEMENTS),
                             (pairs_module.MAX_CHUNK_ELEMENTS, 0), (50, 0)):
        # one chunk or many; every overlapping pair, or only the deciding ones
        monkeypatch.setattr(pairs_module, "MAX_CHUNK_ELEMENTS", max_pairs)
        monkeypatch.setattr(pairs_module, "SMALL_PROBLEM_ELEMENTS", small)
        for image in range(inputs.num_images):
            mine = preliminary_iou_match(anchors, inputs.gt_boxes[image], 0.1,
                                         inputs.num_points_per_level)
            assert mine.tolist() == preliminary_match(inputs, image).tolist()


@pytest.mark.parametrize("name", sorted(MATCHER_CLASSES))
def test_matchers_do_not_depend_on_the_chunk_size(name, monkeypatch):
    assert set(MATCHER_CLASSES) <= {n for n, _ in MATCHER_REGISTRY}
    inputs = crowded_scene(5, num_small=40)
    matcher = MATCHER_CLASSES[name]()
    expected = matcher(inputs).gt_index
    monkeypatch.setattr(pairs_module, "MAX_CHUNK_ELEMENTS", 64)
    assert torch.equal(matcher(inputs).gt_index, expected)
    monkeypatch.setattr(pairs_module, "SMALL_PROBLEM_ELEMENTS", 0)  # the searches of large inputs
    assert torch.equal(matcher(inputs).gt_index, expected)
    assert (expected >= 0).sum() > 40
