"""The matcher contract: registry, config defaults, input validation, batching."""
import pytest
import torch
from conftest import random_boxes, small_cfg
from helpers import grid, scene

from lada.matchers import BACKGROUND, MATCHER_REGISTRY, MatchInputs, build_matcher


def _with_predictions(inputs):
    inputs.pred_logits = torch.randn(inputs.pred_logits.shape)
    inputs.pred_boxes = torch.cat([inputs.points - 12, inputs.points + 12], dim=1).expand(
        inputs.num_images, -1, -1) + torch.randn(inputs.pred_boxes.shape)
    inputs.pred_quality = torch.randn(inputs.num_images, inputs.num_points)
    return inputs


def test_registry_names_and_paper_defaults():
    assert {"fcos", "atss", "paa", "lada", "ciou_atss"} <= {name for name, _ in MATCHER_REGISTRY}
    cfg = small_cfg()
    assert cfg.MODEL.MATCHER.FCOS.CENTER_SAMPLING_RADIUS == 1.5
    assert cfg.MODEL.MATCHER.ATSS.TOPK == 9
    assert cfg.MODEL.MATCHER.ATSS.ANCHOR_SCALE == 8.0
    cfg.MODEL.MATCHER.NAME = "atss"
    assert build_matcher(cfg).topk == 9
    lada = cfg.MODEL.MATCHER.LADA
    assert (lada.CENTER_PRIOR, lada.CENTER_RADIUS, lada.SCORE, lada.DIVISION) == ("epcp", 2.5, "cla", "dlt")
    assert (lada.LAMBDA_REG, lada.LAMBDA_DEV, lada.TOPK, lada.TOPM) == (1.5, 1.0, 9, 20)
    assert (lada.FIXED_NUM_POS, lada.PRELIM_IOU_THRESH) == (10, 0.1)
    assert (cfg.MODEL.MATCHER.PAA.TOPK, cfg.MODEL.MATCHER.PAA.PRELIM_IOU_THRESH) == (9, 0.1)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(strides=torch.ones(3)), "strides must be"),
        (dict(num_points_per_level=[10]), "must sum to R"),
        (dict(gt_classes=[]), "one entry per image"),
        (dict(pred_boxes=torch.zeros(1, 16, 2)), "pred_boxes must be"),
        (dict(gt_boxes=[torch.zeros(2, 5)]), r"gt_boxes\[0\] must be \(G, 4\)"),
    ],
)
def test_inconsistent_inputs_are_rejected(change, message):
    fields = dict(vars(scene([grid(8, 32, 32)], [[[1.0, 1.0, 9.0, 9.0]]])))
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        MatchInputs(**fields)


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "lada", "ciou_atss", "dw"])
def test_batched_matching_equals_per_image_matching(name):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": name})
    matcher = build_matcher(cfg)
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    images = [random_boxes(n, 128).tolist() for n in (6, 0, 11)]
    inputs = _with_predictions(scene(levels, images, num_classes=5))
    batched = matcher(inputs).gt_index
    for index, boxes in enumerate(images):
        alone = scene(levels, [boxes], num_classes=5)
        alone.pred_logits = inputs.pred_logits[index : index + 1]
        alone.pred_boxes = inputs.pred_boxes[index : index + 1]
        alone.pred_quality = inputs.pred_quality[index : index + 1]
        alone = matcher(alone).gt_index[0]
        assert torch.equal(batched[index], alone)
    assert (batched[1] == BACKGROUND).all() and (batched[0] >= 0).any()


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "lada", "ciou_atss", "dw"])
def test_assignment_does_not_depend_on_gt_order(name):
    matcher = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    boxes = random_boxes(15, 128)
    order = torch.randperm(15)
    inputs = _with_predictions(scene(levels, [boxes.tolist()], num_classes=5))
    first = matcher(inputs).gt_index[0]
    inputs.gt_boxes = [boxes[order]]
    inputs.gt_classes = [inputs.gt_classes[0][order]]
    permuted = matcher(inputs).gt_index[0]
    mapped = torch.where(permuted >= 0, order[permuted.clamp(min=0)], permuted)
    assert torch.equal(first, mapped)
