"""Dynamic CIoU-ATSS (docs/methods/ciou_atss.md) on hand-built scenes. Expected IoUs come from the
scene's geometry by hand or from torchvision's ``box_iou``, the statistics from
Python's ``statistics`` module."""
import statistics
from dataclasses import replace

import pytest
import torch
from conftest import REPO, default_cfg, random_boxes, small_cfg
from detectron2.config import get_cfg
from helpers import grid, scene
from torchvision.ops import box_iou

from lada.config import add_lada_config
from lada.matchers import BACKGROUND, build_matcher
from lada.matchers.methods.atss import ATSSMatcher
from lada.matchers.methods.ciou_atss import CIoUATSSMatcher, scheduled_weight
from lada.modeling.losses.targets import gather_targets, iou_quality

# A row of six points (stride 10, 20x20 anchors: scale 2) under the GT [0, 0, 60, 20],
# and one far point; with k = 6 the six row points are the candidates. Anchor IoUs:
# x = 5 and 55: 300 / (400 + 1200 - 300) = 3/13; x = 15..45: 400 / 1200 = 1/3.
ROW = [(10, [(5.0 + 10 * i, 10.0) for i in range(6)] + [(205.0, 10.0)])]
ROW_GT = [0.0, 0.0, 60.0, 20.0]
ROW_AIOU = [3 / 13, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 3 / 13]
NOWHERE = [300.0, 300.0, 310.0, 310.0]  # a predicted box overlapping nothing: PIoU 0


def _row_scene(pred_heights):
    """The row scene whose point i predicts [0, 0, 60, h_i] (PIoU h_i / 20), or a box
    far away for h_i = 0."""
    inputs = scene(ROW, [[ROW_GT]])
    preds = [[0.0, 0.0, 60.0, h] if h > 0 else NOWHERE for h in pred_heights] + [NOWHERE]
    return replace(inputs, pred_boxes=torch.tensor([preds]))


def _cls_target_quality(inputs, result):
    """(N, R) the QFL/VFL target the dense loss trains each point with
    (``iou_quality``), 0 for background."""
    targets = gather_targets(result, inputs.gt_boxes, inputs.gt_classes, num_classes=1)
    quality = torch.zeros(targets.foreground.shape)
    quality[targets.foreground] = iou_quality(targets, inputs.pred_boxes)
    return quality


def _thresholds(aiou, piou):
    """The two thresholds from their definitions: (sum_std, combined_std)."""
    combined = [a + p for a, p in zip(aiou, piou)]
    sum_std = (statistics.mean(aiou) + statistics.mean(piou)
               + statistics.stdev(aiou) + statistics.stdev(piou))
    return sum_std, statistics.mean(combined) + statistics.stdev(combined)


def test_sum_of_stds_and_std_of_the_sum_choose_different_positives():
    # PIoUs 1, 1, 1/4, 0, 0, 1/2: combined 1.2308, 1.3333, 0.5833, 0.3333, 0.3333, 0.7308.
    # sum_std = (0.2991 + 0.4583) + (0.0530 + 0.4587) = 1.2692 keeps x = 15 only;
    # combined_std = 0.7575 + 0.4351 = 1.1926 keeps x = 5 and x = 15.
    inputs = _row_scene([20.0, 20.0, 5.0, 0.0, 0.0, 10.0])
    piou = [1.0, 1.0, 0.25, 0.0, 0.0, 0.5]
    sum_std, combined_std = _thresholds(ROW_AIOU, piou)
    combined = [a + p for a, p in zip(ROW_AIOU, piou)]
    assert [c >= sum_std for c in combined] == [False, True, False, False, False, False]
    assert [c >= combined_std for c in combined] == [True, True, False, False, False, False]
    by_sum = CIoUATSSMatcher(topk=6, anchor_scale=2.0, threshold="sum_std")(inputs)
    by_combined = CIoUATSSMatcher(topk=6, anchor_scale=2.0, threshold="combined_std")(inputs)
    assert by_sum.gt_index[0].tolist() == [BACKGROUND, 0] + [BACKGROUND] * 5
    assert by_combined.gt_index[0].tolist() == [0, 0] + [BACKGROUND] * 5


def test_weights_scale_each_iou_before_its_statistics():
    # PRED_WEIGHT 0.5 (Table III): combined = AIoU + PIoU / 2 = 0.7308, 0.8333, 0.4583,
    # 0.3333, 0.3333, 0.4808; sum_std over AIoU and PIoU / 2 = 0.3521 + 0.4585 = 0.8106.
    inputs = _row_scene([20.0, 20.0, 5.0, 0.0, 0.0, 10.0])
    half = [p / 2 for p in (1.0, 1.0, 0.25, 0.0, 0.0, 0.5)]
    sum_std, _ = _thresholds(ROW_AIOU, half)
    combined = [a + p for a, p in zip(ROW_AIOU, half)]
    assert [c >= sum_std for c in combined] == [False, True, False, False, False, False]
    result = CIoUATSSMatcher(topk=6, anchor_scale=2.0, pred_weight=0.5)(inputs)
    assert result.gt_index[0].tolist() == [BACKGROUND, 0] + [BACKGROUND] * 5


