"""The MODEL.FCOS options of TOOD's and RTMDet's detectors (docs/detector.md): the
``quality_sum`` normalisers and their floors, TOOD's initial losses on a step without a
quality target (``LOSS_WITHOUT_QUALITY focal_centerness``) and the head without an
auxiliary branch (``AUX_BRANCH none``) in training and inference (its export:
tests/test_export.py). Expected
values by hand: the losses written out with torchvision's focal and GIoU losses."""
import math

import pytest
import torch
from conftest import make_batch, small_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from lada.matchers import MatchResult
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.losses.targets import centerness_targets

# One image, three points: two positives (GT 0 of class 1, GT 1 of class 0), one background.
GT_BOXES = [torch.tensor([[0.0, 0, 20, 20], [10, 5, 30, 25]])]
GT_CLASSES = [torch.tensor([1, 0])]
GT_INDEX = torch.tensor([[0, 1, -1]])
POINTS = torch.tensor([[8.0, 10], [20, 15], [50, 50]])
PRED_BOXES = torch.tensor([[[0.0, 0, 10, 20], [12, 5, 30, 25], [40, 40, 60, 60]]])
LOGITS = torch.tensor([[[0.3, -0.2], [1.0, 0.5], [-1.0, 2.0]]])


def _losses(quality, **options):
    loss = DenseDetectionLoss(num_classes=2, aux_branch="none", cls_loss="qfl",
                              box_weighting="quality", **options)
    match = MatchResult(gt_index=GT_INDEX, quality=quality)
    return loss(POINTS, LOGITS, PRED_BOXES, None, loss.targets(match, GT_BOXES, GT_CLASSES))


def _qfl(targets):
    """QFL summed over points and classes, y the targets {(point, class): y}."""
    total = 0.0
    for point in range(3):
        for cls in range(2):
            s = 1 / (1 + math.exp(-LOGITS[0, point, cls].item()))
            y = targets.get((point, cls), 0.0)
            total += -abs(y - s) ** 2 * (y * math.log(s) + (1 - y) * math.log(1 - s))
    return total


GIOU = generalized_box_iou_loss(PRED_BOXES[0, :2], GT_BOXES[0])


@pytest.mark.parametrize("normalizer", ["quality_sum", "quality_sum_min1"])
@pytest.mark.parametrize("values, divisor", [
    ((0.25, 0.8), {"quality_sum": 1.05, "quality_sum_min1": 1.05}),
    ((0.1, 0.3), {"quality_sum": 0.4, "quality_sum_min1": 1.0}),    # RTMDet's clamp at 1
    ((1e-13, 0.0), {"quality_sum": 1.0, "quality_sum_min1": 1.0}),  # TOOD's floor
])
def test_quality_sum_normalisers(normalizer, values, divisor):
    quality = torch.tensor([[*values, 0.0]])
    output = _losses(quality, normalizer=normalizer)
    expected = divisor[normalizer]
    assert output.normalizers["normalizer"].item() == pytest.approx(expected, rel=1e-6)
    soft = {(0, 1): values[0], (1, 0): values[1]}
    assert output.losses["loss_cls"].item() == pytest.approx(_qfl(soft) / expected, rel=1e-5)
    box = (GIOU * torch.tensor(values)).sum().item() / expected
    assert output.losses["loss_box_reg"].item() == pytest.approx(box, rel=1e-5, abs=1e-12)
    assert set(output.losses) == {"loss_cls", "loss_box_reg"}  # no auxiliary branch


def test_a_step_without_quality_trains_toods_initial_losses():
    output = _losses(None, normalizer="quality_sum", without_quality="focal_centerness")
    one_hot = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    focal = sigmoid_focal_loss(LOGITS[0], one_hot, alpha=0.25, gamma=2.0).sum().item()
    assert output.normalizers["normalizer"].item() == 2.0  # the positive count
    assert output.losses["loss_cls"].item() == pytest.approx(focal / 2, rel=1e-5)
    centerness = centerness_targets(POINTS[:2], GT_BOXES[0])  # 0.577, 0.816
    box = (GIOU * centerness).sum() / centerness.sum()
    assert output.losses["loss_box_reg"].item() == pytest.approx(box.item(), rel=1e-5)


def test_a_step_without_quality_uses_the_iou_by_default():
    output = _losses(None, normalizer="quality_sum")
    iou = [0.5, 0.9]  # of the predicted boxes with their GTs
    assert output.normalizers["normalizer"].item() == pytest.approx(1.4, rel=1e-6)
    assert output.losses["loss_cls"].item() == pytest.approx(
        _qfl({(0, 1): iou[0], (1, 0): iou[1]}) / 1.4, rel=1e-5)


def test_aux_target_weighting_needs_an_auxiliary_branch():
    with pytest.raises(ValueError, match="BOX_LOSS_WEIGHTING aux_target needs an auxiliary branch"):
        DenseDetectionLoss(num_classes=2, aux_branch="none", box_weighting="aux_target")
    with pytest.raises(ValueError, match="MODEL.FCOS.LOSS_WITHOUT_QUALITY must be one of"):
        DenseDetectionLoss(num_classes=2, without_quality="focal")


def test_a_head_without_auxiliary_branch_trains_and_scores_sigmoid_cls():
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "dsl", "MODEL.FCOS.AUX_BRANCH": "none",
                       "MODEL.FCOS.BOX_LOSS_WEIGHTING": "quality",
                       "MODEL.FCOS.NORMALIZER": "quality_sum_min1"})
    model = build_model(cfg)
    assert model.head.aux_pred is None
    assert not any("aux_pred" in name for name, _ in model.named_parameters())
    with EventStorage(0):
        losses = model(make_batch([3, 2]))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    logits = [torch.randn(6, 5), torch.randn(2, 5)]
    scores, thresh = model._test_scores(logits, None)
    assert thresh == cfg.MODEL.FCOS.SCORE_THRESH_TEST
    assert all(torch.equal(s, x.sigmoid()) for s, x in zip(scores, logits))


def test_head_and_loss_must_agree_on_the_auxiliary_branch():
    from lada.modeling.head import FCOSHead
    from lada.modeling.meta_arch import LadaFCOS

    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "dsl"})
    arguments = LadaFCOS.from_config(cfg)
    shapes = [arguments["backbone"].output_shape()[f] for f in cfg.MODEL.FCOS.IN_FEATURES]
    arguments["head"] = FCOSHead(cfg, shapes)  # with its aux conv
    arguments["loss"] = DenseDetectionLoss(num_classes=5, aux_branch="none")
    with pytest.raises(ValueError, match="the head has auxiliary branch but the loss"):
        LadaFCOS(**arguments)

