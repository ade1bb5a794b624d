"""Batched 1-D two-component GMM (EM in torch) and the PAA separation (PAA Fig. 3(c)),
against hand-computed cases and a per-group scikit-learn reference."""
import math

import numpy as np
import pytest
import torch
from references import gmm_positives as reference_positives
from references import sklearn_gmm as sklearn_fit

from lada.matchers.stages.gmm import GaussianMixture1D, fit_gmm_1d, paa_separation


def random_groups(num_groups=30, width=45, seed=0):
    """Padded (B, K) float64 scores and (B, K) mask: 2..45 valid candidates per group drawn
    from two-mode mixtures of separations 0..4 and mixed spreads; padding is NaN."""
    rng = np.random.default_rng(seed)
    values = np.full((num_groups, width), np.nan)
    valid = np.zeros((num_groups, width), dtype=bool)
    for group, count in enumerate(np.linspace(2, width, num_groups).round().astype(int)):
        low = rng.random(count) < rng.uniform(0.2, 0.8)
        spread = rng.uniform(0.05, 0.8, size=2)
        scores = np.where(low, rng.normal(0.0, spread[0], count),
                          rng.normal(rng.uniform(0.0, 4.0), spread[1], count))
        values[group, :count] = scores
        valid[group, :count] = True
    return torch.from_numpy(values), torch.from_numpy(valid)


def test_recovers_well_separated_modes():
    low = 0.1 * torch.randn(60, dtype=torch.float64)
    high = 5.0 + 0.2 * torch.randn(40, dtype=torch.float64)
    values = torch.cat([high[:20], low, high[20:]])[None]
    gmm = fit_gmm_1d(values, torch.ones_like(values, dtype=torch.bool))
    assert gmm.converged.item()
    torch.testing.assert_close(gmm.means[0], torch.stack([low.mean(), high.mean()]))
    assert (gmm.means[0] - torch.tensor([0.0, 5.0], dtype=torch.float64)).abs().max() < 0.1
    torch.testing.assert_close(gmm.weights[0], torch.tensor([0.6, 0.4], dtype=torch.float64))
    spreads = torch.stack([low.var(unbiased=False), high.var(unbiased=False)]) + 1e-6
    torch.testing.assert_close(gmm.variances[0], spreads)
    assert gmm.predict(values)[0].tolist() == [1] * 20 + [0] * 60 + [1] * 20


def test_one_em_step_by_hand():
    # Scores (0, 1), init means (0, 1), variances 1: x=0 belongs to component 0 with
    # posterior s = sigmoid(1/2) and x=1 with 1 - s, so nk = (1, 1), means (1 - s, s),
    # variances s (1 - s) + reg_covar.
    values = torch.tensor([[0.0, 1.0]])
    gmm = fit_gmm_1d(values, torch.ones(1, 2, dtype=torch.bool), max_iter=1)
    s = 1 / (1 + math.exp(-0.5))
    expected = torch.tensor([[1 - s, s]], dtype=torch.float64)
    torch.testing.assert_close(gmm.means, expected)
    torch.testing.assert_close(gmm.variances, torch.full((1, 2), s * (1 - s) + 1e-6,
                                                         dtype=torch.float64))
    torch.testing.assert_close(gmm.weights, torch.full((1, 2), 0.5, dtype=torch.float64))
    assert gmm.num_iter.tolist() == [1] and gmm.converged.tolist() == [False]