def test_a_candidate_becomes_positive_only_through_its_predicted_iou():
    # Only x = 5 predicts the GT (PIoU 1), the lowest anchor IoU of the row. ATSS:
    # threshold 0.2991 + 0.0530 = 0.3521 > 1/3, no positive at all. CIoU-ATSS: combined
    # 1.2308 at x = 5, 1/3 or 3/13 elsewhere; threshold 0.2991 + 1/6 + 0.0530 + 0.4082
    # = 0.9270.
    inputs = _row_scene([20.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    sum_std, _ = _thresholds(ROW_AIOU, [1.0, 0, 0, 0, 0, 0])
    assert statistics.mean(ROW_AIOU) + statistics.stdev(ROW_AIOU) > 1 / 3
    assert 1 / 3 < sum_std < 3 / 13 + 1
    assert (ATSSMatcher(topk=6, anchor_scale=2.0)(inputs).gt_index == BACKGROUND).all()
    result = CIoUATSSMatcher(topk=6, anchor_scale=2.0)(inputs)
    assert result.gt_index[0].tolist() == [0] + [BACKGROUND] * 6
    # Its classification target is its predicted IoU.
    assert _cls_target_quality(inputs, result)[0].tolist() == [1.0] + [0.0] * 6


def test_a_point_claimed_by_two_gts_goes_to_the_largest_combined_iou():
    # Nested GTs on an 8-px grid, 32x32 anchors; every point predicts the big box, so
    # PIoU is 1 for the big GT and 1024 / 3136 for the small one. ATSS gives the
    # contested central points to the small GT (higher anchor IoU); the combined IoU
    # gives them to the big one, whatever the order of the GTs.
    level = grid(8, 64, 64)
    big, small = [4.0, 4.0, 60.0, 60.0], [14.0, 14.0, 46.0, 46.0]
    matcher = CIoUATSSMatcher(anchor_scale=4.0)

    def run(boxes):
        inputs = scene([level], [boxes])
        inputs = replace(inputs, pred_boxes=torch.tensor(big).expand(1, inputs.num_points, 4).clone())
        return inputs, matcher(inputs).gt_index[0]

    alone = [run([box])[1] >= 0 for box in (big, small)]
    contested = alone[0] & alone[1]
    inputs, forward = run([big, small])
    _, backward = run([small, big])
    gts = torch.tensor([big, small])
    anchors = torch.cat([inputs.points - 16, inputs.points + 16], dim=1)
    anchor_iou = box_iou(anchors, gts)  # (R, 2)
    combined = anchor_iou + box_iou(inputs.pred_boxes[0], gts)
    assert contested.any()
    assert torch.equal(forward[contested], combined[contested].argmax(dim=1))
    assert torch.equal(forward[contested], 1 - backward[contested])
    differs = anchor_iou[contested].argmax(dim=1) != combined[contested].argmax(dim=1)
    assert differs.any()  # the scene distinguishes the combined IoU from the anchor IoU


def test_a_candidate_outside_the_gt_is_never_positive_even_with_a_perfect_prediction():
    # ATSS's slender bar between the point columns x = 20 and x = 28: no point inside.
    # Every point predicts the bar exactly (PIoU 1): still no positive.
    level = grid(8, 64, 64)
    bar = [26.0, 4.0, 27.5, 60.0]
    inputs = scene([level], [[bar]])
    inputs = replace(inputs, pred_boxes=torch.tensor(bar).expand(1, inputs.num_points, 4).clone())
    result = CIoUATSSMatcher(anchor_scale=1.0)(inputs)
    assert (result.gt_index == BACKGROUND).all()
    assert (_cls_target_quality(inputs, result) == 0).all()
    # Widened to contain the x = 28 column, only points of that column are positive.
    inputs = scene([level], [[[26.0, 4.0, 29.5, 60.0]]])
    inputs = replace(inputs, pred_boxes=torch.tensor(bar).expand(1, inputs.num_points, 4).clone())
    positives = inputs.points[CIoUATSSMatcher(anchor_scale=1.0)(inputs).gt_index[0] == 0]
    assert len(positives) > 0 and (positives[:, 0] == 28).all()


@pytest.mark.parametrize(
    "schedule, iteration, expected",
    [("none", 0, 1.5), ("none", 100, 1.5), ("d_up", 0, 0.0), ("d_up", 25, 0.375),
     ("d_up", 100, 1.5), ("d_down", 0, 1.5), ("d_down", 25, 1.125), ("d_down", 100, 0.0)],
)
def test_weight_schedules(schedule, iteration, expected):
    # Table III: D_up = iteration / max_iter, D_down = 1 - iteration / max_iter; weight 1.5.
    assert scheduled_weight(1.5, schedule, iteration, 100) == pytest.approx(expected)


def _random_scene(seed, num_gts=12):
    generator = torch.Generator().manual_seed(seed)
    levels = [grid(s, 128, 96) for s in (8, 16, 32, 64)]
    inputs = scene(levels, [random_boxes(num_gts, 96, generator).tolist()])
    jitter = torch.rand(inputs.pred_boxes.shape, generator=generator) * 24 - 12
    return replace(inputs, pred_boxes=torch.cat([inputs.points - 16, inputs.points + 16], dim=1) + jitter)


def test_schedules_at_the_first_and_last_iteration():
    inputs = _random_scene(seed=7)
    atss = ATSSMatcher()(inputs).gt_index
    piou_only = CIoUATSSMatcher(anchor_weight=0.0)(inputs).gt_index
    assert not torch.equal(atss, piou_only)
    d_up = CIoUATSSMatcher(pred_weight_schedule="d_up")
    d_down = CIoUATSSMatcher(anchor_weight_schedule="d_down")
    inputs = replace(inputs, max_iter=1000, iteration=0)
    assert d_up.weights(0, 1000) == (1.0, 0.0) and d_down.weights(0, 1000) == (1.0, 1.0)
    assert torch.equal(d_up(inputs).gt_index, atss)  # PIoU weight 0: ATSS
    inputs = replace(inputs, iteration=1000)
    assert d_up.weights(1000, 1000) == (1.0, 1.0) and d_down.weights(1000, 1000) == (0.0, 1.0)
    assert torch.equal(d_down(inputs).gt_index, piou_only)  # AIoU weight 0
    assert torch.equal(d_up(inputs).gt_index, CIoUATSSMatcher()(inputs).gt_index)


def test_schedule_outside_the_training_is_reported():
    inputs = _random_scene(seed=0)
    inputs = replace(inputs, iteration=11, max_iter=10)
    with pytest.raises(ValueError, match="needs 0 <= iteration <= max_iter"):
        CIoUATSSMatcher(pred_weight_schedule="d_up")(inputs)


@pytest.mark.parametrize("threshold", ["combined_std", "sum_std"])
@pytest.mark.parametrize("seed", range(4))
def test_without_predicted_iou_it_is_atss(seed, threshold):
    inputs = _random_scene(seed)
    expected = ATSSMatcher()(inputs).gt_index
    result = CIoUATSSMatcher(pred_weight=0.0, threshold=threshold)(inputs).gt_index
    assert (expected >= 0).any()
    assert torch.equal(result, expected)
    assert not torch.equal(CIoUATSSMatcher(threshold=threshold)(inputs).gt_index, expected)


def test_quality_is_the_predicted_iou_of_each_positive_with_its_gt():
    inputs = _random_scene(seed=3)
    result = CIoUATSSMatcher()(inputs)
    positive = result.gt_index[0] >= 0
    assert positive.any()
    own = inputs.gt_boxes[0][result.gt_index[0][positive]]
    expected = box_iou(inputs.pred_boxes[0][positive], own).diagonal()
    quality = _cls_target_quality(inputs, result)
    torch.testing.assert_close(quality[0][positive], expected)
    assert (quality[0][~positive] == 0).all()


def test_image_without_gt_next_to_an_annotated_one():
    level = grid(8, 64, 64)
    inputs = scene([level], [[], [[8.0, 8.0, 40.0, 40.0]]])
    inputs = replace(inputs, pred_boxes=torch.tensor([8.0, 8.0, 40.0, 40.0]).expand(2, inputs.num_points, 4).clone())
    result = CIoUATSSMatcher()(inputs)
    quality = _cls_target_quality(inputs, result)
    assert (result.gt_index[0] == BACKGROUND).all() and (quality[0] == 0).all()
    assert (result.gt_index[1] == 0).any()
    assert (quality[1][result.gt_index[1] == 0] == 1).all()


def test_config_defaults_are_the_papers():
    cfg = default_cfg(**{"MODEL.MATCHER.NAME": "ciou_atss"})
    matcher = build_matcher(cfg)
    assert isinstance(matcher, CIoUATSSMatcher)
    assert (matcher.topk, matcher.anchor_scale) == (9, 8.0)
    assert (matcher.anchor_weight, matcher.pred_weight) == (1.0, 1.0)
    assert (matcher.anchor_weight_schedule, matcher.pred_weight_schedule) == ("none", "none")
    assert matcher.threshold == "sum_std"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("THRESHOLD", "median", "CIOU_ATSS.THRESHOLD must be one of"),
        ("PRED_WEIGHT_SCHEDULE", "cosine", "CIOU_ATSS.PRED_WEIGHT_SCHEDULE must be one of"),
        ("ANCHOR_WEIGHT", -1.0, "CIOU_ATSS.ANCHOR_WEIGHT must be >= 0"),
        ("TOPK", 0, "CIOU_ATSS.TOPK must be a positive integer"),
    ],
)
def test_invalid_config_is_reported(key, value, message):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "ciou_atss", f"MODEL.MATCHER.CIOU_ATSS.{key}": value})
    with pytest.raises(ValueError, match=message):
        build_matcher(cfg)


