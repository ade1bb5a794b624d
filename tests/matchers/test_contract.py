"""The matcher contract: registry and declarations (``MethodSpec``, hyperparameters as
keyword arguments, config keys, validation named by argument or key), config defaults,
input and result validation, frozen inputs and results, the kind of result declared by
the class and held by every result. What every registered matcher must satisfy is in
test_invariants.py."""
from dataclasses import FrozenInstanceError, replace

import pytest
import torch
from conftest import default_cfg, small_cfg
from detectron2.config import configurable
from helpers import grid, scene

from lada.matchers import (
    BACKGROUND,
    MATCHER_REGISTRY,
    BatchMatcher,
    CandidateDivisionMatcher,
    MatchInputs,
    MatchResult,
    MethodSpec,
    PairWeights,
    ResultKind,
    build_matcher,
    check_result,
    hyperparameters,
    matcher_class,
    register_matcher,
    registered_matchers,
    uses_anchors,
)
from lada.matchers.validation import require_positive_int


def test_registry_names_and_paper_defaults():
    assert {"fcos", "atss", "paa", "lada", "ciou_atss"} <= {name for name, _ in MATCHER_REGISTRY}
    cfg = default_cfg()
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


def test_a_result_contradicting_its_declaration_is_refused():
    hard = MatchResult(gt_index=torch.zeros(1, 16, dtype=torch.long))
    soft = MatchResult(gt_index=hard.gt_index, soft=_pair_weights())
    quality = MatchResult(gt_index=hard.gt_index, quality=torch.zeros(1, 16))
    for result in (hard, quality):
        check_result(result, ResultKind.QUALITY)  # a quality target when there is one
    check_result(hard, ResultKind.HARD)
    check_result(soft, ResultKind.PAIRS)
    with pytest.raises(TypeError, match=r"declares results of kind 'hard' but returned one with "
                                        r"PairWeights set$"):
        check_result(soft, ResultKind.HARD)
    with pytest.raises(TypeError, match=r"kind 'hard' but returned one with a quality target$"):
        check_result(quality, ResultKind.HARD)
    with pytest.raises(TypeError, match=r"kind 'soft \(pairwise weights\)' but returned one with "
                                        r"no PairWeights$"):
        check_result(hard, ResultKind.PAIRS)


def test_the_quality_target_is_checked_against_gt_index():
    gt_index = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(ValueError, match=r"MatchResult: quality must be a float \(N, R\) like "
                                         r"gt_index \(2, 16\), got torch.float32 \(1, 16\)"):
        MatchResult(gt_index=gt_index, quality=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="got torch.int64"):
        MatchResult(gt_index=gt_index, quality=torch.zeros(2, 16, dtype=torch.long))
    result = MatchResult(gt_index=gt_index, quality=torch.ones(2, 16))
    with pytest.raises(FrozenInstanceError):
        result.quality = None


class _Nearest(BatchMatcher):
    """A valid declaration for the registration tests (never registered for long)."""

    METHOD = MethodSpec(name="test_nearest", detector={"AUX_BRANCH": "iou"})

    @configurable
    def __init__(self, *, k: int = 3, radius: float = 1.5, shape: str = "square"):
        require_positive_int("k", k)
        self.k = k

    def match(self, inputs, gts):
        return MatchResult(gt_index=gts.background())


@pytest.fixture
def registered_nearest():
    register_matcher(_Nearest)
    yield _Nearest
    MATCHER_REGISTRY._obj_map.pop("test_nearest")


def test_a_registered_method_is_built_from_its_declaration(registered_nearest):
    assert "test_nearest" in registered_matchers()
    assert hyperparameters(_Nearest) == {"k": 3, "radius": 1.5, "shape": "square"}
    cfg = small_cfg(**{"MODEL.MATCHER.NAME": "test_nearest", "MODEL.MATCHER.TEST_NEAREST.K": 5})
    assert dict(cfg.MODEL.MATCHER.TEST_NEAREST) == {"K": 5, "RADIUS": 1.5, "SHAPE": "square"}
    assert build_matcher(cfg).k == 5
    # validation names the argument, or the config key when built from a config
    with pytest.raises(ValueError, match=r"^k must be a positive integer, got 0$"):
        _Nearest(k=0)
    cfg.MODEL.MATCHER.TEST_NEAREST.K = 0
    with pytest.raises(ValueError, match=r"^MODEL.MATCHER.TEST_NEAREST.K must be a positive "
                                         r"integer, got 0$"):
        build_matcher(cfg)
    assert not uses_anchors(_Nearest) and uses_anchors(matcher_class("atss"))


@pytest.mark.parametrize("body, message", [
    (dict(), "must declare METHOD = MethodSpec"),
    (dict(METHOD=MethodSpec(name="atss")), "matcher 'atss' .* is already registered by ATSSMatcher"),
    (dict(METHOD=MethodSpec(name="other", node="ATSS")),
     "config node MODEL.MATCHER.ATSS is already the node of 'atss'"),
])
def test_a_bad_declaration_is_refused(body, message):
    cls = type("Bad", (BatchMatcher,), {**body, "match": lambda self, inputs, gts: None})
    with pytest.raises((TypeError, ValueError), match=message):
        register_matcher(cls)
    assert "other" not in MATCHER_REGISTRY


def test_hyperparameters_must_be_keyword_arguments_a_config_can_hold():
    class Positional(BatchMatcher):
        METHOD = MethodSpec(name="positional")

        def __init__(self, k=3):
            self.k = k

    class Unsettable(BatchMatcher):
        METHOD = MethodSpec(name="unsettable")

        def __init__(self, *, fn=len):
            self.fn = fn

    with pytest.raises(TypeError, match="argument 'k' must be keyword-only with a default"):
        register_matcher(Positional)
    with pytest.raises(TypeError, match="the default of 'fn' .* must be a bool, int, float, str"):
        register_matcher(Unsettable)
    with pytest.raises(ValueError, match="MethodSpec.name must be a lower-case identifier"):
        MethodSpec(name="My-Matcher")
    with pytest.raises(ValueError, match="MethodSpec.node must be an upper-case identifier other than NAME"):
        MethodSpec(name="name")


@pytest.mark.parametrize("scores, winner", [([[0.5], [0.2]], 1), ([[0.2], [0.5]], 0),
                                            ([[0.3], [0.3]], 0)])
def test_candidate_division_gives_a_contested_point_to_the_lowest_score(scores, winner):
    """Two GTs claim point 1: the lower candidate score wins, equal scores go to the lower
    GT index, whatever the order of writes on a device."""

    class Contested(CandidateDivisionMatcher):
        METHOD = MethodSpec(name="contested")

        def candidates(self, inputs, gts):
            key = torch.tensor([[1], [1]])
            return key, torch.ones(2, 1, dtype=torch.bool), torch.tensor(scores)

        def divide(self, scores, valid):
            return valid

    inputs = scene([grid(8, 32, 32)], [[[0.0, 0, 16, 16], [0, 0, 16, 16]]])
    gt_index = Contested()(inputs).gt_index[0]
    assert gt_index[1] == winner and (gt_index[[0, *range(2, 16)]] == BACKGROUND).all()
