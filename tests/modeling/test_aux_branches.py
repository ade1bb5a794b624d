"""Targets of the auxiliary branch, by hand: the ``giou`` branch (MMMC section 4.1) is
trained with BCE against max(GIoU(prediction, GT), 0)."""
import math

import pytest
import torch

from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.losses.targets import DenseTargets

GT = [0.0, 0.0, 10.0, 20.0]


@pytest.mark.parametrize("pred, target", [
    ([0.0, 0.0, 10.0, 10.0], 0.5),  # inside the GT: IoU 100 / 200, enclosing box = GT
    ([0.0, 30.0, 10.0, 40.0], 0.0),  # disjoint: GIoU = 0 - 200 / 400 < 0 -> 0
])
def test_giou_branch_target(pred, target):
    loss = DenseDetectionLoss(num_classes=2, aux_branch="giou", normalizer="num_pos")
    targets = DenseTargets(labels=torch.tensor([[0]]), boxes=torch.tensor([[GT]]),
                           foreground=torch.tensor([[True]]))
    logit = 1.0
    losses = loss(torch.tensor([[5.0, 5.0]]), torch.zeros(1, 1, 2), torch.tensor([[pred]]),
                  torch.tensor([[logit]]), targets).losses
    p = 1 / (1 + math.exp(-logit))
    expected = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    assert losses["loss_giou"].item() == pytest.approx(expected, rel=1e-6)
