"""LadaFCOS training behaviour: empty images, normalisers, auxiliary branches, bad GT,
results of the kind the matcher declares."""
import pytest
import torch
from conftest import make_batch, small_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from lada.matchers import MatchResult
from lada.modeling import LadaFCOS
from lada.modeling.losses import DenseDetectionLoss, PairwiseWeightedLoss


def _losses(model, batch, step=0):
    with EventStorage(step):
        return model(batch)


def test_images_without_gt_train_as_background():
    model = build_model(small_cfg())
    losses = _losses(model, make_batch([0, 0]))
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_centerness"].item() == 0.0
    assert losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_mixed_batch_with_an_empty_image():
    losses = _losses(build_model(small_cfg()), make_batch([0, 4]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() > 0


def test_ema_normaliser_is_a_checkpointed_buffer(tmp_path):
    model = build_model(small_cfg())
    with EventStorage(0) as storage:
        model(make_batch([5]))
        positives = storage.history("assign/pos_per_image").latest()
    value = model.loss.loss_normalizer.item()
    assert positives > 0
    assert value == pytest.approx(0.9 * 300 + 0.1 * positives)  # detectron2's EMA
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("ckpt")
    fresh = build_model(small_cfg())
    DetectionCheckpointer(fresh).load(str(tmp_path / "ckpt.pth"))
    assert fresh.loss.loss_normalizer.item() == value


def test_num_pos_normaliser_divides_by_the_positive_count():
    batch = make_batch([3, 6])
    ema_model = build_model(small_cfg())
    ema = _losses(ema_model, batch)
    ema_normalizer = ema_model.loss.loss_normalizer.item()
    num_pos_model = build_model(small_cfg(**{"MODEL.FCOS.NORMALIZER": "num_pos"}))
    num_pos_model.load_state_dict(ema_model.state_dict())
    with EventStorage(0) as storage:
        num_pos = num_pos_model(batch)
        positives = storage.history("assign/pos_per_image").latest() * 2
    assert positives > 0
    torch.testing.assert_close(num_pos["loss_cls"] * positives, ema["loss_cls"] * ema_normalizer)


def test_iou_branch_and_box_loss_weighted_by_aux_target():
    cfg = small_cfg(**{"MODEL.FCOS.AUX_BRANCH": "iou", "MODEL.FCOS.BOX_LOSS_WEIGHTING": "aux_target"})
    losses = _losses(build_model(cfg), make_batch([4]))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_iou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_p6_p7_come_from_p5():
    model = build_model(small_cfg())
    assert model.backbone.top_block.in_feature == "p5"
    shapes = model.backbone.output_shape()
    assert [shapes[f].stride for f in model.head_in_features] == [8, 16, 32, 64, 128]


def test_degenerate_gt_box_is_reported():
    batch = make_batch([3])
    batch[0]["instances"].gt_boxes.tensor[1] = torch.tensor([10.0, 10.0, 10.0, 30.0])
    with pytest.raises(ValueError, match="degenerate"):
        _losses(build_model(small_cfg()), batch)


def test_matcher_sees_detached_predictions_only():
    model = build_model(small_cfg())
    seen = []
    original = model.matcher

    def spy(inputs):
        seen.append(inputs)
        return original(inputs)

    model.matcher = spy
    _losses(model, make_batch([2]))
    (inputs,) = seen
    assert not any(t.requires_grad for t in (inputs.pred_logits, inputs.pred_boxes, inputs.pred_aux))


def test_a_result_of_the_other_kind_than_the_matcher_declared_is_refused():
    model = build_model(small_cfg(**{"MODEL.MATCHER.NAME": "dw"}))  # ResultKind.PAIRS
    original = model.matcher
    model.matcher = lambda inputs: MatchResult(gt_index=original(inputs).gt_index)
    with pytest.raises(TypeError, match=r"declares results of kind 'soft \(pairwise weights\)' "
                                        r"but returned one with no PairWeights"):
        _losses(model, make_batch([2]))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.MATCHER.NAME", "hungarian", "unknown matcher 'hungarian'; registered: aps, atss, "),
        ("MODEL.FCOS.AUX_BRANCH", "ctr", "MODEL.FCOS.AUX_BRANCH must be one of"),
        ("MODEL.FCOS.NORMALIZER", "batch", "MODEL.FCOS.NORMALIZER must be one of"),
        ("MODEL.FCOS.CLS_LOSS", "bce", "MODEL.FCOS.CLS_LOSS must be one of"),
        ("MODEL.FCOS.BOX_ACTIVATION", "exp", "MODEL.FCOS.BOX_ACTIVATION must be one of"),
        ("MODEL.FCOS.LOSS", "soft", "MODEL.FCOS.LOSS must be .auto. or one of"),
        ("MODEL.FCOS.LOSS", "weighted_pairs",
         r"MODEL.FCOS.LOSS weighted_pairs cannot train MODEL.MATCHER.NAME atss, whose results are "
         r"hard .* set MODEL.FCOS.LOSS dense \(or auto\)"),
        ("MODEL.FCOS.TEST_SCORE", "sqrt", "MODEL.FCOS.TEST_SCORE must be one of"),
        ("MODEL.MATCHER.ATSS.TOPK", 0, "TOPK must be a positive integer"),
        ("MODEL.FCOS.IN_FEATURES", ["p3", "p9"], r"\['p9'\] not produced by the backbone"),
    ],
)
def test_invalid_config_is_reported(key, value, message):
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "atss"})
    cfg.merge_from_list([key, value])
    with pytest.raises((KeyError, ValueError), match=message):
        build_model(cfg)


