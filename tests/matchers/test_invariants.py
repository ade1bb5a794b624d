"""What every registered matcher must satisfy, parametrised from the registry: a method
added in one file (docs/methods/adding-a-method.md), also one of your own imported with
``LADA_CUSTOM_IMPORTS=path/to/my_matcher.py``, goes through every test here with no
test edit.

- its declaration: a valid ``METHOD``, keys in the config with its defaults, built from
  the config, a detector preset of known keys;
- its results: of the declared kind, well formed, all background without GT boxes;
- invariances: batched equals per image, the GTs' order, the GT chunk size;
- non-finite predictions: a well-formed result, no exception;
- one training step of ``LadaFCOS`` with its detector preset: finite losses, gradients.
"""
from dataclasses import replace

import pytest
import torch
from conftest import REPO, default_cfg, make_batch, random_boxes, small_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import grid, scene

from lada.matchers import (
    BACKGROUND,
    MethodSpec,
    ResultKind,
    build_matcher,
    check_result,
    hyperparameters,
    matcher_class,
    registered_matchers,
)
from lada.modeling.presets import DETECTOR_KEYS, METHOD_DETECTORS

NAMES = registered_matchers()
LEVELS = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]


def _with_predictions(inputs, seed=0):
    """Random logits and auxiliary logits, predicted boxes of about 3 strides around
    each point; the last step of the schedule, where a matcher with a warm-up (tal) runs
    its own rule."""
    generator = torch.Generator().manual_seed(seed)
    half = inputs.strides[:, None] * (1 + 2 * torch.rand(inputs.num_points, 2, generator=generator))
    boxes = torch.cat([inputs.points - half, inputs.points + half], dim=1)
    return replace(
        inputs,
        pred_logits=torch.randn(inputs.pred_logits.shape, generator=generator),
        pred_boxes=boxes.expand(inputs.num_images, -1, -1)
        + torch.randn(inputs.pred_boxes.shape, generator=generator),
        pred_aux=torch.randn(inputs.num_images, inputs.num_points, generator=generator),
        iteration=99, max_iter=100,
    )


def _matcher(name, **keys):
    return build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name, **keys}))