def test_log_prob_is_weighted_normal_density():
    gmm = GaussianMixture1D(means=torch.tensor([[0.0, 2.0]], dtype=torch.float64),
                            variances=torch.tensor([[1.0, 0.25]], dtype=torch.float64),
                            weights=torch.tensor([[0.3, 0.7]], dtype=torch.float64),
                            num_iter=torch.tensor([1]), converged=torch.tensor([True]))
    values = torch.tensor([[0.0, 1.5, 3.0]])
    log_prob = gmm.log_prob(values)
    assert log_prob.shape == (1, 3, 2)
    for k, x in enumerate(values[0].tolist()):
        for c, (w, mu, var) in enumerate([(0.3, 0.0, 1.0), (0.7, 2.0, 0.25)]):
            density = w * math.exp(-((x - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
            assert log_prob[0, k, c].item() == pytest.approx(math.log(density), rel=1e-12)
    assert gmm.predict(values).tolist() == [[0, 1, 1]]
    torch.testing.assert_close(gmm.score_samples(values), log_prob.logsumexp(dim=-1))


@pytest.mark.parametrize("max_iter", [100, 6])
def test_matches_sklearn_and_official_rule(max_iter):
    values, valid = random_groups()
    gmm = fit_gmm_1d(values, valid, max_iter=max_iter)
    predicted, log_lik = gmm.predict(values), gmm.score_samples(values)
    positives = paa_separation(values, valid, max_iter=max_iter)
    iterations = set()
    for group in range(len(values)):
        mask = valid[group]
        scores = values[group, mask].numpy()
        ref = sklearn_fit(scores, max_iter)
        np.testing.assert_allclose(gmm.means[group], ref.means_.ravel(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gmm.variances[group], ref.covariances_.ravel(), rtol=1e-9)
        np.testing.assert_allclose(gmm.weights[group], ref.weights_, rtol=1e-9)
        assert gmm.num_iter[group].item() == ref.n_iter_
        assert gmm.converged[group].item() == ref.converged_
        np.testing.assert_array_equal(predicted[group, mask], ref.predict(scores[:, None]))
        np.testing.assert_allclose(log_lik[group, mask], ref.score_samples(scores[:, None]),
                                   rtol=1e-9)
        np.testing.assert_array_equal(positives[group, mask], reference_positives(scores,
                                                                                  max_iter))
        iterations.add(ref.n_iter_)
    # Not a degenerate sample: fits of many lengths (with max_iter 6, some stopped by the
    # cap while others converged before it), partial and non-trivial separations.
    assert len(iterations) >= 3
    assert gmm.converged.all() if max_iter == 100 else 0 < gmm.converged.sum() < len(values)
    counts = positives.sum(dim=1)
    assert ((counts > 1) & (counts < valid.sum(dim=1))).sum() >= 10
    assert not positives[~valid].any()


def test_high_component_candidate_sorted_before_the_cutoff_is_positive():
    # A narrow cluster at 1.0 (component 0) and a broad component 1 that also covers the
    # lowest score 0.0: 0.0 sorts first yet belongs to component 1. The cut-off is the
    # cluster's most likely member, 1.0; every candidate sorted up to it is positive,
    # 0.0 included (official ``inds[:fg_max_idx + 1]``), the rest negative.
    cluster = [1.0 + 0.01 * i for i in range(-5, 6)]
    scores = np.array([4.0, 0.0, *cluster, 2.0, 3.0, 5.0])
    ref = sklearn_fit(scores)
    assert ref.predict(np.array([[0.0], [1.0], [2.0]])).tolist() == [1, 0, 1]
    values = torch.from_numpy(scores)[None]
    positives = paa_separation(values, torch.ones_like(values, dtype=torch.bool))[0]
    expected = [s <= 1.0 for s in scores.tolist()]
    assert positives.tolist() == expected
    assert positives[1].item()  # the component-1 candidate sorted before the cut-off


def test_single_candidate_is_positive():
    values = torch.tensor([[0.7, 5.0, 5.0], [0.1, 0.2, 3.0]])
    valid = torch.tensor([[True, False, False], [True, True, True]])
    gmm = fit_gmm_1d(values, valid)
    assert torch.isfinite(gmm.means).all() and torch.isfinite(gmm.variances).all()
    assert paa_separation(values, valid)[0].tolist() == [True, False, False]


def test_empty_group_has_no_positive_and_no_nan():
    values, valid = random_groups(num_groups=3, width=10)
    valid[1] = False
    gmm = fit_gmm_1d(values, valid)
    for field in (gmm.means, gmm.variances, gmm.weights, gmm.score_samples(values)[valid]):
        assert torch.isfinite(field).all()
    assert gmm.num_iter[1].item() == 0 and gmm.converged[1].item()
    assert gmm.num_iter[[0, 2]].min().item() > 0
    positives = paa_separation(values, valid)
    assert not positives[1].any() and positives[[0, 2]].any(dim=1).all()


def test_all_equal_scores_are_all_positive():
    # Two identical components (mean = the score, variance = reg_covar): every candidate
    # ties, ties go to component 0, and all of them are positive (the official argmax
    # would keep only the first one, which depends on the candidates' order).
    values = torch.tensor([[0.4, 0.4, 0.4, 9.0], [0.1, 0.5, 0.9, 1.3]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    gmm = fit_gmm_1d(values, valid)
    torch.testing.assert_close(gmm.means[0], torch.full((2,), 0.4, dtype=torch.float64))
    torch.testing.assert_close(gmm.variances[0], torch.full((2,), 1e-6, dtype=torch.float64))
    assert torch.isfinite(gmm.score_samples(values)).all()
    assert paa_separation(values, valid)[0].tolist() == [True, True, True, False]


def test_no_candidate_in_component_zero_makes_all_positive():
    # A cluster much narrower than the initial variance: both components drift to the
    # cluster's mean, the one started at the maximum (side of the two 1e-3) weighs more,
    # with the same variance it wins everywhere: component 0 is empty (as in sklearn).
    values = torch.tensor([[0.0, 1e-3, 1e-3, -4.0]])
    valid = torch.tensor([[True, True, True, False]])
    gmm = fit_gmm_1d(values, valid)
    assert gmm.predict(values)[0, :3].tolist() == [1, 1, 1]
    assert sklearn_fit(values[0, :3].numpy()).predict(values[0, :3, None].numpy()).tolist() \
        == [1, 1, 1]
    assert (gmm.weights[0, 1] - gmm.weights[0, 0]).item() > 1e-8  # not a rounding tie
    assert paa_separation(values, valid)[0].tolist() == [True, True, True, False]


def test_padding_never_positive_and_ignored():
    values, valid = random_groups(num_groups=12, width=20)
    reference = paa_separation(values, valid)
    for fill in (-1e6, 0.0, 1e6):
        padded = torch.where(valid, values, fill)
        assert torch.equal(paa_separation(padded, valid), reference)
        torch.testing.assert_close(fit_gmm_1d(padded, valid).means,
                                   fit_gmm_1d(values.nan_to_num(), valid).means)
    assert not reference[~valid].any() and reference.any()


def test_column_order_does_not_matter():
    values, valid = random_groups()
    positives = paa_separation(values, valid)
    perm = torch.stack([torch.randperm(values.shape[1]) for _ in range(len(values))])
    permuted = paa_separation(values.gather(1, perm), valid.gather(1, perm))
    assert torch.equal(permuted, positives.gather(1, perm))
    assert not torch.equal(permuted, positives)  # the permutation moved positives


def test_group_alone_equals_group_in_batch():
    values, valid = random_groups()
    batch_fit, batch_positives = fit_gmm_1d(values, valid), paa_separation(values, valid)
    for group in (0, 7, 29):
        count = int(valid[group].sum())
        alone = values[group : group + 1, :count]
        mask = torch.ones_like(alone, dtype=torch.bool)
        fit = fit_gmm_1d(alone.float(), mask)  # float32 input: float64 fit of its values
        ref = fit_gmm_1d(alone.float().double(), mask)
        torch.testing.assert_close(fit.means, ref.means, rtol=0, atol=0)
        fit = fit_gmm_1d(alone, mask)
        for name in ("means", "variances", "weights"):
            torch.testing.assert_close(getattr(fit, name)[0], getattr(batch_fit, name)[group],
                                       rtol=1e-12, atol=1e-14)
        assert fit.num_iter.item() == batch_fit.num_iter[group].item()
        assert torch.equal(paa_separation(alone, mask)[0], batch_positives[group, :count])


def test_scores_with_gradient_build_no_graph():
    values, valid = random_groups(num_groups=4, width=12)
    values = values.nan_to_num().float().requires_grad_()
    gmm = fit_gmm_1d(values, valid)
    assert not gmm.means.requires_grad and gmm.means.dtype == torch.float64
    assert torch.equal(paa_separation(values, valid), paa_separation(values.detach(), valid))


@pytest.mark.parametrize("values, valid, kwargs, message", [
    (torch.zeros(3), torch.ones(3, dtype=torch.bool), {}, "2-D"),
    (torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool), {}, "equal shape"),
    (torch.zeros(2, 3), torch.ones(2, 3), {}, "bool"),
    (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), {"max_iter": 0}, "max_iter"),
    (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), {"tol": 0.0}, "tol"),
])
def test_invalid_arguments(values, valid, kwargs, message):
    for function in (fit_gmm_1d, paa_separation):
        with pytest.raises(ValueError, match=message):
            function(values, valid, **kwargs)
    with pytest.raises(ValueError, match="reg_covar"):
        fit_gmm_1d(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), reg_covar=0.0)
