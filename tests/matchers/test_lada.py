"""LADA's stages and matcher on hand-built cases (docs/methods/lada.md)."""
from dataclasses import replace

import pytest
import torch
from conftest import small_cfg
from helpers import crowded_scene, grid, positives_per_gt, scene
from references import lada_positives

from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.stages.divisions import dynamic_loss_threshold, lowest_n_division
from lada.matchers.methods.lada import LADAMatcher
from lada.matchers.stages.candidates import lowest_per_gt_and_level
from lada.matchers.stages.preliminary import preliminary_iou_match
from lada.matchers.stages.priors import ASPECT_STRETCHED, SQUARE, in_center_region
from lada.matchers.stages.scores import deviation_loss

INF = float("inf")


def test_epcp_region_of_a_slender_box():
    # W = 80, H = 10, centre (50, 50), stride 8, r = 2.5: EPCP reaches
    # 2.5 * 8 * 80 / 10 = 160 px along x and 2.5 * 8 * 10 / 10 = 20 px along y (Eq. 1-2);
    # CP reaches 20 px both ways.
    box = torch.tensor([[10.0, 45.0, 90.0, 55.0]])
    points = torch.tensor([[50.0 + 150, 50.0], [50.0, 50.0 + 20], [50.0, 50.0 + 21], [50.0 + 21, 50.0]])
    strides = torch.full((4,), 8.0)
    boxes = box.expand(4, 4)
    epcp = in_center_region(points, strides, boxes, 2.5, ASPECT_STRETCHED, closed=True)
    cp = in_center_region(points, strides, boxes, 2.5, SQUARE, closed=True)
    assert epcp.tolist() == [True, True, False, True]
    assert cp.tolist() == [False, True, False, False]


def test_deviation_loss_values():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(4, 4)
    points = torch.tensor([[1.0, 1.0], [5.0, 5.0], [5.0, 1.0], [0.5, 9.0]])
    # (1, 1): 8/10 + 8/10 = 1.6 -> 0.6; centre -> 0; (5, 1): 0 + 0.8 -> 0;
    # (0.5, 9): 9/10 + 8/10 = 1.7 -> 0.7.
    torch.testing.assert_close(deviation_loss(points, box), torch.tensor([0.6, 0.0, 0.0, 0.7]))


@pytest.mark.parametrize(
    "scores, valid, topm, expected",
    [
        # Fewer valid candidates than m: C3 = all four, mean 2.5.
        ([1.0, 4.0, 2.0, 3.0, INF], [1, 1, 1, 1, 0], 20, [1, 0, 1, 0, 0]),
        # m = 2: C3 = {1, 2}, mean 1.5.
        ([1.0, 4.0, 2.0, 3.0, INF], [1, 1, 1, 1, 0], 2, [1, 0, 0, 0, 0]),
        # A single candidate: nothing is below its own mean, the fallback keeps it.
        ([INF, 5.0, INF, INF, INF], [0, 1, 0, 0, 0], 20, [0, 1, 0, 0, 0]),
        # All equal: the fallback keeps the first lowest.
        ([2.0, 2.0, 2.0, INF, INF], [1, 1, 1, 0, 0], 20, [1, 0, 0, 0, 0]),
        # No candidate at all: no positive.
        ([INF] * 5, [0] * 5, 20, [0] * 5),
    ],
)
def test_dynamic_loss_threshold(scores, valid, topm, expected):
    result = dynamic_loss_threshold(torch.tensor([scores]), torch.tensor([valid]).bool(), topm)
    assert result[0].int().tolist() == expected


@pytest.mark.parametrize("value", [0.1, 0.3, 0.7, 1.1, 2.9, 1 / 3])
def test_dlt_all_equal_non_representable_scores_keep_one(value):
    # Equal float32 CLAs: nothing is below their mean, so the fallback keeps exactly one
    # candidate, whatever the count (a float32 mean may round below the value).
    for count in range(2, 21):
        scores = torch.full((1, count), value, dtype=torch.float32)
        valid = torch.ones_like(scores, dtype=torch.bool)
        assert dynamic_loss_threshold(scores, valid, 20).sum().item() == 1, count


def test_matcher_equals_an_independent_per_gt_loop():
    compared, differences = 0, []
    for seed in range(3):
        inputs = crowded_scene(seed)
        result = LADAMatcher()(inputs).gt_index
        for image in range(inputs.num_images):
            expected = lada_positives(inputs, image)
            actual = positives_per_gt(result[image], len(inputs.gt_boxes[image]))
            compared += len(expected)
            differences += [(seed, image, gt, actual[gt], expected[gt])
                            for gt in expected if actual[gt] != expected[gt]]
    assert not differences, f"{len(differences)} of {compared} GTs differ: {differences[:5]}"
    assert compared == 3 * 2 * 34