# Each paper row's config: (matcher, CLS_LOSS, AUX_BRANCH, anchor weight, pred weight,
# anchor schedule, pred schedule).
PAPER_ROWS = {
    "../atss_R_50_FPN_1x.yaml": ("atss", "focal", "centerness", 1.0, 1.0, "none", "none"),
    "table1_atss_cious.yaml": ("ciou_atss", "focal", "centerness", 1.0, 1.0, "none", "none"),
    "table1_atss_qfl.yaml": ("atss", "qfl", "centerness", 1.0, 1.0, "none", "none"),
    "table1_atss_vfl.yaml": ("atss", "vfl", "centerness", 1.0, 1.0, "none", "none"),
    "table2_piou_only.yaml": ("ciou_atss", "focal", "centerness", 0.0, 1.0, "none", "none"),
    "table2_cious_qfl_centerness.yaml": ("ciou_atss", "qfl", "centerness", 1.0, 1.0, "none", "none"),
    "table2_cious_vfl_centerness.yaml": ("ciou_atss", "vfl", "centerness", 1.0, 1.0, "none", "none"),
    "../ciou_atss_R_50_FPN_1x.yaml": ("ciou_atss", "qfl", "iou", 1.0, 1.0, "none", "none"),
    "table2_cious_vfl_iou.yaml": ("ciou_atss", "vfl", "iou", 1.0, 1.0, "none", "none"),
    "table3_pred0.5.yaml": ("ciou_atss", "focal", "centerness", 1.0, 0.5, "none", "none"),
    "table3_pred1.5.yaml": ("ciou_atss", "focal", "centerness", 1.0, 1.5, "none", "none"),
    "table3_anchor0.5.yaml": ("ciou_atss", "focal", "centerness", 0.5, 1.0, "none", "none"),
    "table3_anchor1.5.yaml": ("ciou_atss", "focal", "centerness", 1.5, 1.0, "none", "none"),
    "table3_pred_dup.yaml": ("ciou_atss", "focal", "centerness", 1.0, 1.0, "none", "d_up"),
    "table3_anchor_ddown.yaml": ("ciou_atss", "focal", "centerness", 1.0, 1.0, "d_down", "none"),
    "table3_pred_dup_anchor_ddown.yaml": ("ciou_atss", "focal", "centerness", 1.0, 1.0, "d_down", "d_up"),
}


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_row_configs(name):
    cfg = get_cfg()
    add_lada_config(cfg)
    cfg.merge_from_file(str(REPO / "configs/COCO-Detection/CIoU-ATSS" / name))
    fcos, ciou = cfg.MODEL.FCOS, cfg.MODEL.MATCHER.CIOU_ATSS
    assert (cfg.MODEL.MATCHER.NAME, fcos.CLS_LOSS, fcos.AUX_BRANCH, ciou.ANCHOR_WEIGHT,
            ciou.PRED_WEIGHT, ciou.ANCHOR_WEIGHT_SCHEDULE, ciou.PRED_WEIGHT_SCHEDULE) == PAPER_ROWS[name]
    # The paper's detector and schedule (section IV): ATSS's losses, batch 16, lr 0.01,
    # 90k iterations with steps at 60k and 80k, 800 / 1333.
    assert (fcos.NORMALIZER, fcos.BOX_LOSS_WEIGHT, fcos.BOX_LOSS_WEIGHTING) == ("num_pos", 2.0, "aux_target")
    solver = cfg.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER, tuple(solver.STEPS)) == (
        16, 0.01, 90000, (60000, 80000))
    assert (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN) == ((800,), 1333)
    assert name.startswith("..") or cfg.OUTPUT_DIR.endswith(name[: -len(".yaml")])


def test_every_config_of_the_folder_is_a_paper_row():
    folder = REPO / "configs/COCO-Detection/CIoU-ATSS"
    assert {p.name for p in folder.glob("*.yaml")} == {n for n in PAPER_ROWS if not n.startswith("..")}
