"""DW (docs/methods/dw.md) on a hand-built scene: two overlapping GT boxes of class 0 (A, B)
and one of class 1 (C); expected values by hand or from an independent per-pair loop in
plain Python written from docs/methods/dw.md (``reference_dw``), never from the matcher."""
import dataclasses
import math

import pytest
import torch
from conftest import small_cfg
from helpers import crowded_scene, scene

from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.methods.dw import DWMatcher
from lada.matchers.stages.batch import BatchGTs
from lada.matchers.stages.best_gt import best_gt_ties_to_smallest_box
from lada.modeling.losses import PairwiseWeightedLoss

A, B, C = [0.0, 0.0, 32.0, 32.0], [16.0, 0.0, 48.0, 32.0], [0.0, 40.0, 16.0, 56.0]
STRIDE8 = [(12, 12), (20, 16), (28, 12), (40, 16), (8, 48), (4, 44), (60, 60), (12, 52)]
STRIDE16 = [(16, 16)]
# Predicted boxes, chosen for their IoU with the GTs: point 0 has IoU 0.4 with A, 1 has
# 0.5 with A (0.2 with B), 2 has 0.9 with A, 3 has 0.9 with B, 4 / 5 / 7 have 1.0 / 0.6 /
# 0.8 with C, 8 (stride 16, at A's centre) has 0.8 with A; point 6 is in no GT.
PRED = [
    [0, 0, 32, 12.8], [0, 0, 32, 16], [0, 0, 32, 28.8], [16, 0, 48, 28.8], [0, 40, 16, 56],
    [0, 40, 16, 49.6], [56, 56, 64, 64], [0, 40, 16, 52.8], [0, 0, 32, 25.6],
]
NUM_CLASSES = 3


def hand_scene():
    inputs = scene([(8, STRIDE8), (16, STRIDE16)], [[A, B, C]], num_classes=NUM_CLASSES)
    generator = torch.Generator().manual_seed(3)
    return dataclasses.replace(
        inputs,
        gt_classes=[torch.tensor([0, 0, 1])],
        pred_logits=torch.randn(1, 9, NUM_CLASSES, generator=generator),
        pred_aux=torch.randn(1, 9, generator=generator),
        pred_boxes=torch.tensor([PRED]),
    )


def _area(box):
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def _iou_giou(pred, gt):
    # an inverted prediction is an empty box at its (x0, y0) corner (the official codes' clamp)
    pred = [pred[0], pred[1], max(pred[0], pred[2]), max(pred[1], pred[3])]
    inter = _area([max(pred[0], gt[0]), max(pred[1], gt[1]), min(pred[2], gt[2]), min(pred[3], gt[3])])
    union = _area(pred) + _area(gt) - inter
    hull = _area([min(pred[0], gt[0]), min(pred[1], gt[1]), max(pred[2], gt[2]), max(pred[3], gt[3])])
    return inter / union, inter / union - (hull - union) / hull


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def reference_dw(inputs, variant="official", beta=5.0, mu=5.0, mu_norm=3.0, gamma1=2.0,
                 sigma=1.11, alpha=0.25):
    """dw.md, one (GT, point) pair at a time, for the first image. Returns the positive
    weights {(gt, point): w}, P_neg per pair {(gt, point): p}, the negative weights
    {(point, class): w_neg} of in-bag slots, the default outside them, and the priors."""
    points = inputs.points.tolist()
    strides = inputs.strides.tolist()
    boxes = inputs.gt_boxes[0].tolist()
    classes = inputs.gt_classes[0].tolist()
    logits = inputs.pred_logits[0].tolist()
    ctr = inputs.pred_aux[0].tolist()
    pred = inputs.pred_boxes[0].tolist()
    prior, t, iou = {}, {}, {}
    for g, box in enumerate(boxes):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for r, (x, y) in enumerate(points):
            if min(x - box[0], y - box[1], box[2] - x, box[3] - y) <= 0.01:
                continue  # the bag: points strictly inside the GT
            d2 = ((x - cx) / strides[r]) ** 2 + ((y - cy) / strides[r]) ** 2
            prior[g, r] = math.exp(-d2 / (2 * sigma**2))
            s = _sigmoid(logits[r][classes[g]]) * _sigmoid(ctr[r])
            iou[g, r], giou = _iou_giou(pred[r], box)
            t[g, r] = s * (math.exp(-beta * (1 - giou)) if variant == "official" else iou[g, r] ** beta)
    weight, p_neg = {}, {}
    for g in range(len(boxes)):
        bag = [r for (gg, r) in t if gg == g]
        if not bag:  # a GT smaller than the point spacing: no pair
            continue
        norm_mu = mu_norm if variant == "official" else mu
        total = sum(math.exp(norm_mu * t[g, r]) * t[g, r] * prior[g, r] for r in bag)
        for r in bag:
            weight[g, r] = math.exp(mu * t[g, r]) * t[g, r] * prior[g, r] / total
        if variant == "paper":
            for r in bag:
                line = (0.95**gamma1 - iou[g, r] ** gamma1) / (0.95**gamma1 - 0.5**gamma1)
                p_neg[g, r] = min(max(line, 0.0), 1.0)
        else:
            raw = {r: (1 - iou[g, r] ** gamma1) / (1 - 0.5**gamma1) for r in bag}
            low, high = min(raw.values()), min(1.0, max(raw.values()))
            for r in bag:
                rescaled = (raw[r] - low + 1e-12) / (high - low + 1e-12)
                p_neg[g, r] = 1.0 if iou[g, r] < 0.5 else rescaled
    neg = {}
    for (g, r), value in p_neg.items():
        slot = (r, classes[g])
        neg[slot] = min(value, neg.get(slot, math.inf))
    outside = 1.0 if variant == "official" else 1 - alpha
    return weight, p_neg, neg, outside, prior


