"""QFL and VFL (docs/methods/README.md) against the papers' formulas evaluated by hand on plain
floats, their numerical range, and the ``MODEL.FCOS.CLS_LOSS`` option of the loss."""
import math

import pytest
import torch
from conftest import make_batch, small_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from lada.modeling.losses.classification import (
    quality_focal_loss,
    soft_class_targets,
    varifocal_loss,
)
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.losses.targets import DenseTargets


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _qfl(x, y, beta=2.0):
    """GFL: -|y - s|^beta ((1 - y) log(1 - s) + y log(s))."""
    s = _sigmoid(x)
    return -abs(y - s) ** beta * ((1 - y) * math.log(1 - s) + y * math.log(s))


def _vfl(x, q, alpha=0.75, gamma=2.0):
    """VarifocalNet: -q (q log p + (1 - q) log(1 - p)) if q > 0, else
    -alpha p^gamma log(1 - p)."""
    p = _sigmoid(x)
    if q > 0:
        return -q * (q * math.log(p) + (1 - q) * math.log(1 - p))
    return -alpha * p**gamma * math.log(1 - p)


CASES = [(0.5, 0.7), (-2.0, 0.0), (3.0, 0.2), (0.0, 1.0), (-1.0, 0.9), (1.5, 0.0)]


def test_qfl_by_hand():
    logits = torch.tensor([x for x, _ in CASES])
    targets = torch.tensor([y for _, y in CASES])
    # e.g. x = 0.5, y = 0.7: s = 0.622459, |y - s|^2 = 0.006012,
    # -(0.3 log(0.377541) + 0.7 log(0.622459)) = 0.624071, QFL = 0.003752.
    assert _qfl(0.5, 0.7) == pytest.approx(0.0037520, abs=1e-6)
    expected = torch.tensor([_qfl(x, y) for x, y in CASES])
    torch.testing.assert_close(quality_focal_loss(logits, targets), expected)
    expected = torch.tensor([_qfl(x, y, beta=1.0) for x, y in CASES])
    torch.testing.assert_close(quality_focal_loss(logits, targets, beta=1.0), expected)


def test_vfl_by_hand():
    logits = torch.tensor([x for x, _ in CASES])
    targets = torch.tensor([q for _, q in CASES])
    # e.g. x = -2, q = 0: p = 0.119203, 0.75 p^2 (-log(1 - p)) = 0.75 * 0.014209 * 0.126928
    # = 0.0013527.
    assert _vfl(-2.0, 0.0) == pytest.approx(0.0013527, abs=1e-7)
    expected = torch.tensor([_vfl(x, q) for x, q in CASES])
    torch.testing.assert_close(varifocal_loss(logits, targets), expected)
    expected = torch.tensor([_vfl(x, q, alpha=0.25, gamma=1.0) for x, q in CASES])
    torch.testing.assert_close(varifocal_loss(logits, targets, alpha=0.25, gamma=1.0), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("loss", [quality_focal_loss, varifocal_loss])
def test_finite_at_saturated_logits_in_every_precision(loss, dtype):
    logits = torch.tensor([50.0, -50.0, 50.0, -50.0, 50.0], dtype=dtype, requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=dtype)
    values = loss(logits, targets)
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    values.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # -log(1 - sigmoid(50)) = -log(sigmoid(-50)) = 50 + log(1 + e^-50): a confident
    # wrong prediction costs about 50 (scale 1 for QFL, 0.75 for VFL's negative),
    # not inf; a confident right one about 0.
    wrong = 50.0 + math.log1p(math.exp(-50.0))
    if loss is quality_focal_loss:
        expected = [wrong, wrong, 0.0, 0.0, 0.25 * 0.5 * wrong]
    else:
        expected = [0.75 * wrong, wrong, 0.0, 0.0, 0.5 * 0.5 * wrong]
    torch.testing.assert_close(values, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_soft_targets_put_the_quality_at_the_class():
    labels = torch.tensor([[2, 0, 3], [1, 3, 3]])  # 3 = background (C = 3)
    foreground = labels < 3
    targets = soft_class_targets(labels, foreground, torch.tensor([0.5, 0.25, 0.75]), 3)
    expected = torch.zeros(2, 3, 3)
    expected[0, 0, 2], expected[0, 1, 0], expected[1, 0, 1] = 0.5, 0.25, 0.75
    assert torch.equal(targets, expected)
    with pytest.raises(ValueError, match="one value per foreground point"):
        soft_class_targets(labels, foreground, torch.tensor([0.5]), 3)


def _targets():
    """One image, three points, two classes: point 0 of class 1 with GT [0, 0, 10, 10],
    point 2 of class 0 with GT [0, 0, 20, 10]; point 1 background."""
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 20.0, 10.0]]])
    return DenseTargets(
        labels=torch.tensor([[1, 2, 0]]),
        boxes=boxes,
        foreground=torch.tensor([[True, False, True]]),
    )


# Predicted boxes: [0, 0, 10, 5] (IoU 1/2 with its GT), anything, [0, 0, 10, 10] (IoU 1/2).
PRED_BOXES = torch.tensor([[[0.0, 0.0, 10.0, 5.0], [3.0, 3.0, 9.0, 9.0], [0.0, 0.0, 10.0, 10.0]]])
LOGITS = torch.tensor([[[0.3, -1.2], [-2.0, -3.0], [1.1, 0.4]]])


@pytest.mark.parametrize("name, formula", [("qfl", _qfl), ("vfl", _vfl)])
def test_loss_computes_the_iou_target(name, formula):
    loss = DenseDetectionLoss(num_classes=2, cls_loss=name, aux_branch="iou", normalizer="num_pos")
    points = torch.tensor([[5.0, 5.0], [6.0, 6.0], [5.0, 5.0]])
    values = loss(points, LOGITS, PRED_BOXES, torch.zeros(1, 3), _targets()).losses
    logits = LOGITS[0].tolist()
    # Soft targets: point 0 class 1 = 1/2, point 2 class 0 = 1/2, all else 0; 2 positives.
    soft = [[0.0, 0.5], [0.0, 0.0], [0.5, 0.0]]
    expected = sum(formula(x, y) for row, ys in zip(logits, soft) for x, y in zip(row, ys)) / 2
    assert values["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cls_loss", ["qfl", "vfl"])
@pytest.mark.parametrize("matcher", ["atss", "fcos"])
def test_any_matcher_trains_with_quality_losses(matcher, cls_loss):
    # Table I "ATSS+QFL" / "ATSS+VFL": the IoU targets of any matcher.
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": matcher, "MODEL.FCOS.CLS_LOSS": cls_loss})
    model = build_model(cfg)
    with EventStorage(0):
        losses = model(make_batch([0, 5, 2]))
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_cls"] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
