"""The matcher contract: registry, config defaults, input and result validation, frozen
inputs and results, softness declared by the class and held by every result, batching."""
from dataclasses import FrozenInstanceError, replace

import pytest
import torch
from conftest import random_boxes, small_cfg
from helpers import grid, scene

from lada.matchers import (
    BACKGROUND,
    MATCHER_REGISTRY,
    MatchInputs,
    MatchResult,
    PairWeights,
    build_matcher,
    check_result_kind,
)
from lada.matchers.registry import gives_soft_results, register_matcher


def _with_predictions(inputs):
    return replace(
        inputs,
        pred_logits=torch.randn(inputs.pred_logits.shape),
        pred_boxes=torch.cat([inputs.points - 12, inputs.points + 12], dim=1).expand(
            inputs.num_images, -1, -1) + torch.randn(inputs.pred_boxes.shape),
        pred_aux=torch.randn(inputs.num_images, inputs.num_points),
    )


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
        alone = replace(
            scene(levels, [boxes], num_classes=5),
            pred_logits=inputs.pred_logits[index : index + 1],
            pred_boxes=inputs.pred_boxes[index : index + 1],
            pred_aux=inputs.pred_aux[index : index + 1],
        )
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
    inputs = replace(inputs, gt_boxes=[boxes[order]], gt_classes=[inputs.gt_classes[0][order]])
    permuted = matcher(inputs).gt_index[0]
    mapped = torch.where(permuted >= 0, order[permuted.clamp(min=0)], permuted)
    assert torch.equal(first, mapped)


def _pair_weights(num_pairs=2, neg_shape=(1, 16, 3), **change):
    fields = dict(
        pair_index=torch.zeros(num_pairs, 3, dtype=torch.long),
        pair_weight=torch.ones(num_pairs),
        neg_weight=torch.ones(neg_shape),
        pos_normalizer=torch.tensor(1.0),
        neg_normalizer=torch.tensor(2.0),
    )
    fields.update(change)
    return PairWeights(**fields)


def test_inputs_and_results_are_frozen():
    inputs = scene([grid(8, 32, 32)], [[[1.0, 1.0, 9.0, 9.0]]])
    result = MatchResult(gt_index=torch.full((1, 16), BACKGROUND))
    soft = _pair_weights()
    for value, name in ((inputs, "pred_boxes"), (result, "gt_index"), (soft, "pair_weight")):
        with pytest.raises(FrozenInstanceError):
            setattr(value, name, None)
    # A variant is a new, checked instance.
    assert replace(inputs, iteration=3).iteration == 3 and inputs.iteration == 0
    with pytest.raises(ValueError, match="pred_boxes must be"):
        replace(inputs, pred_boxes=torch.zeros(1, 15, 4))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(pair_index=torch.zeros(2, 2, dtype=torch.long)), r"pair_index must be \(P, 3\), got \(2, 2\)"),
        (dict(pair_weight=torch.ones(3)), r"pair_weight must be \(P,\) like pair_index, got \(3,\) for P = 2"),
        (dict(pair_weight=torch.ones(2, 1)), r"pair_weight must be \(P,\)"),
        (dict(neg_weight=torch.ones(16, 3)), r"neg_weight must be \(N, R, C\), got \(16, 3\)"),
        (dict(pos_normalizer=torch.ones(1)), "pos_normalizer and neg_normalizer must be 0-dim tensors"),
        (dict(neg_normalizer=torch.ones(2)), "pos_normalizer and neg_normalizer must be 0-dim tensors"),
    ],
)
def test_pair_weights_shapes_are_checked(change, message):
    with pytest.raises(ValueError, match=f"PairWeights: {message}"):
        _pair_weights(**change)


def test_result_shapes_are_checked_against_gt_index():
    with pytest.raises(ValueError, match=r"MatchResult: gt_index must be \(N, R\), got \(16,\)"):
        MatchResult(gt_index=torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"soft.neg_weight must be \(N, R, C\) like gt_index \(1, 16\), got \(2, 16, 3\)"):
        MatchResult(gt_index=torch.zeros(1, 16, dtype=torch.long), soft=_pair_weights(neg_shape=(2, 16, 3)))


def test_softness_is_derived_from_the_pair_weights():
    gt_index = torch.zeros(1, 16, dtype=torch.long)
    assert not MatchResult(gt_index=gt_index).is_soft
    assert MatchResult(gt_index=gt_index, soft=_pair_weights()).is_soft
    assert not hasattr(MatchResult, "SOFT")


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "lada", "ciou_atss", "aps", "dw"])
def test_every_result_agrees_with_its_matchers_declaration(name):
    matcher = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    inputs = _with_predictions(scene(levels, [random_boxes(6, 128).tolist()], num_classes=5))
    assert gives_soft_results(name) is type(matcher).SOFT is (name == "dw")
    result = matcher(inputs)
    check_result_kind(result, type(matcher).SOFT)
    assert result.is_soft is type(matcher).SOFT


@pytest.mark.parametrize("name", ["fcos", "atss", "paa", "lada", "ciou_atss", "aps"])
def test_a_batch_without_gt_boxes_is_all_background(name):
    matcher = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))
    inputs = _with_predictions(scene([grid(s, 64, 64) for s in (8, 16)], [[], []], num_classes=5))
    result = matcher(inputs)
    assert result.gt_index.shape == (2, inputs.num_points) and (result.gt_index == BACKGROUND).all()
    assert not result.is_soft


def test_a_result_contradicting_its_declaration_is_refused():
    hard = MatchResult(gt_index=torch.zeros(1, 16, dtype=torch.long))
    soft = MatchResult(gt_index=hard.gt_index, soft=_pair_weights())
    with pytest.raises(TypeError, match=r"declares SOFT = False but returned a soft \(PairWeights set\)"):
        check_result_kind(soft, False)
    with pytest.raises(TypeError, match=r"declares SOFT = True but returned a hard \(no PairWeights\)"):
        check_result_kind(hard, True)


def test_a_matcher_class_must_declare_its_kind():
    with pytest.raises(TypeError, match="matcher class Undeclared must declare the class attribute SOFT"):
        @register_matcher("undeclared")
        class Undeclared:
            def __call__(self, inputs):
                return MatchResult(gt_index=torch.zeros(1, inputs.num_points, dtype=torch.long))
    assert "undeclared" not in MATCHER_REGISTRY