def test_dense_loss_for_a_soft_matcher_is_refused_when_the_model_is_built():
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "dw", "MODEL.FCOS.LOSS": "dense"})
    with pytest.raises(ValueError, match=r"MODEL.FCOS.LOSS dense cannot train MODEL.MATCHER.NAME dw, "
                                         r"whose results are soft .* weighted_pairs \(or auto\)"):
        build_model(cfg)


def test_a_loss_that_cannot_consume_the_matchers_results_is_refused_without_a_config():
    """LazyConfig builds LadaFCOS from objects: the same refusal as the yaml path."""
    arguments = LadaFCOS.from_config(small_cfg(**{"MODEL.MATCHER.NAME": "dw"}))
    with pytest.raises(ValueError, match=r"MODEL.FCOS.LOSS dense cannot train MODEL.MATCHER.NAME dw, "
                                         r"whose results are soft .* weighted_pairs \(or auto\)"):
        LadaFCOS(**{**arguments, "loss": DenseDetectionLoss(num_classes=5)})
    arguments = LadaFCOS.from_config(small_cfg(**{"MODEL.MATCHER.NAME": "atss"}))
    with pytest.raises(ValueError, match="MODEL.FCOS.LOSS weighted_pairs cannot train "
                                         "MODEL.MATCHER.NAME atss, whose results are hard"):
        LadaFCOS(**{**arguments, "loss": PairwiseWeightedLoss()})


def test_inference_output_format():
    model = build_model(small_cfg(**{"MODEL.FCOS.SCORE_THRESH_TEST": 0.0})).eval()
    batch = [{"image": b["image"], "height": 256, "width": 256} for b in make_batch([0])]
    with torch.no_grad():
        (result,) = model(batch)
    instances = result["instances"]
    assert instances.image_size == (256, 256)
    assert 0 < len(instances) <= 100
    assert (instances.scores[:-1] >= instances.scores[1:]).all()
    assert instances.pred_classes.max() < 5


def test_relu_box_activation_never_predicts_inverted_boxes():
    model = build_model(small_cfg(**{"MODEL.FCOS.BOX_ACTIVATION": "relu"}))
    for parameter in model.head.bbox_pred.parameters():
        parameter.data.normal_(std=0.5)  # linear outputs of both signs
    features = [torch.randn(1, 64, size, size) for size in (16, 8, 4, 2, 1)]
    _, deltas, _ = model.head(features)
    assert all((d >= 0).all() for d in deltas)
    assert any((d == 0).any() for d in deltas)  # the negative half was clipped


def _constant_head_model(score_thresh_on):
    """A model whose head outputs sigmoid(cls) = 0.3 and sigmoid(aux) = 0.1 everywhere:
    detection score sqrt(0.03) = 0.173 below the threshold 0.2, class probability above."""
    cfg = small_cfg(**{"MODEL.FCOS.SCORE_THRESH_TEST": 0.2,
                       "MODEL.FCOS.SCORE_THRESH_ON": score_thresh_on})
    model = build_model(cfg).eval()
    logit = lambda p: torch.log(torch.tensor(p / (1 - p)))  # noqa: E731
    for conv, value in ((model.head.cls_score, logit(0.3)), (model.head.aux_pred, logit(0.1))):
        conv.weight.data.zero_()
        conv.bias.data.fill_(value)
    return model


@pytest.mark.parametrize("score_thresh_on, detects", [("combined", False), ("cls", True)])
def test_score_threshold_on_combined_score_or_class_probability(score_thresh_on, detects):
    model = _constant_head_model(score_thresh_on)
    batch = [{"image": b["image"], "height": 128, "width": 128} for b in make_batch([0])]
    with torch.no_grad():
        (result,) = model(batch)
    scores = result["instances"].scores
    assert (len(scores) > 0) == detects
    if detects:
        torch.testing.assert_close(scores, torch.full_like(scores, 0.03**0.5))


def test_product_test_score_has_no_square_root():
    """DW's score sigmoid(cls) * sigmoid(aux) = 0.3 * 0.1, thresholded as it is."""
    model = _constant_head_model("combined")
    model.test_score, model.test_score_thresh = "product", 0.02
    batch = [{"image": b["image"], "height": 128, "width": 128} for b in make_batch([0])]
    with torch.no_grad():
        (result,) = model(batch)
    scores = result["instances"].scores
    assert len(scores) > 0
    torch.testing.assert_close(scores, torch.full_like(scores, 0.03))
    model.test_score_thresh = 0.031
    with torch.no_grad():
        (result,) = model(batch)
    assert len(result["instances"]) == 0


def test_unknown_score_threshold_mode_is_reported():
    with pytest.raises(ValueError, match="MODEL.FCOS.SCORE_THRESH_ON must be one of"):
        build_model(small_cfg(**{"MODEL.FCOS.SCORE_THRESH_ON": "aux"}))
