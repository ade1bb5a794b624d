"""YOLOX's losses as options of the dense loss (the simota detector), by hand on two
points of one image: point 0 positive for GT [0, 0, 10, 20] of class 0 with predicted box
[0, 0, 10, 10] (IoU 0.5), point 1 background."""
import math

import pytest
import torch
from conftest import small_cfg

from lada.modeling.losses import DenseDetectionLoss, build_loss
from lada.modeling.losses.targets import DenseTargets

GT = [0.0, 0.0, 10.0, 20.0]
PRED = [[[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 40.0, 40.0]]]
POINTS = torch.tensor([[5.0, 5.0], [35.0, 35.0]])
TARGETS = DenseTargets(labels=torch.tensor([[0, 2]]), boxes=torch.tensor([[GT, [0.0] * 4]]),
                       foreground=torch.tensor([[True, False]]))
LOGITS = torch.tensor([[[0.5, -1.0], [3.0, 2.0]]])  # point 1's high logits cost nothing
AUX = torch.tensor([[1.5, -0.5]])


def _bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _losses(**options):
    loss = DenseDetectionLoss(num_classes=2, normalizer="num_pos", **options)
    return loss(POINTS, LOGITS, torch.tensor(PRED, requires_grad=True), AUX, TARGETS).losses


def test_objectness_is_trained_at_every_point():
    losses = _losses(aux_branch="objectness")
    assert losses["loss_objectness"].item() == pytest.approx(_bce(1.5, 1) + _bce(-0.5, 0), rel=1e-6)


def test_bce_iou_trains_the_positives_only_towards_one_hot_times_iou():
    losses = _losses(cls_loss="bce_iou")
    assert losses["loss_cls"].item() == pytest.approx(_bce(0.5, 0.5) + _bce(-1.0, 0), rel=1e-6)


def test_iou_squared_box_loss_and_its_gradient():
    pred = torch.tensor(PRED, requires_grad=True)
    loss = DenseDetectionLoss(num_classes=2, normalizer="num_pos", box_loss="iou_squared")
    losses = loss(POINTS, LOGITS, pred, AUX, TARGETS).losses
    assert losses["loss_box_reg"].item() == pytest.approx(1 - 0.5**2, rel=1e-6)
    losses["loss_box_reg"].backward()
    # d(1 - u^2)/dy1 = -2u du/dy1, u = 10 y1 / 200 below y1 = 20: -2 * 0.5 * 0.05
    assert pred.grad[0, 0, 3].item() == pytest.approx(-0.05, rel=1e-5)
    assert (pred.grad[0, 1] == 0).all()


def test_options_from_the_config_and_bad_values():
    cfg = small_cfg(**{"MODEL.FCOS.AUX_BRANCH": "objectness", "MODEL.FCOS.CLS_LOSS": "bce_iou",
                       "MODEL.FCOS.BOX_LOSS": "iou_squared"})
    loss = build_loss(cfg)
    assert (loss.aux_branch, loss.cls_loss, loss.box_loss) == ("objectness", "bce_iou", "iou_squared")
    cfg.MODEL.FCOS.BOX_LOSS = "ciou"
    with pytest.raises(ValueError, match="MODEL.FCOS.BOX_LOSS must be one of"):
        build_loss(cfg)
