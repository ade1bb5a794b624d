"""A matcher's per-positive quality target (``MatchResult.quality``) in the dense loss:
QFL / VFL's soft class target and the ``quality`` box-loss weighting use it when a result
carries one and the IoU of the predicted box with its GT otherwise. Expected values by
hand (the QFL formula written out, torchvision's GIoU loss)."""
import math

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss

from lada.matchers import MatchResult
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.losses.targets import gather_targets, iou_quality

# One image, three points: two positives (GT 0 of class 1, GT 1 of class 0), one background.
GT_BOXES = [torch.tensor([[0.0, 0, 20, 20], [10, 5, 30, 25]])]
GT_CLASSES = [torch.tensor([1, 0])]
GT_INDEX = torch.tensor([[0, 1, -1]])
POINTS = torch.tensor([[10.0, 10], [20, 15], [50, 50]])
PRED_BOXES = torch.tensor([[[0.0, 0, 10, 20], [10, 5, 30, 25], [40, 40, 60, 60]]])  # IoU 0.5, 1
LOGITS = torch.tensor([[[0.3, -0.2], [1.0, 0.5], [-1.0, 2.0]]])
AUX = torch.zeros(1, 3)
QUALITY = torch.tensor([[0.25, 0.8, 0.0]])


def _qfl_by_hand(targets):
    """QFL written out: -|y - s|^2 (y ln s + (1 - y) ln(1 - s)) summed over points, classes."""
    total = 0.0
    for point in range(3):
        for cls in range(2):
            s = 1 / (1 + math.exp(-LOGITS[0, point, cls].item()))
            y = targets.get((point, cls), 0.0)
            total += -abs(y - s) ** 2 * (y * math.log(s) + (1 - y) * math.log(1 - s))
    return total


def _loss(quality, **options):
    loss = DenseDetectionLoss(num_classes=2, normalizer="num_pos", **options)
    match = MatchResult(gt_index=GT_INDEX, quality=quality)
    return loss(POINTS, LOGITS, PRED_BOXES, AUX, loss.targets(match, GT_BOXES, GT_CLASSES)).losses


def test_targets_keep_the_quality_detached():
    quality = QUALITY.clone().requires_grad_(True)
    targets = gather_targets(MatchResult(gt_index=GT_INDEX, quality=quality), GT_BOXES,
                             GT_CLASSES, num_classes=2)
    assert not targets.quality.requires_grad
    assert iou_quality(targets, PRED_BOXES).tolist() == [0.25, pytest.approx(0.8)]
    without = gather_targets(MatchResult(gt_index=GT_INDEX), GT_BOXES, GT_CLASSES, num_classes=2)
    assert without.quality is None
    assert iou_quality(without, PRED_BOXES).tolist() == [0.5, 1.0]


@pytest.mark.parametrize("quality, soft", [
    (QUALITY, {(0, 1): 0.25, (1, 0): 0.8}),  # the matcher's target
    (None, {(0, 1): 0.5, (1, 0): 1.0}),      # the IoU of the predicted boxes
])
def test_qfl_trains_towards_the_quality_target(quality, soft):
    losses = _loss(quality, cls_loss="qfl")
    assert losses["loss_cls"].item() == pytest.approx(_qfl_by_hand(soft) / 2, rel=1e-5)


@pytest.mark.parametrize("quality, weights", [(QUALITY, [0.25, 0.8]), (None, [0.5, 1.0])])
def test_quality_box_weighting(quality, weights):
    losses = _loss(quality, box_weighting="quality")
    giou = generalized_box_iou_loss(PRED_BOXES[0, :2], GT_BOXES[0])  # 0.5 and 0
    expected = (giou * torch.tensor(weights)).sum() / sum(weights)
    assert losses["loss_box_reg"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["loss_box_reg"].item() > 0
