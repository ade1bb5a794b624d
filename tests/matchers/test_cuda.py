"""On CUDA every registered matcher assigns what it assigns on the CPU: the same positives
(``gt_index``) on the crowded random scenes, and for a soft matcher the same pairs and
weights. Marked ``cuda``: skipped without a GPU (benchmarks/gpu_check.py runs them)."""
from dataclasses import fields, replace

import pytest
import torch
from conftest import small_cfg
from helpers import crowded_scene

from lada.matchers import MATCHER_REGISTRY, MatchInputs, build_matcher

pytestmark = pytest.mark.cuda

SEEDS = (0, 1, 2)


def on_device(inputs: MatchInputs, device: str) -> MatchInputs:
    """``inputs`` with every tensor (and list of tensors) moved to ``device``."""
    moved = {}
    for field in fields(inputs):
        value = getattr(inputs, field.name)
        if torch.is_tensor(value):
            moved[field.name] = value.to(device)
        elif isinstance(value, list) and value and torch.is_tensor(value[0]):
            moved[field.name] = [v.to(device) for v in value]
    return replace(inputs, **moved)


def scene_with_aux(seed: int) -> MatchInputs:
    """The crowded scene of ``seed`` with seeded auxiliary-branch logits."""
    inputs = crowded_scene(seed)
    generator = torch.Generator().manual_seed(100 + seed)
    aux = torch.randn(inputs.num_images, inputs.num_points, generator=generator)
    return replace(inputs, pred_aux=aux)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(name for name, _ in MATCHER_REGISTRY))
def test_cuda_gives_the_cpu_positives(name, seed):
    matcher = build_matcher(small_cfg(**{"MODEL.MATCHER.NAME": name}))
    inputs = scene_with_aux(seed)
    expected = matcher(inputs)
    actual = matcher(on_device(inputs, "cuda"))
    assert actual.gt_index.device.type == "cuda"
    assert expected.foreground.any(), "no positive on the CPU: the comparison would be vacuous"
    differing = (actual.gt_index.cpu() != expected.gt_index).nonzero().tolist()
    assert not differing, f"{name}: {len(differing)} points assigned differently, first (image, point): {differing[:5]}"
    assert (expected.soft is None) == (actual.soft is None)
    if expected.soft is not None:
        mine, theirs = actual.soft, expected.soft
        assert torch.equal(mine.pair_index.cpu(), theirs.pair_index)
        torch.testing.assert_close(mine.pair_weight.cpu(), theirs.pair_weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine.neg_weight.cpu(), theirs.neg_weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine.pos_normalizer.cpu(), theirs.pos_normalizer, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine.neg_normalizer.cpu(), theirs.neg_normalizer, rtol=1e-4, atol=1e-6)
