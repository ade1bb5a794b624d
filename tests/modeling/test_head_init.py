"""Head initialisation: the box bias sets the predicted boxes of a fresh model."""
import pytest
import torch
from conftest import small_cfg
from detectron2.modeling import build_model


def _initial_boxes(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = torch.randn(1, 3, 128, 128)
    features = model.backbone(images)
    features = [features[f] for f in model.head_in_features]
    _, deltas, _ = model._transpose_dense_predictions(model.head(features), [5, 4, 1])
    anchors = torch.cat([a.tensor for a in model.anchor_generator(features)])
    boxes = model._decode(torch.cat(deltas, dim=1), anchors)[0]  # (R, 4)
    strides = torch.cat(
        [torch.full((d.shape[1],), s, dtype=torch.float) for d, s in zip(deltas, (8, 16, 32, 64, 128))]
    )
    return boxes, strides


@torch.no_grad()
def test_box_bias_four_starts_boxes_as_eight_stride_squares():
    boxes, strides = _initial_boxes(small_cfg(**{"MODEL.FCOS.BOX_BIAS_INIT": 4.0}))
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # 8 strides wide and high up to the small random weights (std 0.01) of the fresh head
    assert (widths / strides).median().item() == pytest.approx(8.0, abs=0.3)
    assert (heights / strides).median().item() == pytest.approx(8.0, abs=0.3)


@torch.no_grad()
def test_default_box_bias_starts_boxes_as_points():
    boxes, strides = _initial_boxes(small_cfg())
    sides = torch.cat([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    assert (sides.abs() / torch.cat([strides, strides])).max().item() < 1.0


def test_box_bias_must_be_finite():
    with pytest.raises(ValueError, match="BOX_BIAS_INIT"):
        build_model(small_cfg(**{"MODEL.FCOS.BOX_BIAS_INIT": float("nan")}))


def test_aux_prior_prob_sets_the_auxiliary_bias():
    model = build_model(small_cfg(**{"MODEL.FCOS.AUX_PRIOR_PROB": 0.01}))
    assert torch.sigmoid(model.head.aux_pred.bias).item() == pytest.approx(0.01)
    assert build_model(small_cfg()).head.aux_pred.bias.item() == 0.0  # detectron2's FCOS
    with pytest.raises(ValueError, match="MODEL.FCOS.AUX_PRIOR_PROB must be in"):
        build_model(small_cfg(**{"MODEL.FCOS.AUX_PRIOR_PROB": 1.0}))