def _assert_well_formed(result, inputs, kind):
    check_result(result, kind)
    assert result.gt_index.shape == (inputs.num_images, inputs.num_points)
    assert result.gt_index.dtype == torch.long
    for image, boxes in enumerate(inputs.gt_boxes):
        row = result.gt_index[image]
        assert ((row == BACKGROUND) | ((row >= 0) & (row < len(boxes)))).all()
    if result.quality is not None:
        quality = result.quality
        assert ((quality >= 0) & (quality <= 1)).all()
        assert (quality[~result.foreground] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_declaration(name):
    cls = matcher_class(name)
    spec = cls.METHOD
    assert isinstance(spec, MethodSpec) and spec.name == name
    cfg = default_cfg(**{"MODEL.MATCHER.NAME": name})
    node = cfg.MODEL.MATCHER[spec.config_node]
    assert dict(node) == {key.upper(): value for key, value in hyperparameters(cls).items()}
    matcher = build_matcher(cfg)
    assert isinstance(matcher, cls)
    if spec.detector is not None:
        assert set(spec.detector) <= set(DETECTOR_KEYS) - {"LOSS"}
        assert set(METHOD_DETECTORS[name]) == set(DETECTOR_KEYS)


@pytest.mark.parametrize("name", NAMES)
def test_results_are_of_the_declared_kind(name):
    inputs = _with_predictions(scene(LEVELS, [random_boxes(6, 128).tolist()] * 2, num_classes=5))
    result = _matcher(name)(inputs)
    _assert_well_formed(result, inputs, matcher_class(name).METHOD.result)
    assert result.foreground.any()


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_without_gt_boxes_is_all_background(name):
    inputs = _with_predictions(scene([grid(s, 64, 64) for s in (8, 16)], [[], []], num_classes=5))
    result = _matcher(name)(inputs)
    _assert_well_formed(result, inputs, matcher_class(name).METHOD.result)
    assert (result.gt_index == BACKGROUND).all()


@pytest.mark.parametrize("name", NAMES)
def test_batched_matching_equals_per_image_matching(name):
    matcher = _matcher(name)
    images = [random_boxes(n, 128).tolist() for n in (6, 0, 11)]
    inputs = _with_predictions(scene(LEVELS, images, num_classes=5))
    batched = matcher(inputs)
    for index, boxes in enumerate(images):
        alone = matcher(replace(
            scene(LEVELS, [boxes], num_classes=5),
            pred_logits=inputs.pred_logits[index : index + 1],
            pred_boxes=inputs.pred_boxes[index : index + 1],
            pred_aux=inputs.pred_aux[index : index + 1],
            iteration=inputs.iteration, max_iter=inputs.max_iter,
        ))
        assert torch.equal(batched.gt_index[index], alone.gt_index[0])
        if batched.quality is not None:
            torch.testing.assert_close(batched.quality[index], alone.quality[0])
    assert (batched.gt_index[1] == BACKGROUND).all() and (batched.gt_index[0] >= 0).any()


@pytest.mark.parametrize("name", NAMES)
def test_assignment_does_not_depend_on_gt_order(name):
    matcher = _matcher(name)
    boxes = random_boxes(15, 128)
    order = torch.randperm(15)
    inputs = _with_predictions(scene(LEVELS, [boxes.tolist()], num_classes=5))
    first = matcher(inputs)
    permuted = matcher(replace(inputs, gt_boxes=[boxes[order]],
                               gt_classes=[inputs.gt_classes[0][order]]))
    mapped = torch.where(permuted.gt_index >= 0, order[permuted.gt_index.clamp(min=0)],
                         permuted.gt_index)
    assert torch.equal(first.gt_index, mapped)
    if first.quality is not None:
        torch.testing.assert_close(first.quality, permuted.quality)


@pytest.mark.parametrize("name", NAMES)
def test_assignment_does_not_depend_on_the_gt_chunk_size(name, monkeypatch):
    matcher = _matcher(name)
    images = [random_boxes(40, 128).tolist(), random_boxes(25, 128).tolist()]
    inputs = _with_predictions(scene(LEVELS, images, num_classes=5))
    whole = matcher(inputs)
    monkeypatch.setattr("lada.matchers.stages.pairs.MAX_CHUNK_ELEMENTS", 64)  # many chunks
    chunked = matcher(inputs)
    assert torch.equal(whole.gt_index, chunked.gt_index)
    if whole.quality is not None:
        torch.testing.assert_close(whole.quality, chunked.quality)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_predictions_give_a_well_formed_result(name, value):
    inputs = _with_predictions(scene(LEVELS, [random_boxes(8, 128).tolist()] * 2, num_classes=5))
    broken = torch.rand(inputs.num_points) < 0.2  # a fifth of the points of each image
    inputs = replace(
        inputs,
        pred_logits=inputs.pred_logits.masked_fill(broken[None, :, None], value),
        pred_boxes=inputs.pred_boxes.masked_fill(broken[None, :, None], value),
        pred_aux=inputs.pred_aux.masked_fill(broken[None], value),
    )
    result = _matcher(name)(inputs)
    check_result(result, matcher_class(name).METHOD.result)
    assert result.gt_index.shape == (2, inputs.num_points)
    assert ((result.gt_index >= BACKGROUND) & (result.gt_index < 8)).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_with_its_detector(name):
    """Its quick config (configs/quick/<name>.yaml) when the project ships one, else the
    quick model with its detector preset."""
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": name})
    quick = REPO / f"configs/quick/{name}.yaml"
    if quick.is_file():
        cfg.merge_from_file(str(quick))
        cfg.DATASETS.REGISTER_COCO = []
    else:
        cfg.merge_from_list([item for key, value in METHOD_DETECTORS.get(name, {}).items()
                             for item in (f"MODEL.FCOS.{key}", value)])
    model = build_model(cfg)
    assert isinstance(model.matcher, matcher_class(name))
    assert model.result_kind is matcher_class(name).METHOD.result
    with EventStorage(0):
        losses = model(make_batch([0, 5, 2]))
    total = sum(losses.values())
    assert torch.isfinite(total) and losses["loss_box_reg"] > 0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_every_kind_of_result_has_a_loss():
    from lada.modeling.losses import loss_consuming

    assert {kind: loss_consuming(kind) for kind in ResultKind} == {
        ResultKind.HARD: "dense", ResultKind.QUALITY: "dense", ResultKind.PAIRS: "weighted_pairs"}


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if matcher_class(n).__module__.startswith("lada.matchers.methods.")])
def test_a_method_of_the_package_has_its_page_and_row(name):
    """docs/methods/: the page of each method of the package, and its row in the index
    table with the kind of result its class declares."""
    assert (REPO / f"docs/methods/{name}.md").is_file()
    rows = [cells for cells in (line.split("|") for line in
                                (REPO / "docs/methods/README.md").read_text().splitlines())
            if len(cells) > 6 and cells[1].strip() == f"`{name}`"
            and cells[4].strip() == f"[{name}.md]({name}.md)"]
    assert len(rows) == 1, f"docs/methods/README.md: one table row for `{name}`"
    assert rows[0][3].strip() == matcher_class(name).METHOD.result.value
