"""The loss contract: a loss returns its normalisers in its ``LossOutput`` and keeps no
per-step result on the module."""
import pytest
import torch

from lada.modeling.losses import DenseDetectionLoss, LossOutput
from lada.modeling.losses.targets import DenseTargets

# Two positives of one image: normaliser 2 with "num_pos" (one worker).
TARGETS = DenseTargets(
    labels=torch.tensor([[0, 2, 1]]),
    boxes=torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 20.0, 10.0]]]),
    foreground=torch.tensor([[True, False, True]]),
)
POINTS = torch.tensor([[5.0, 5.0], [6.0, 6.0], [5.0, 5.0]])
PRED_BOXES = torch.tensor([[[0.0, 0.0, 10.0, 5.0], [3.0, 3.0, 9.0, 9.0], [0.0, 0.0, 10.0, 10.0]]])


@pytest.mark.parametrize("normalizer, expected", [
    ("num_pos", 2.0),
    ("ema", 0.9 * 300 + 0.1 * 2),  # the moving average's first step from 300
])
def test_dense_loss_returns_its_normaliser_and_stores_nothing(normalizer, expected):
    loss = DenseDetectionLoss(num_classes=2, normalizer=normalizer)
    attributes = dict(vars(loss))
    output = loss(POINTS, torch.zeros(1, 3, 2), PRED_BOXES, torch.zeros(1, 3), TARGETS)
    assert isinstance(output, LossOutput)
    assert set(output.losses) == {"loss_cls", "loss_box_reg", "loss_centerness"}
    assert output.normalizers.keys() == {"normalizer"}
    assert output.normalizers["normalizer"].item() == pytest.approx(expected)
    assert not output.normalizers["normalizer"].requires_grad
    assert vars(loss).keys() == attributes.keys()
