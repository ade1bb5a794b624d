"""MMMC's receptive-field adaptor: a deformable conv that starts as the plain conv, learns
its offsets, and loads checkpoints of models without it."""
import logging

import pytest
import torch
from conftest import make_batch, small_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from torch import nn

from lada.modeling.rfa import DeformableConv3x3, finite_offsets


def test_zero_offsets_equal_the_plain_conv_forward_and_backward():
    conv = nn.Conv2d(6, 5, kernel_size=3, padding=1)
    deform = DeformableConv3x3.from_conv(conv)
    x = torch.randn(2, 6, 9, 7)
    x_plain, x_deform = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_plain, out_deform = conv(x_plain), deform(x_deform)
    torch.testing.assert_close(out_deform, out_plain, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(out_plain)
    (out_plain * weights).sum().backward()
    (out_deform * weights).sum().backward()
    torch.testing.assert_close(x_deform.grad, x_plain.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(deform.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(deform.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_offset_conv():
    deform = DeformableConv3x3(4, 4)
    assert deform.offset.weight.abs().sum() == 0
    deform(torch.randn(1, 4, 8, 8)).pow(2).sum().backward()
    assert deform.offset.weight.grad.abs().sum() > 0 and deform.offset.bias.grad.abs().sum() > 0


def test_head_positions():
    for position in (0, 1):
        model = build_model(small_cfg(**{"MODEL.FCOS.RFA": True, "MODEL.FCOS.RFA_POSITION": position}))
        for tower in (model.head.cls_subnet, model.head.bbox_subnet):
            convs = [m for m in tower if isinstance(m, (nn.Conv2d, DeformableConv3x3))]
            assert [isinstance(m, DeformableConv3x3) for m in convs] == [i == position for i in range(2)]
    with pytest.raises(ValueError, match="RFA_POSITION must be in"):
        build_model(small_cfg(**{"MODEL.FCOS.RFA": True, "MODEL.FCOS.RFA_POSITION": 2}))


def test_checkpoint_without_rfa_loads_with_a_message(tmp_path, caplog):
    torch.manual_seed(3)
    plain = build_model(small_cfg()).eval()
    DetectionCheckpointer(plain, save_dir=str(tmp_path)).save("plain")
    rfa = build_model(small_cfg(**{"MODEL.FCOS.RFA": True})).eval()
    with caplog.at_level(logging.WARNING):
        DetectionCheckpointer(rfa).load(str(tmp_path / "plain.pth"))
    assert "RFA: the checkpoint has a plain conv at 'head.cls_subnet.0'" in caplog.text
    assert "head.bbox_subnet.0.offset.{weight,bias}" in caplog.text
    batch = [{"image": b["image"], "height": 128, "width": 128} for b in make_batch([0])]
    with torch.no_grad():
        features = [plain.backbone(plain.preprocess_image(batch).tensor)[f] for f in plain.head_in_features]
        for a, b in zip(plain.head(features), rfa.head(features)):
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_finite_offsets_replace_nan_and_clamp_beyond_the_map():
    offset = torch.tensor([float("nan"), 1.5, -1e30, float("inf"), float("-inf"), -6.5])
    expected = torch.tensor([0.0, 1.5, -7.0, 7.0, -7.0, -6.5])  # limit max(4, 5) + 2
    torch.testing.assert_close(finite_offsets(offset, (4, 5)), expected)


def test_non_finite_offsets_sample_the_padding_or_the_plain_point():
    deform = DeformableConv3x3(2, 3)
    nn.init.constant_(deform.bias, 0.5)
    x = torch.randn(1, 2, 4, 5)
    with torch.no_grad():
        deform.offset.bias.fill_(float("inf"))  # every point far outside: the bias only
        torch.testing.assert_close(deform(x), torch.full((1, 3, 4, 5), 0.5))
        deform.offset.bias.fill_(float("nan"))  # NaN offsets: the plain conv's points
        plain = nn.functional.conv2d(x, deform.weight, deform.bias, padding=1)
        torch.testing.assert_close(deform(x), plain, rtol=1e-5, atol=1e-5)