def _matcher(variant="official", **keys):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "dw", "MODEL.MATCHER.DW.VARIANT": variant})
    cfg.merge_from_list([item for key, value in keys.items() for item in (f"MODEL.MATCHER.DW.{key}", value)])
    return build_matcher(cfg)


def _pairs(result):
    return {(int(g), int(r)): w for (_, r, g), w in zip(result.soft.pair_index.tolist(), result.soft.pair_weight.tolist())}


def test_bags_and_prior_by_hand():
    inputs = hand_scene()
    matcher = _matcher()
    assert sorted(_pairs(matcher(inputs))) == [
        (0, 0), (0, 1), (0, 2), (0, 8), (1, 1), (1, 2), (1, 3), (2, 4), (2, 5), (2, 7)]
    *_, prior = reference_dw(inputs)
    # exp(-||(p - c) / s||^2 / (2 * 1.11^2)) by hand: point 0 is (-0.5, -0.5) strides from
    # A's centre, point 2 (1.5, -0.5), point 8 sits on it.
    assert prior[0, 0] == pytest.approx(math.exp(-0.5 / 2.4642))
    assert prior[0, 0] == pytest.approx(0.816355, abs=1e-6)
    assert prior[0, 2] == pytest.approx(0.362574, abs=1e-6)
    assert prior[0, 8] == 1.0


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_positive_weights_equal_the_reference_loop(variant):
    inputs = hand_scene()
    result = _matcher(variant)(inputs)
    expected, *_ = reference_dw(inputs, variant)
    got = _pairs(result)
    assert got.keys() == expected.keys()
    for pair, value in expected.items():
        assert got[pair] == pytest.approx(value, rel=1e-5), pair
    sums = [sum(w for (g, _), w in got.items() if g == gt) for gt in range(3)]
    if variant == "official":  # exp(5t) / exp(3t) = exp(2t), t in [0, 1]
        assert all(1 <= total <= math.e**2 for total in sums)
        assert max(sums) > 1.0001
    else:
        assert sums == pytest.approx([1.0, 1.0, 1.0])


