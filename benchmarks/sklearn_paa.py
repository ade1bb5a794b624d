"""The per-GT scikit-learn reference of PAA's GMM separation (the official PAA code's
approach: one ``GaussianMixture`` fit per GT box), as a division function and as a
``paa`` matcher, for the benchmarks' timing and agreement comparisons."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from lada.matchers.methods.paa import PAAMatcher

__all__ = ["SklearnPAAMatcher", "random_candidates", "reference_positives", "sklearn_separation"]


def sklearn_fit(scores: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> GaussianMixture:
    """PAA's initialisation of scikit-learn's mixture on one GT's (n,) scores."""
    gmm = GaussianMixture(n_components=2, weights_init=[0.5, 0.5],
                          means_init=[[scores.min()], [scores.max()]],
                          precisions_init=[[[1.0]], [[1.0]]], max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gmm.fit(scores[:, None])


def reference_positives(scores: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> np.ndarray:
    """The official PAA separation (Fig. 3(c)) of one GT's (n,) scores -> (n,) bool: the
    candidates sorted by score, up to and including the first component-0 member of
    highest log-likelihood (``inds[:fg_max_idx + 1]``), whatever their component; one
    candidate or an empty component 0: all positive."""
    positive = np.ones(len(scores), dtype=bool)
    if len(scores) <= 1:
        return positive
    order = np.argsort(scores, kind="stable")
    ranked = scores[order][:, None]
    gmm = sklearn_fit(scores, max_iter, tol)
    foreground = gmm.predict(ranked) == 0
    if not foreground.any():
        return positive
    log_lik = gmm.score_samples(ranked)
    cutoff = np.flatnonzero(foreground & (log_lik == log_lik[foreground].max())).min()
    positive[:] = False
    positive[order[: cutoff + 1]] = True
    return positive


def sklearn_separation(scores: torch.Tensor, valid: torch.Tensor, max_iter: int = 100,
                       tol: float = 1e-3) -> torch.Tensor:
    """``paa_separation``'s contract, one scikit-learn fit per row: (B, K) scores, (B, K)
    bool -> (B, K) bool positives, on the scores' device."""
    values = scores.detach().double().cpu().numpy()
    mask = valid.cpu().numpy()
    positive = np.zeros_like(mask)
    for row in range(len(values)):
        if mask[row].any():
            positive[row, mask[row]] = reference_positives(values[row, mask[row]], max_iter, tol)
    return torch.from_numpy(positive).to(scores.device)


class SklearnPAAMatcher(PAAMatcher):
    """``paa`` with its batched GMM replaced by one scikit-learn fit per GT."""

    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return sklearn_separation(scores, valid, self.gmm_max_iter, self.gmm_tol)


def random_candidates(num_gts: int, width: int, seed: int = 0):
    """(B, K) float64 scores of two-mode mixtures with 2..K valid candidates per GT
    (``inf`` in the padding) and the (B, K) bool mask."""
    rng = np.random.default_rng(seed)
    values = np.full((num_gts, width), np.inf)
    valid = np.zeros((num_gts, width), dtype=bool)
    for gt in range(num_gts):
        count = int(rng.integers(2, width + 1))
        low = rng.random(count) < rng.uniform(0.2, 0.8)
        scores = np.where(low, rng.normal(0.5, 0.2, count), rng.normal(rng.uniform(1, 3), 0.4, count))
        values[gt, :count], valid[gt, :count] = scores, True
    return values, valid
