"""The weighted_pairs loss (docs/methods/dw.md) on hand-made soft assignments, against plain
per-term loops; refusal of the wrong kind of assignment; fp32 and finiteness."""
import dataclasses
import math

import pytest
import torch
from conftest import small_cfg

from lada.matchers import MatchResult, PairWeights, ResultKind
from lada.modeling.losses import (
    DenseDetectionLoss,
    PairwiseWeightedLoss,
    build_loss,
    consumed_kinds,
)
from lada.modeling.losses import pairwise

GT_BOXES = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 5.0, 30.0, 25.0]])]
GT_CLASSES = [torch.tensor([0, 1])]
PRED_BOXES = torch.tensor([[[2.0, 1.0, 18.0, 22.0], [8.0, 6.0, 26.0, 20.0], [0.0, 0.0, 5.0, 5.0]]])
CLS_LOGITS = torch.tensor([[[0.5, -1.0], [1.5, 0.2], [-2.0, -3.0]]])
AUX_LOGITS = torch.tensor([[0.3, -0.4, 1.0]])
PAIRS = [(0, 0, 0, 0.6), (0, 1, 0, 0.3), (0, 1, 1, 1.2)]  # (image, point, gt, weight)
NEG = [[[1.0, 0.5], [0.2, 0.9], [1.0, 1.0]]]


def _match(pos_normalizer=2.0, neg_normalizer=2.5):
    return MatchResult(
        gt_index=torch.tensor([[0, 1, -1]]),
        soft=PairWeights(
            pair_index=torch.tensor([p[:3] for p in PAIRS]),
            pair_weight=torch.tensor([p[3] for p in PAIRS]),
            neg_weight=torch.tensor(NEG),
            pos_normalizer=torch.tensor(pos_normalizer),
            neg_normalizer=torch.tensor(neg_normalizer),
        ),
    )


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _giou_loss(pred, gt):
    def area(b):
        return max(b[2] - b[0], 0) * max(b[3] - b[1], 0)

    inter = area([max(pred[0], gt[0]), max(pred[1], gt[1]), min(pred[2], gt[2]), min(pred[3], gt[3])])
    union = area(pred) + area(gt) - inter
    hull = area([min(pred[0], gt[0]), min(pred[1], gt[1]), max(pred[2], gt[2]), max(pred[3], gt[3])])
    return 1 - (inter / union - (hull - union) / hull)


def _expected(pos_norm, neg_norm, cls_w=0.25, box_w=1.25, neg_w=1.0, power=2.0):
    """The three terms of docs/methods/dw.md ("Loss"), one at a time."""
    cls, aux, boxes = CLS_LOGITS[0].tolist(), AUX_LOGITS[0].tolist(), PRED_BOXES[0].tolist()
    gts, classes = GT_BOXES[0].tolist(), GT_CLASSES[0].tolist()
    score = [[_sigmoid(c) * _sigmoid(aux[r]) for c in cls[r]] for r in range(3)]
    pos = box = 0.0
    for _, r, g, w in PAIRS:
        pos += w * -math.log(score[r][classes[g]])
        box += w * _giou_loss(boxes[r], gts[g])
    neg = sum(NEG[0][r][c] * score[r][c] ** power * -math.log(1 - score[r][c])
              for r in range(3) for c in range(2))
    return {"loss_cls_pos": cls_w * pos / pos_norm, "loss_box_reg": box_w * box / pos_norm,
            "loss_cls_neg": neg_w * neg / neg_norm}


def _output(loss, match):
    targets = loss.targets(match, GT_BOXES, GT_CLASSES)
    points = torch.zeros(3, 2)
    return loss(points, CLS_LOGITS, PRED_BOXES, AUX_LOGITS, targets)


def _losses(loss, match):
    return _output(loss, match).losses


def test_three_terms_equal_the_per_term_loop():
    losses = _losses(PairwiseWeightedLoss(), _match())
    expected = _expected(2.0, 2.5)
    assert losses.keys() == expected.keys()
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name


def test_paper_factors_and_normalisers_clamped_at_one():
    loss = PairwiseWeightedLoss(pos_cls_weight=1.0, box_weight=5.0, neg_weight=1.0, neg_power=3.0)
    output = _output(loss, _match(pos_normalizer=0.0, neg_normalizer=0.3))
    losses = output.losses
    expected = _expected(1.0, 1.0, cls_w=1.0, box_w=5.0, power=3.0)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name
    assert {k: v.item() for k, v in output.normalizers.items()} == {
        "normalizer": 1.0, "normalizer_neg": 1.0}


def test_normalisers_are_averaged_over_workers(monkeypatch):
    """Both normalisers go through the all-worker mean (here a stand-in for two workers
    whose other worker had normalisers 6 and 7.5)."""
    others = {2.0: 6.0, 2.5: 7.5}
    monkeypatch.setattr(pairwise, "all_reduce_mean", lambda x: (x + others[x.item()]) / 2)
    losses = _losses(PairwiseWeightedLoss(), _match())
    for name, value in _expected(4.0, 5.0).items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name