def test_official_negative_probability_by_hand():
    inputs = hand_scene()
    matcher = _matcher()
    gts, points, _, p_neg = matcher.bag_pairs(inputs, BatchGTs.of(inputs))  # one image: key = point
    got = {(g, r): p for g, r, p in zip(gts.tolist(), points.tolist(), p_neg.tolist())}
    # A's bag: IoU 0.4 (point 0), 0.5 (1), 0.9 (2, the best), 0.8 (8). The curve
    # (1 - IoU^2) / 0.75 gives 1.12, 1.0, 0.25333, 0.48; min 0.25333, max min(1, 1.12) = 1.
    assert got[0, 0] == 1.0  # IoU < 0.5
    assert got[0, 1] == pytest.approx(1.0, abs=1e-6)  # IoU 0.5: the curve's 1 stays 1
    assert got[0, 2] == pytest.approx(0.0, abs=1e-6)  # the bag's best IoU
    assert got[0, 8] == pytest.approx((0.48 - 0.76 / 3) / (1 - 0.76 / 3), abs=1e-6)  # 0.303571
    assert got[0, 8] == pytest.approx(0.303571, abs=1e-6)
    # C's bag, all IoUs >= 0.5 (1.0, 0.6, 0.8: curve 0, 0.85333, 0.48): the max is below
    # 1, so the min-max rescaling sends the worst to 1 and the best to 0.
    assert got[2, 4] == pytest.approx(0.0, abs=1e-6)
    assert got[2, 5] == pytest.approx(1.0, abs=1e-6)
    assert got[2, 7] == pytest.approx(0.48 / (0.64 / 0.75), abs=1e-6)  # 0.5625
    # B's bag: IoU 0.2, 0.31, 0.9 -> 1, 1, 0.
    assert (got[1, 1], got[1, 2]) == (1.0, 1.0)
    assert got[1, 3] == pytest.approx(0.0, abs=1e-6)


