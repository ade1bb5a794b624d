"""SimOTA (docs/methods/simota.md) against an independent float64 reference written from
the YOLOX report and its release code's rules (get_in_boxes_info, get_assignments,
dynamic_k_matching): dense (G, R) matrices of one image, one GT at a time for the
picks, the readings applied (picks and conflicts within the GT's own region, the
penalty as a tier). Shares no code with lada.matchers."""
import math
from dataclasses import replace

import pytest
import torch
from conftest import small_cfg
from helpers import fidelity_scene, grid, scene
from torchvision.ops import box_iou

from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.methods import simota as simota_module
from lada.matchers.methods.simota import SimOTAMatcher, joint_score_bce_term
from lada.matchers.stages.class_costs import ClassSummedCost

NEAR = 1e-6
"""Decisions whose deciding relative margin in the reference is below this are excluded
and counted: dynamic k's floor, the k-th pick against the next, a contested point's best
GT against the next, the region boundaries (pixels)."""


def _bce_costs(logits, aux, classes):
    """(G, R) sum over classes of BCE(q, one-hot), q = sqrt(sigmoid(z) sigmoid(a)), logs
    clamped at -100, float64."""
    q = torch.sigmoid(logits.double())
    if aux is not None:
        q = torch.sqrt(q * torch.sigmoid(aux.double())[:, None])
    log_q, log_not_q = torch.log(q).clamp(min=-100), torch.log1p(-q).clamp(min=-100)
    rows = []
    for c in classes.tolist():
        target = torch.zeros_like(q)
        target[:, c] = 1
        rows.append(-(target * log_q + (1 - target) * log_not_q).sum(1))
    return torch.stack(rows)


def _margin(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1)


def reference_simota(inputs, image, radius=2.5, q=10, weight=3.0, confine=True):
    """SimOTA of one image: (R,) GT index or -1, and the number of near-tie decisions.
    ``confine=False`` is the release's rule: picks among all candidate points U."""
    points, strides = inputs.points.double(), inputs.strides.double()
    boxes, classes = inputs.gt_boxes[image].double(), inputs.gt_classes[image]
    pred = inputs.pred_boxes[image].double().clone()
    pred[:, 2:] = torch.maximum(pred[:, :2], pred[:, 2:])
    aux = None if inputs.pred_aux is None else inputs.pred_aux[image]
    num_gts, num_points = len(boxes), len(points)
    if num_gts == 0:
        return torch.full((num_points,), -1), 0
    near = 0
    in_box = torch.zeros(num_gts, num_points, dtype=torch.bool)
    in_ctr = torch.zeros_like(in_box)
    for g in range(num_gts):
        sides = torch.stack([points[:, 0] - boxes[g, 0], points[:, 1] - boxes[g, 1],
                             boxes[g, 2] - points[:, 0], boxes[g, 3] - points[:, 1]], 1).min(1).values
        offset = ((points - (boxes[g, :2] + boxes[g, 2:]) / 2).abs()
                  - radius * strides[:, None]).max(1).values
        in_box[g], in_ctr[g] = sides > 0, offset < 0
        near += int(((sides != 0) & (sides.abs() < NEAR)).sum() + ((offset != 0) & (offset.abs() < NEAR)).sum())
    region = in_box | in_ctr
    tier = (~(in_box & in_ctr)).long()
    candidates = region.any(0)  # U
    iou = box_iou(boxes, pred)  # (G, R)
    cost = _bce_costs(inputs.pred_logits[image], aux, classes) - weight * torch.log(iou + 1e-8)
    picks = torch.zeros(num_gts, num_points, dtype=torch.bool)
    for g in range(num_gts):
        total = 0.0
        for value in sorted(iou[g, candidates].tolist(), reverse=True)[:q]:
            total += value
        if total >= 1 and _margin(total, round(total)) < NEAR and total != round(total):
            near += 1
        k = max(1, math.floor(total))
        pool = region[g] if confine else candidates
        ranked = sorted((tier[g, p].item() if confine else int(not (in_box[g, p] and in_ctr[g, p])),
                         cost[g, p].item(), p) for p in pool.nonzero()[:, 0].tolist())
        for p in [entry[2] for entry in ranked[:k]]:
            picks[g, p] = True
        if len(ranked) > k and ranked[k - 1][0] == ranked[k][0]:
            near += _margin(ranked[k - 1][1], ranked[k][1]) < NEAR
    result = torch.full((num_points,), -1)
    for p in range(num_points):
        chosen = picks[:, p].nonzero()[:, 0].tolist()
        if len(chosen) == 1:
            result[p] = chosen[0]
        elif chosen:
            pool = region[:, p] if confine else candidates[p].expand(num_gts)
            ranked = sorted((tier[g, p].item(), cost[g, p].item(), g)
                            for g in pool.nonzero()[:, 0].tolist())
            result[p] = ranked[0][2]
            if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
                near += 0 < _margin(ranked[0][1], ranked[1][1]) < NEAR
    return result, near