def test_gradients_and_detached_weights():
    cls, aux, boxes = (x.clone().requires_grad_() for x in (CLS_LOGITS, AUX_LOGITS, PRED_BOXES))
    match = _match()
    match.soft.pair_weight.requires_grad_()
    loss = PairwiseWeightedLoss()
    targets = loss.targets(match, GT_BOXES, GT_CLASSES)
    assert not targets.weight.requires_grad
    total = sum(loss(torch.zeros(3, 2), cls, boxes, aux, targets).losses.values())
    total.backward()
    assert match.soft.pair_weight.grad is None
    assert all(torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in (cls, aux, boxes))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    cls = torch.tensor([[[50.0, -50.0], [30.0, 40.0], [-50.0, -50.0]]], dtype=dtype, requires_grad=True)
    aux = torch.tensor([[50.0, 50.0, -50.0]], dtype=dtype, requires_grad=True)
    loss = PairwiseWeightedLoss()
    targets = loss.targets(_match(), GT_BOXES, GT_CLASSES)
    losses = loss(torch.zeros(3, 2), cls, PRED_BOXES.to(dtype), aux, targets).losses
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(cls.grad).all() and torch.isfinite(aux.grad).all()
    # By hand: s rounds to 1 in float32 wherever both logits are >= 30, where
    # 1 - s = sigmoid(-a) + sigmoid(a) sigmoid(-b) is about e^-a + e^-b: -ln(1 - s) is
    # 50 - ln 2 at (50, 50), 30 at (30, 50), 40 at (40, 50); with the negative weights
    # 1, 0.2, 0.9 and s^2 = 1, divided by 2.5 (the rest is below 1e-20).
    expected = (50 - math.log(2) + 0.2 * 30 + 0.9 * 40) / 2.5
    assert losses["loss_cls_neg"].item() == pytest.approx(expected, rel=1e-4)


def test_each_loss_declares_the_kinds_of_result_it_consumes():
    """The declarations the model's construction-time fit check and MODEL.FCOS.LOSS auto
    read (tests/modeling/test_meta_arch.py: the refusals)."""
    assert consumed_kinds(PairwiseWeightedLoss()) == {ResultKind.PAIRS}
    assert consumed_kinds(DenseDetectionLoss) == {ResultKind.HARD, ResultKind.QUALITY}
    with pytest.raises(TypeError, match="loss class Module must declare CONSUMES"):
        consumed_kinds(torch.nn.Module())


def test_soft_fields_come_together_with_consistent_shapes():
    with pytest.raises(TypeError, match="missing 4 required"):
        PairWeights(pair_index=torch.zeros(0, 3))
    match = _match()
    with pytest.raises(ValueError, match=r"neg_weight must be \(N, R, C\)"):
        MatchResult(gt_index=match.gt_index, soft=dataclasses.replace(match.soft, neg_weight=torch.zeros(1, 4, 2)))
    with pytest.raises(ValueError, match=r"pair_weight must be \(P,\)"):
        dataclasses.replace(match.soft, pair_weight=torch.zeros(2))


def test_config_selects_the_loss_and_its_factors():
    assert isinstance(build_loss(small_cfg()), DenseDetectionLoss)
    loss = build_loss(small_cfg(**{"MODEL.FCOS.LOSS": "weighted_pairs"}))
    assert isinstance(loss, PairwiseWeightedLoss)
    assert (loss.weights, loss.neg_power) == ({"cls_pos": 0.25, "box": 1.25, "cls_neg": 1.0}, 2.0)
    with pytest.raises(ValueError, match="MODEL.FCOS.WEIGHTED_PAIRS.BOX_WEIGHT must be >= 0"):
        build_loss(small_cfg(**{"MODEL.FCOS.LOSS": "weighted_pairs",
                                "MODEL.FCOS.WEIGHTED_PAIRS.BOX_WEIGHT": -1.0}))


def test_auto_loss_is_the_one_that_consumes_the_matchers_results():
    from lada.matchers import MATCHER_REGISTRY

    soft_matchers = {"dw"}  # the methods whose MatchResult carries pairwise weights
    for name, _ in MATCHER_REGISTRY:
        loss = build_loss(small_cfg(**{"MODEL.MATCHER.NAME": name}))  # LOSS left at auto
        expected = PairwiseWeightedLoss if name in soft_matchers else DenseDetectionLoss
        assert type(loss) is expected, name
    explicit = small_cfg(**{"MODEL.MATCHER.NAME": "dw", "MODEL.FCOS.LOSS": "dense"})
    assert isinstance(build_loss(explicit), DenseDetectionLoss)  # an explicit value wins
    with pytest.raises(KeyError, match="unknown matcher 'nope'"):
        build_loss(small_cfg(**{"MODEL.MATCHER.NAME": "nope"}))
