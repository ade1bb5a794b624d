"""TAL (docs/methods/tal.md) against an independent per-GT reference written from TOOD's
rules (paper section 3.2; the official task_aligned_assigner.py and tood_head.py), in
float64 with plain loops over GT boxes, on seeded crowded scenes with duplicate, tiny,
out-of-image and same-class overlapping boxes; and the hand cases of tal.md."""
import math
from dataclasses import replace

import pytest
import torch
from helpers import hard_scene, scene

from lada.matchers import BACKGROUND
from lada.matchers.methods.atss import ATSSMatcher
from lada.matchers.methods.tal import TALMatcher

T_MARGIN = 1e-4  # |ln t_a - ln t_b| below this: a near-tie of the ranking, excluded
U_MARGIN = 1e-6  # relative IoU margin of a conflict


def _iou(pred, box):
    """IoU of boxes (R, 4) with one box (4,), float64; an inverted box is empty."""
    width = (torch.minimum(pred[:, 2], box[2]) - torch.maximum(pred[:, 0], box[0])).clamp(min=0)
    height = (torch.minimum(pred[:, 3], box[3]) - torch.maximum(pred[:, 1], box[1])).clamp(min=0)
    inter = width * height
    area = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    union = area + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(union))


def reference_tal(inputs, image, topk=13, alpha=1.0, beta=6.0):
    """TOOD's assignment of one image, one GT at a time: (gt_index list, quality list,
    near-ties, contested points)."""
    points = inputs.points.double()
    num_points = len(points)
    boxes = inputs.gt_boxes[image].double()
    classes = inputs.gt_classes[image].tolist()
    logits = inputs.pred_logits[image].double()
    pred = inputs.pred_boxes[image].double()
    claims, log_t_of, iou_of, near = {}, {}, {}, 0
    for g, box in enumerate(boxes):
        u = _iou(pred, box)
        log_t = alpha * torch.nn.functional.logsigmoid(logits[:, classes[g]]) + beta * torch.log(u)
        values = log_t.tolist()
        order = sorted(range(num_points), key=lambda p: (-values[p], p))
        m = min(topk, num_points)
        if m < num_points and values[order[m - 1]] > -math.inf:
            near += abs(values[order[m - 1]] - values[order[m]]) < T_MARGIN
        for p in order[:m]:
            x, y = points[p].tolist()
            inside = min(x - box[0], y - box[1], box[2] - x, box[3] - y) > 0.01
            if values[p] > -math.inf and inside:
                claims.setdefault(p, []).append(g)
                log_t_of[g, p], iou_of[g, p] = values[p], u[p].item()
    gt_index = [BACKGROUND] * num_points
    for p, gts in claims.items():
        best = max(iou_of[g, p] for g in gts)
        gt_index[p] = min(g for g in gts if iou_of[g, p] == best)
        others = [iou_of[g, p] for g in gts if iou_of[g, p] != best]
        near += bool(others) and (best - max(others)) / max(best, 1.0) < U_MARGIN
    quality = [0.0] * num_points
    for g in range(len(boxes)):
        final = [p for p in range(num_points) if gt_index[p] == g]
        if final:
            largest_t = max(math.exp(log_t_of[g, p]) for p in final)
            largest_u = max(iou_of[g, p] for p in final)
            for p in final:
                quality[p] = math.exp(log_t_of[g, p]) / (largest_t + 1e-7) * largest_u
    contested = sum(len(gts) > 1 for gts in claims.values())
    return gt_index, quality, near, contested


def _tal(**arguments):
    return TALMatcher(initial_epochs=arguments.pop("initial_epochs", 0), **arguments)


