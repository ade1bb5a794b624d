"""Inverted predicted boxes (x1 < x0 or y1 < y0, which a linear box head can output) count
as empty boxes at their (x0, y0) corner, as the official PAA code clamps them: IoU 0 and a
GIoU loss of at most 2, in the anchor scores and in the training losses."""
import torch

from lada.geometry import clamp_inverted, paired_iou
from lada.matchers.stages.scores import anchor_losses
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.losses.targets import DenseTargets

GT = torch.tensor([[20.0, 20.0, 40.0, 40.0]])
# Inverted in both axes: clamped to the empty box at (10, 10). The enclosing box of it and
# the GT is [10, 10, 40, 40] (area 900), the union is the GT's 400: GIoU = 0 - 500 / 900.
INVERTED = torch.tensor([[10.0, 10.0, 0.0, 0.0]])
EXPECTED_GIOU_LOSS = 1 + 500 / 900


def test_clamp_and_iou():
    assert clamp_inverted(INVERTED).tolist() == [[10.0, 10.0, 10.0, 10.0]]
    overlapping = torch.tensor([[35.0, 35.0, 25.0, 25.0]])  # would overlap the GT if flipped
    assert paired_iou(overlapping, GT).item() == 0.0
    assert paired_iou(clamp_inverted(overlapping), GT).item() == 0.0


def test_anchor_score_of_an_inverted_prediction():
    _, reg = anchor_losses(torch.zeros(1, 3), INVERTED, GT, torch.tensor([1]))
    assert reg.item() == torch.tensor(EXPECTED_GIOU_LOSS).item()
    _, reg_iou = anchor_losses(torch.zeros(1, 3), INVERTED, GT, torch.tensor([1]), reg_loss="iou")
    assert reg_iou.item() == 1.0


def test_training_loss_of_an_inverted_prediction_is_at_most_two():
    loss = DenseDetectionLoss(num_classes=3, aux_branch="iou", normalizer="num_pos")
    far_inverted = torch.tensor([[[500.0, 500.0, -500.0, -500.0]]], requires_grad=True)
    targets = DenseTargets(labels=torch.tensor([[1]]), boxes=GT[None], foreground=torch.tensor([[True]]))
    for boxes, expected in ((INVERTED[None], EXPECTED_GIOU_LOSS), (far_inverted, None)):
        losses = loss(torch.tensor([[30.0, 30.0]]), torch.zeros(1, 1, 3), boxes, torch.zeros(1, 1), targets).losses
        value = losses["loss_box_reg"].item()
        assert 0 <= value <= 2
        if expected is not None:
            assert abs(value - expected) < 1e-6
    losses["loss_box_reg"].backward()
    assert torch.isfinite(far_inverted.grad).all()