def test_fixed_number_division():
    scores = torch.tensor([[3.0, 1.0, 2.0, INF], [5.0, INF, INF, INF]])
    valid = torch.isfinite(scores)
    assert lowest_n_division(scores, valid, 2).int().tolist() == [[0, 1, 1, 0], [1, 0, 0, 0]]


def test_lowest_per_gt_and_level_with_short_levels():
    # Level 0 has 4 points, level 1 has 2; k = 3. Points 0, 1, 4 belong to GT 0, point 2
    # to GT 1, points 3 and 5 to nobody.
    point_gt = torch.tensor([0, 0, 1, BACKGROUND, 0, BACKGROUND])
    score = torch.tensor([0.5, 0.2, 0.9, 0.1, 0.3, 0.0])
    index, valid = lowest_per_gt_and_level(point_gt, score, 2, [4, 2], k=3)
    assert index.shape == (2, 5)  # min(3, 4) + min(3, 2)
    assert index[0][valid[0]].tolist() == [1, 0, 4]
    assert index[1][valid[1]].tolist() == [2]


def test_preliminary_match_low_quality_rule():
    # Anchors: three 10x10 boxes. GT 0 overlaps anchor 0 well; GT 1 is tiny inside
    # anchor 2 (IoU 0.04 < 0.1) yet claims it, its own best point.
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    gts = torch.tensor([[0.0, 0, 9, 10], [44, 4, 46, 6]])
    assert preliminary_iou_match(anchors, gts, 0.1).tolist() == [0, BACKGROUND, 1]


def test_every_ablation_switch_builds():
    for key, values in {
        "CENTER_PRIOR": ["epcp", "cp", "none"],
        "SCORE": ["cla", "la", "iou"],
        "REG_LOSS": ["giou", "iou"],
        "DIVISION": ["dlt", "fixed", "gmm", "mean_std"],
    }.items():
        for value in values:
            cfg = small_cfg(**{"MODEL.MATCHER.NAME": "lada", f"MODEL.MATCHER.LADA.{key}": value})
            assert getattr(build_matcher(cfg), key.lower()) == value


@pytest.mark.parametrize("key, value", [("CENTER_PRIOR", "ellipse"), ("DIVISION", "otsu"),
                                        ("TOPM", 0), ("CENTER_RADIUS", -1.0)])
def test_invalid_hyperparameters(key, value):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "lada", f"MODEL.MATCHER.LADA.{key}": value})
    with pytest.raises(ValueError, match=f"MODEL.MATCHER.LADA.{key}"):
        build_matcher(cfg)


def _scene_with_predictions(boxes_per_image, seed=0):
    generator = torch.Generator().manual_seed(seed)
    levels = [grid(s, 128, 128) for s in (8, 16, 32, 64, 128)]
    inputs = scene(levels, boxes_per_image, num_classes=5)
    pred_logits = torch.randn(inputs.pred_logits.shape, generator=generator)
    jitter = torch.rand(inputs.pred_boxes.shape, generator=generator) * 20
    pred_boxes = torch.cat([inputs.points - 12, inputs.points + 12], dim=1) + jitter - 10
    return replace(inputs, pred_logits=pred_logits, pred_boxes=pred_boxes)


def test_positives_lie_inside_their_gt_and_its_epcp_region():
    boxes = [[10.0, 10.0, 110.0, 24.0], [40.0, 40.0, 80.0, 100.0], [90.0, 60.0, 120.0, 120.0]]
    inputs = _scene_with_predictions([boxes])
    gt_index = LADAMatcher()(inputs).gt_index[0]
    positive = gt_index >= 0
    assert set(gt_index[positive].tolist()) == {0, 1, 2}  # DLT keeps at least one per GT
    own = torch.tensor(boxes)[gt_index[positive]]
    points = inputs.points[positive]
    assert ((points > own[:, :2]) & (points < own[:, 2:])).all()
    assert in_center_region(
        points, inputs.strides[positive], own, 2.5, ASPECT_STRETCHED, closed=True
    ).all()
    # Per GT, at most TOPM of the per-level candidates, fewer than the candidates.
    counts = torch.bincount(gt_index[positive])
    assert (counts <= 20).all()


def test_dlt_picks_the_lowest_cla_points():
    boxes = [[20.0, 20.0, 100.0, 90.0]]
    inputs = _scene_with_predictions([boxes], seed=3)
    fixed = LADAMatcher(division="fixed", fixed_num_pos=1)(inputs).gt_index[0]
    dlt = LADAMatcher()(inputs).gt_index[0]
    # The single best CLA point is among DLT's positives.
    assert dlt[fixed == 0].item() == 0
    assert (dlt == 0).sum() >= 1