@pytest.mark.parametrize("seed", range(3))
def test_equals_the_per_gt_reference_on_hard_scenes(seed):
    inputs = hard_scene(seed)
    result = _tal()(inputs)
    for image in range(inputs.num_images):
        gt_index, quality, near, contested = reference_tal(inputs, image)
        assert near == 0  # no decision within the margins: every one is compared
        assert contested > 0 and sum(g >= 0 for g in gt_index) > 100
        assert result.gt_index[image].tolist() == gt_index
        torch.testing.assert_close(result.quality[image].double(), torch.tensor(quality,
                                   dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("changed", [{"beta": 5.0}, {"topk": 12}])
def test_the_hard_scene_tells_a_changed_rule(changed):
    """The acceptance check: BETA 5 or TOPK 12 gives other positives than the reference
    of the official rule on the seeded scene."""
    inputs = hard_scene(0)
    result = _tal(**changed)(inputs)
    assert result.gt_index[0].tolist() != reference_tal(inputs, 0)[0]


def _one_gt_scene(specs, box=(0.0, 0.0, 160.0, 160.0), num_classes=3):
    """Points with (x, y, s, u): class-0 logit logit(s), a predicted box of IoU u with
    ``box`` (its top part, so contained in it), the other logits -5."""
    levels = [(8, [(x, y) for x, y, _, _ in specs])]
    inputs = scene(levels, [[list(box)]], num_classes=num_classes)
    x0, y0, x1, y1 = box
    pred = torch.tensor([[x0, y0, x1, y0 + (y1 - y0) * u] for _, _, _, u in specs])
    logits = torch.full((1, len(specs), num_classes), -5.0)
    logits[0, :, 0] = torch.logit(torch.tensor([s for _, _, s, _ in specs]).double()).float()
    return replace(inputs, pred_logits=logits, pred_boxes=pred[None])


def test_top_m_by_the_alignment_metric():
    generator = torch.Generator().manual_seed(4)
    s = (0.05 + 0.9 * torch.rand(20, generator=generator)).tolist()
    u = (0.3 + 0.65 * torch.rand(20, generator=generator)).tolist()
    specs = [(8.0 * (i % 5) + 20, 8.0 * (i // 5) + 20, s[i], u[i]) for i in range(20)]
    t = [s[i] * u[i] ** 6 for i in range(20)]

    def top(values):
        return set(sorted(range(20), key=lambda i: -values[i])[:13])

    assert top(t) != top(u) and top(t) != top(s)  # the metric, not either factor, decides
    result = _tal()(_one_gt_scene(specs))
    positives = (result.gt_index[0] == 0).nonzero()[:, 0].tolist()
    assert set(positives) == top(t)
    quality = result.quality[0]
    assert quality.max().item() == pytest.approx(max(u[i] for i in positives), rel=1e-6)
    best = max(positives, key=lambda i: t[i])
    assert quality[best].item() == pytest.approx(t[best] / (t[best] + 1e-7) * u[best], rel=1e-6)


def test_outside_points_take_slots():
    # 20 inside points as above plus 3 outside the box (x < 0) with the largest t: the
    # top 13 holds them, and only 10 inside points are positive.
    inside = [(8.0 * (i % 5) + 20, 8.0 * (i // 5) + 20, 0.5, 0.5 + 0.02 * i) for i in range(20)]
    outside = [(-4.0, 20.0 + 8 * i, 0.95, 0.95) for i in range(3)]
    result = _tal()(_one_gt_scene(inside + outside))
    positives = (result.gt_index[0] == 0).nonzero()[:, 0].tolist()
    assert positives == list(range(10, 20))  # the 10 inside points of largest u


def test_a_contested_point_goes_to_the_larger_iou():
    # p = (40, 40) inside A (class 0) and B (class 1), its predicted box [20, 20, 120, 80]:
    # IoU 3600 / 8800 = 0.409 with A, 6000 / 10000 = 0.6 with B. With s 0.99 for A and
    # 0.01 for B, t is larger for A (0.99 * 0.409^6 = 0.0046 > 0.01 * 0.6^6 = 0.0005),
    # yet p goes to B, of larger IoU.
    a, b = [0.0, 0.0, 80.0, 80.0], [20.0, 20.0, 120.0, 120.0]
    inputs = scene([(8, [(40.0, 40.0)])], [[a, b]], num_classes=2)
    inputs = replace(inputs, gt_classes=[torch.tensor([0, 1])],
                     pred_logits=torch.logit(torch.tensor([[[0.99, 0.01]]])),
                     pred_boxes=torch.tensor([[[20.0, 20.0, 120.0, 80.0]]]))
    assert 0.99 * (3600 / 8800) ** 6 > 0.01 * 0.6**6
    result = _tal()(inputs)
    assert result.gt_index[0].tolist() == [1]
    assert result.quality[0].item() == pytest.approx(0.6 * 0.01 * 0.6**6 / (0.01 * 0.6**6 + 1e-7),
                                                     rel=1e-5)


def test_the_largest_metric_of_a_gt_is_its_largest_iou_unless_eps_dominates():
    # Two positives of one GT: ordinary t (0.5 * 0.8^6 = 0.13) and tiny t (s = 1e-9).
    specs = [(20.0, 20.0, 0.5, 0.8), (28.0, 20.0, 0.5, 0.4)]
    quality = _tal()(_one_gt_scene(specs)).quality[0]
    assert quality[0].item() == pytest.approx(0.8 * 0.131072 / (0.131072 + 1e-7), rel=1e-6)
    assert quality[1].item() == pytest.approx(0.5 * 0.4**6 / (0.131072 + 1e-7) * 0.8, rel=1e-5)
    tiny = [(20.0, 20.0, 1e-9, 0.8), (28.0, 20.0, 1e-9, 0.4)]
    quality = _tal()(_one_gt_scene(tiny)).quality[0]
    largest = 1e-9 * 0.8**6
    assert quality[0].item() == pytest.approx(largest / (largest + 1e-7) * 0.8, rel=1e-5)
    assert 0 < quality[0].item() < 0.01  # the eps dominates: far below the IoU


def test_warm_up_boundary():
    # max_iter 9 of TOOD's 12 epochs, 4 of warm-up: iteration 2 is ATSS (2 * 12 < 4 * 9),
    # iteration 3 is TAL (36 < 36 is false).
    inputs = hard_scene(1)
    matcher = TALMatcher()
    warm = matcher(replace(inputs, iteration=2, max_iter=9))
    assert warm.quality is None
    atss = ATSSMatcher(topk=9, anchor_scale=8.0)(inputs)
    assert torch.equal(warm.gt_index, atss.gt_index)
    after = matcher(replace(inputs, iteration=3, max_iter=9))
    assert after.quality is not None
    assert torch.equal(after.gt_index, _tal()(inputs).gt_index)
    assert not torch.equal(after.gt_index, atss.gt_index)


def test_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="initial_epochs must be an integer >= 0"):
        TALMatcher(initial_epochs=-1)
    with pytest.raises(ValueError, match="beta must be > 0"):
        TALMatcher(beta=0.0)


def test_inside_means_every_side_distance_above_a_hundredth_of_a_pixel():
    # Two points of equal t, one 0.005 px inside the box (not inside by TAL's > 0.01).
    specs = [(0.005, 20.0, 0.5, 0.8), (20.0, 20.0, 0.5, 0.8)]
    result = _tal()(_one_gt_scene(specs))
    assert result.gt_index[0].tolist() == [BACKGROUND, 0]