def _simota(**keys):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "simota"})
    cfg.merge_from_list([i for k, v in keys.items() for i in (f"MODEL.MATCHER.SIMOTA.{k}", v)])
    return build_matcher(cfg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_equals_the_reference_on_crowded_scenes(seed):
    inputs = fidelity_scene(seed)
    inputs = replace(inputs, pred_aux=torch.randn(inputs.num_images, inputs.num_points,
                                                  generator=torch.Generator().manual_seed(seed)))
    result = _simota()(inputs).gt_index
    for image in range(inputs.num_images):
        expected, near = reference_simota(inputs, image)
        assert near == 0, f"{near} near-tie decisions"
        differ = (result[image] != expected).nonzero()[:, 0].tolist()
        assert not differ, f"image {image}: {len(differ)} points differ, e.g. {differ[:5]}"
        assert (expected >= 0).sum() > 20


def test_without_auxiliary_logits_the_score_is_the_class_probability():
    inputs = replace(fidelity_scene(3, num_images=1), pred_aux=None)
    expected, near = reference_simota(inputs, 0)
    assert near == 0 and torch.equal(_simota()(inputs).gt_index[0], expected)


def _one_gt_scene(ious):
    """GT [16, 16, 48, 48] (class 0) on a stride-8 grid of 64 x 64 px; points listed in
    ``ious`` predict boxes [16, 16, 48, 16 + 32 u] of IoU u with it, the others empty
    boxes; logits and auxiliary logits 0."""
    inputs = scene([grid(8, 64, 64)], [[[16.0, 16.0, 48.0, 48.0]]], num_classes=2)
    pred = torch.zeros(1, inputs.num_points, 4)
    for point, iou in ious.items():
        pred[0, point] = torch.tensor([16.0, 16.0, 48.0, 16.0 + 32.0 * iou])
    return replace(inputs, pred_boxes=pred, pred_aux=torch.zeros(1, inputs.num_points))


def test_dynamic_k_and_the_best_iou_points():
    # IoUs 0.9, 0.8, 0.7 and 0 elsewhere, equal logits: k = floor(2.4) = 2 and the class
    # costs are equal, so the two points of highest IoU are the picks.
    gt_index = _simota()(_one_gt_scene({27: 0.9, 28: 0.8, 35: 0.7})).gt_index[0]
    assert (gt_index == 0).nonzero()[:, 0].tolist() == [27, 28]
    # every IoU below 0.09 (sum 0.24): k = max(1, 0) = 1, the best one
    gt_index = _simota()(_one_gt_scene({27: 0.08, 28: 0.085, 35: 0.07})).gt_index[0]
    assert (gt_index == 0).nonzero()[:, 0].tolist() == [28]


def test_zero_logits_cost_c_ln_2_per_point():
    # logits and auxiliary logits 0: q = sqrt(0.5 * 0.5) = 0.5 at every class, and
    # BCE(0.5, y) = ln 2 whatever y: the class cost is C ln 2 exactly.
    num_classes = 5
    logits = torch.zeros(3, num_classes)
    term = joint_score_bce_term(torch.zeros(1, 3))
    keys = torch.tensor([0, 1, 2])
    cost = ClassSummedCost(logits, term)(keys, torch.tensor([0, 3, 4]))
    torch.testing.assert_close(cost, torch.full((3,), num_classes * math.log(2), dtype=torch.float64),
                               rtol=0, atol=1e-6)


def test_a_tiny_gt_takes_tier_one_points_of_its_own_centre_square():
    # The tiny GT [5, 5, 8, 8] holds no point: its region is its centre square (2.5
    # strides around (6.5, 6.5)), all tier 1. The point at (28, 28), in the large GT's
    # region only, predicts the tiny box exactly: the cheapest point for the tiny GT by
    # far, and the release would pick it (every point is penalised for the tiny GT). Here
    # the picks stay within the tiny GT's own square.
    tiny, large = [5.0, 5.0, 8.0, 8.0], [20.0, 20.0, 120.0, 120.0]
    inputs = scene([grid(8, 128, 128)], [[tiny, large]], num_classes=2)
    pred = torch.tensor(large).repeat(inputs.num_points, 1)
    lure = int(((inputs.points - 28).abs().sum(dim=1) == 0).nonzero())
    pred[lure] = torch.tensor(tiny)
    inputs = replace(inputs, pred_logits=torch.randn(1, inputs.num_points, 2,
                                                     generator=torch.Generator().manual_seed(0)),
                     pred_boxes=pred[None], pred_aux=torch.zeros(1, inputs.num_points))
    gt_index = _simota()(inputs).gt_index[0]
    mine = (gt_index == 0).nonzero()[:, 0]
    assert len(mine) == 1 and gt_index[lure] != 0
    assert ((inputs.points[mine] - 6.5).abs() < 2.5 * 8).all()  # within its centre square
    expected, near = reference_simota(inputs, 0)
    assert near == 0 and torch.equal(gt_index, expected)
    release, _ = reference_simota(inputs, 0, confine=False)
    assert release[lure] == 0  # the rule this reading changes


def test_a_tier_zero_point_beats_a_cheaper_tier_one_point():
    # GT [0, 0, 64, 64], stride 8: its centre square (2.5 strides around (32, 32)) holds
    # the 4 x 4 points from 20 to 44. k = floor(1.0 + 0.3) = 1. Point 0 at (4, 4) is inside
    # the box but not the square (tier 1) and is the cheaper one (perfect box, high logit);
    # point 27 at (28, 28) is tier 0 with a poor box: it is the pick.
    inputs = scene([grid(8, 64, 64)], [[[0.0, 0.0, 64.0, 64.0]]], num_classes=2)
    pred = torch.zeros(1, inputs.num_points, 4)
    pred[0, 0] = torch.tensor([0.0, 0.0, 64.0, 64.0])
    pred[0, 27] = torch.tensor([0.0, 0.0, 64.0, 19.2])  # IoU 0.3
    z = torch.full((1, inputs.num_points, 2), -3.0)
    z[0, 0, 0] = 4.0
    inputs = replace(inputs, pred_logits=z, pred_boxes=pred,
                     pred_aux=torch.zeros(1, inputs.num_points))
    gt_index = _simota()(inputs).gt_index[0]
    assert (gt_index == 0).nonzero()[:, 0].tolist() == [27]


def test_a_contested_point_goes_to_the_cheapest_region_holding_it():
    # A and B (same box, class 0) both pick point p; C (class 1), whose region also holds
    # p, is cheaper there but k_C = floor(1 + 0.69) = 1 is filled by the cheaper point q:
    # p goes to C all the same (costs by hand: A and B 4.0 at p, C 1.95 at p, 0.45 at q).
    a = b = [16.0, 16.0, 48.0, 48.0]
    c = [24.0, 24.0, 56.0, 56.0]
    inputs = scene([grid(8, 64, 64)], [[a, b, c]], num_classes=2)
    p, q = 27, 36  # (28, 28) inside all three; (36, 36) inside C, near its centre
    z = torch.full((1, inputs.num_points, 2), -4.0)
    z[0, p] = torch.tensor([-1.0, 3.0])  # cheap for C (class 1), dear for A and B
    z[0, q] = torch.tensor([-4.0, 6.0])  # cheaper still for C
    pred = torch.zeros(1, inputs.num_points, 4)
    pred[0, p] = torch.tensor([22.0, 22.0, 52.0, 52.0])  # IoU 0.54 with A, 0.69 with C
    pred[0, q] = torch.tensor(c)
    inputs = replace(inputs, gt_classes=[torch.tensor([0, 0, 1])], pred_logits=z,
                     pred_boxes=pred, pred_aux=torch.zeros(1, inputs.num_points))
    expected, near = reference_simota(inputs, 0)
    gt_index = _simota()(inputs).gt_index[0]
    assert near == 0 and torch.equal(gt_index, expected)
    assert gt_index[p] == 2 and gt_index[q] == 2 and (gt_index == 2).sum() == 2
    assert not (gt_index == 0).any() and not (gt_index == 1).any()


@pytest.mark.parametrize("rounding", [0.0, 1e-12])
def test_duplicates_share_to_the_lower_index(monkeypatch, rounding):
    # duplicates cost the same at every point, but the same cost computed at another
    # position of a tensor may round differently: with the second one's costs made
    # ``rounding`` lower, the contested points still go to the first
    original = simota_module._RegionCosts.__call__

    def rounded(self, index):
        cost = original(self, index)
        return torch.where(self.region.gt.index_select(0, index) == 1, cost - rounding, cost)

    monkeypatch.setattr(simota_module._RegionCosts, "__call__", rounded)
    box = [16.0, 16.0, 48.0, 48.0]
    inputs = _one_gt_scene({27: 0.9, 28: 0.8, 35: 0.7})
    inputs = replace(inputs, gt_boxes=[torch.tensor([box, box])],
                     gt_classes=[torch.tensor([0, 0])])
    gt_index = _simota()(inputs).gt_index[0]
    assert (gt_index == 0).nonzero()[:, 0].tolist() == [27, 28] and not (gt_index == 1).any()


@pytest.mark.parametrize("key, value", [("TOPK_IOU", 0), ("CENTER_RADIUS", 0.0),
                                        ("IOU_WEIGHT", -1.0)])
def test_invalid_hyperparameters(key, value):
    with pytest.raises(ValueError, match=f"MODEL.MATCHER.SIMOTA.{key}"):
        _simota(**{key: value})


def test_arguments_are_the_release_defaults():
    matcher = SimOTAMatcher()
    assert (matcher.center_radius, matcher.topk_iou, matcher.iou_weight) == (2.5, 10, 3.0)