def test_paper_negative_probability_is_the_line_through_half_one_and_095_zero():
    matcher = _matcher("paper")
    iou = torch.tensor([0.3, 0.5, 0.7, 0.95, 0.97])
    p_neg = matcher.negative_probability(iou, torch.zeros(5, dtype=torch.long), 1).tolist()
    # (0.95^2 - IoU^2) / (0.95^2 - 0.5^2), clipped to [0, 1]: 0.7 -> 0.4125 / 0.6525
    assert p_neg == pytest.approx([1.0, 1.0, 0.632184, 0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_negative_weights_and_normalisers_equal_the_reference_loop(variant):
    inputs = hand_scene()
    result = _matcher(variant)(inputs)
    _, _, neg, outside, _ = reference_dw(inputs, variant)
    expected = torch.full((1, 9, NUM_CLASSES), outside)
    for (r, c), value in neg.items():
        expected[0, r, c] = value
    torch.testing.assert_close(result.soft.neg_weight, expected, atol=1e-6, rtol=1e-5)
    assert result.soft.pos_normalizer.item() == 3  # the number of GT boxes
    assert result.soft.neg_normalizer.item() == pytest.approx(sum(1 - v for v in neg.values()), abs=1e-5)


def test_a_point_in_two_bags_of_one_class_keeps_the_smallest_negative_probability():
    inputs = hand_scene()
    result = _matcher()(inputs)
    # Point 2: P_neg 0 for A (its best IoU), 1 for B (IoU 0.31 < 0.5).
    assert result.soft.neg_weight[0, 2, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert result.soft.neg_weight[0, 2, 1].item() == 1.0  # class 1 has no bag there


def test_gt_index_is_the_highest_weighted_gt():
    inputs = hand_scene()
    result = _matcher()(inputs)
    weight, *_ = reference_dw(inputs)
    expected = []
    for r in range(9):
        claims = {g: w for (g, rr), w in weight.items() if rr == r}
        expected.append(max(claims, key=claims.get) if claims else BACKGROUND)
    assert result.gt_index[0].tolist() == expected
    assert expected[6] == BACKGROUND and expected[0] == 0 and expected[3] == 1


def test_equal_weights_go_to_the_smaller_gt_whatever_the_order():
    # The paper variant normalises each bag to sum 1: two GT boxes whose bags hold only
    # the one point of the scene both give it weight 1, and the smaller box takes it.
    inputs = scene([(8, [(16, 16)])], [[[8, 8, 24, 24], [4, 4, 28, 28]]], num_classes=2)
    inputs = dataclasses.replace(inputs, pred_aux=torch.zeros(1, 1),
                                 pred_boxes=torch.tensor([[[10.0, 10, 22, 22]]]))
    boxes = inputs.gt_boxes[0].clone()
    for order in ([0, 1], [1, 0]):
        result = _matcher("paper")(dataclasses.replace(inputs, gt_boxes=[boxes[order]]))
        assert result.soft.pair_weight.tolist() == [1.0, 1.0]
        assert result.gt_index[0].tolist() == [order.index(0)]


def test_best_gt_stage_breaks_ties_by_area_then_index():
    weights = torch.tensor([0.5, 0.5, 0.2, 0.7, 0.7, 0.7])
    points = torch.tensor([0, 0, 1, 2, 2, 2])
    gts = torch.tensor([0, 1, 1, 0, 1, 2])
    areas = torch.tensor([100.0, 50.0, 50.0])  # GT 1 and 2 equally small
    assert best_gt_ties_to_smallest_box(weights, points, gts, areas, 4).tolist() == [1, 1, 1, BACKGROUND]


def test_best_gt_stage_leaves_points_of_nan_weights_in_the_background():
    weights = torch.tensor([float("nan"), float("nan"), 0.3, float("nan")])
    points = torch.tensor([0, 0, 1, 1])
    gts = torch.tensor([0, 1, 0, 1])
    areas = torch.tensor([100.0, 50.0])
    assert best_gt_ties_to_smallest_box(weights, points, gts, areas, 3).tolist() == [BACKGROUND, BACKGROUND, BACKGROUND]


def test_official_weight_sums_lie_between_one_and_e_squared_on_crowded_scenes():
    inputs = crowded_scene(5)
    inputs = dataclasses.replace(inputs, pred_aux=torch.randn(inputs.num_images, inputs.num_points))
    result = _matcher()(inputs)
    image, _, gt = result.soft.pair_index.unbind(dim=1)
    sums = torch.zeros(2, 34).index_put_((image, gt), result.soft.pair_weight, accumulate=True)
    assert ((sums >= 1 - 1e-5) & (sums <= math.e**2 + 1e-4)).all()
    assert ((result.soft.neg_weight >= 0) & (result.soft.neg_weight <= 1)).all()


def test_images_without_gt_and_batching():
    inputs = hand_scene()
    empty = dataclasses.replace(
        scene([(8, STRIDE8), (16, STRIDE16)], [[A, B, C], []], num_classes=NUM_CLASSES),
        gt_classes=[inputs.gt_classes[0], torch.zeros(0, dtype=torch.long)],
        pred_logits=inputs.pred_logits.repeat(2, 1, 1),
        pred_aux=inputs.pred_aux.repeat(2, 1),
        pred_boxes=inputs.pred_boxes.repeat(2, 1, 1),
    )
    alone, batched = _matcher()(inputs), _matcher()(empty)
    assert (batched.gt_index[1] == BACKGROUND).all() and (batched.soft.neg_weight[1] == 1).all()
    assert (batched.soft.pair_index[:, 0] == 0).all()
    torch.testing.assert_close(batched.soft.pair_weight, alone.soft.pair_weight)
    torch.testing.assert_close(batched.soft.neg_weight[0], alone.soft.neg_weight[0])
    assert batched.soft.neg_normalizer == alone.soft.neg_normalizer


def test_needs_the_centerness_logits_and_valid_keys():
    inputs = dataclasses.replace(hand_scene(), pred_aux=None)
    with pytest.raises(ValueError, match="pred_aux is None"):
        _matcher()(inputs)
    with pytest.raises(ValueError, match="MODEL.MATCHER.DW.VARIANT must be one of"):
        _matcher("text")
    with pytest.raises(ValueError, match="MODEL.MATCHER.DW.PRIOR_SIGMA must be > 0"):
        _matcher(PRIOR_SIGMA=0.0)


def test_paper_defaults():
    matcher = _matcher()
    assert isinstance(matcher, DWMatcher)
    assert (matcher.variant, matcher.beta, matcher.mu, matcher.mu_norm, matcher.gamma1) == (
        "official", 5.0, 5.0, 3.0, 2.0)
    assert matcher.prior_sigma == 1.11
    assert _matcher("paper").outside_neg_weight == 0.75


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_three_loss_values_of_the_scene(variant):
    """Matcher and weighted_pairs loss together against the reference loop's weights and
    the loss of dw.md term by term (official factors 0.25, 1.25, 1; the paper's 1, 5, 1)."""
    inputs = hand_scene()
    factors = {"official": (0.25, 1.25), "paper": (1.0, 5.0)}[variant]
    loss = PairwiseWeightedLoss(pos_cls_weight=factors[0], box_weight=factors[1])
    match = _matcher(variant)(inputs)
    losses = loss(inputs.points, inputs.pred_logits, inputs.pred_boxes, inputs.pred_aux,
                  loss.targets(match, inputs.gt_boxes, inputs.gt_classes)).losses

    weight, _, neg, outside, _ = reference_dw(inputs, variant)
    logits, ctr = inputs.pred_logits[0].tolist(), inputs.pred_aux[0].tolist()
    boxes, classes = inputs.gt_boxes[0].tolist(), inputs.gt_classes[0].tolist()
    pred = inputs.pred_boxes[0].tolist()
    score = [[_sigmoid(x) * _sigmoid(ctr[r]) for x in logits[r]] for r in range(9)]
    pos = sum(w * -math.log(score[r][classes[g]]) for (g, r), w in weight.items())
    box = sum(w * (1 - _iou_giou(pred[r], boxes[g])[1]) for (g, r), w in weight.items())
    negative = sum(neg.get((r, c), outside) * score[r][c] ** 2 * -math.log(1 - score[r][c])
                   for r in range(9) for c in range(NUM_CLASSES))
    neg_normalizer = max(sum(1 - v for v in neg.values()), 1.0)
    expected = {"loss_cls_pos": factors[0] * pos / 3, "loss_box_reg": factors[1] * box / 3,
                "loss_cls_neg": negative / neg_normalizer}
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_crowded_batch_in_small_gt_chunks_equals_the_reference_loop_per_image(variant, monkeypatch):
    inputs = crowded_scene(3)
    inputs = dataclasses.replace(inputs, pred_aux=torch.randn(
        inputs.num_images, inputs.num_points, generator=torch.Generator().manual_seed(3)))
    monkeypatch.setattr("lada.matchers.stages.pairs.MAX_CHUNK_ELEMENTS", 64)  # a few GTs per chunk
    result = _matcher(variant)(inputs)
    for image in range(inputs.num_images):
        alone = dataclasses.replace(
            inputs, gt_boxes=[inputs.gt_boxes[image]], gt_classes=[inputs.gt_classes[image]],
            pred_logits=inputs.pred_logits[image:image + 1], pred_boxes=inputs.pred_boxes[image:image + 1],
            pred_aux=inputs.pred_aux[image:image + 1],
        )
        weight, _, neg, outside, _ = reference_dw(alone, variant)
        mine = result.soft.pair_index[:, 0] == image
        got = {(int(g), int(r)): w for (_, r, g), w in zip(result.soft.pair_index[mine].tolist(),
                                                           result.soft.pair_weight[mine].tolist())}
        assert got.keys() == weight.keys()
        for pair, value in weight.items():
            assert got[pair] == pytest.approx(value, rel=1e-4, abs=1e-7), (image, pair)
        expected = torch.full((inputs.num_points, 5), outside)
        for (r, c), value in neg.items():
            expected[r, c] = value
        torch.testing.assert_close(result.soft.neg_weight[image], expected, atol=1e-5, rtol=1e-4)


# Degenerate bags (docs/methods/dw.md, "Negative weights"): D holds one point, E three
# points whose predictions all have IoU 0.8 with it, F two points with IoU 1.0 and 0.6
# (an ordinary bag, the control). One class each, so each bag writes its own slot.
D, E, F = [0.0, 0.0, 16.0, 16.0], [32.0, 0.0, 64.0, 16.0], [0.0, 32.0, 32.0, 48.0]
DEGENERATE_POINTS = [(8, 8), (36, 8), (48, 8), (60, 8), (8, 40), (24, 40), (56, 56)]
DEGENERATE_PRED = [
    D,                                                            # IoU 1.0 with D
    [32, 0, 64, 12.8], [32, 0, 64, 12.8], [32, 0, 64, 12.8],      # IoU 12.8 / 16 = 0.8 with E
    F, [0, 32, 32, 41.6],                                         # IoU 1.0 and 9.6 / 16 = 0.6 with F
    [52, 52, 60, 60],                                             # point 6: in no bag
]


def degenerate_scene():
    inputs = scene([(8, DEGENERATE_POINTS)], [[D, E, F]], num_classes=NUM_CLASSES)
    generator = torch.Generator().manual_seed(5)
    return dataclasses.replace(
        inputs,
        gt_classes=[torch.tensor([0, 1, 2])],
        pred_logits=torch.randn(1, 7, NUM_CLASSES, generator=generator),
        pred_aux=torch.randn(1, 7, generator=generator),
        pred_boxes=torch.tensor([DEGENERATE_PRED]),
    )


def _in_bag_p_neg(result, inputs):
    """P_neg of each bag pair, read from the public result: neg_weight at the slot
    (point, class of its GT)."""
    classes = inputs.gt_classes[0].tolist()
    return {(g, r): result.soft.neg_weight[0, r, classes[g]].item() for g, r in _pairs(result)}


def test_official_degenerate_bags_give_every_point_a_negative_probability_of_one():
    inputs = degenerate_scene()
    result = _matcher()(inputs)
    got = _in_bag_p_neg(result, inputs)
    assert sorted(got) == [(0, 0), (1, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    # D, one point: x = x_min = min(1, x_max) = (1 - 1^2) / 0.75 = 0, so (x - x_min + eps) /
    # (min(1, x_max) - x_min + eps) = eps / eps = 1, although its prediction is perfect.
    assert got[0, 0] == pytest.approx(1.0, abs=1e-6)
    # E, IoUs all 0.8 >= 0.5: x = 0.36 / 0.75 = 0.48 for each, so again eps / eps = 1.
    assert [got[1, r] for r in (1, 2, 3)] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    # F, the control: curve 0 (IoU 1) and 0.64 / 0.75 (IoU 0.6), rescaled to 0 and 1.
    assert got[2, 4] == pytest.approx(0.0, abs=1e-6)
    assert got[2, 5] == pytest.approx(1.0, abs=1e-6)


def test_paper_variant_has_no_degenerate_bags():
    inputs = degenerate_scene()
    got = _in_bag_p_neg(_matcher("paper")(inputs), inputs)
    # (0.95^2 - IoU^2) / (0.95^2 - 0.5^2) clipped to [0, 1], pair by pair: IoU 1 -> 0,
    # IoU 0.8 -> 0.2625 / 0.6525 = 0.402299, IoU 0.6 -> 0.5425 / 0.6525 = 0.831418.
    assert got[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert [got[1, r] for r in (1, 2, 3)] == pytest.approx([0.402299] * 3, abs=1e-6)
    assert got[2, 4] == pytest.approx(0.0, abs=1e-6)
    assert got[2, 5] == pytest.approx(0.831418, abs=1e-6)


def test_focal_alpha_is_the_matchers_own_key():
    # The paper variant's outside-bag weight 1 - alpha reads MODEL.MATCHER.DW.FOCAL_ALPHA
    # (default 0.25, Eq. 12's FL), never the detector's focal loss key.
    assert small_cfg().MODEL.MATCHER.DW.FOCAL_ALPHA == 0.25
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "dw", "MODEL.MATCHER.DW.VARIANT": "paper",
                       "MODEL.FCOS.FOCAL_LOSS_ALPHA": 0.5})
    assert build_matcher(cfg).outside_neg_weight == 0.75
    cfg.MODEL.MATCHER.DW.FOCAL_ALPHA = 0.4
    assert build_matcher(cfg).outside_neg_weight == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"MODEL.MATCHER.DW.FOCAL_ALPHA must be in \[0, 1\]"):
        _matcher("paper", FOCAL_ALPHA=1.5)
