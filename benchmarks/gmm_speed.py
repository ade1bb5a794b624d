#!/usr/bin/env python
"""PAA's GMM separation: the batched torch EM of lada against a per-GT loop over
scikit-learn's GaussianMixture (the official PAA code's approach), on the same seeded
candidate sets. Prints both timings and whether the positives agree.

    python benchmarks/gmm_speed.py --num-gts 1000 --candidates 45
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from lada.matchers.stages.gmm import paa_separation


def sklearn_fit(scores: np.ndarray, max_iter: int = 100) -> GaussianMixture:
    """PAA's initialisation of scikit-learn's mixture on one GT's (n,) scores."""
    gmm = GaussianMixture(n_components=2, weights_init=[0.5, 0.5],
                          means_init=[[scores.min()], [scores.max()]],
                          precisions_init=[[[1.0]], [[1.0]]], max_iter=max_iter, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gmm.fit(scores[:, None])


def reference_positives(scores: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """The official PAA separation (Fig. 3(c)) of one GT's (n,) scores -> (n,) bool: the
    candidates sorted by score, up to and including the first component-0 member of
    highest log-likelihood (``inds[:fg_max_idx + 1]``), whatever their component."""
    positive = np.zeros(len(scores), dtype=bool)
    if len(scores) == 1:
        positive[:] = True
        return positive
    order = np.argsort(scores, kind="stable")
    ranked = scores[order][:, None]
    gmm = sklearn_fit(scores, max_iter)
    foreground = gmm.predict(ranked) == 0
    if not foreground.any():
        positive[:] = True
        return positive
    log_lik = gmm.score_samples(ranked)
    cutoff = np.flatnonzero(foreground & (log_lik == log_lik[foreground].max())).min()
    positive[order[: cutoff + 1]] = True
    return positive


def random_candidates(num_gts: int, width: int, seed: int = 0):
    """(B, K) scores of two-mode mixtures with 2..K valid candidates per GT, (B, K) mask."""
    rng = np.random.default_rng(seed)
    values = np.full((num_gts, width), np.inf)
    valid = np.zeros((num_gts, width), dtype=bool)
    for gt in range(num_gts):
        count = int(rng.integers(2, width + 1))
        low = rng.random(count) < rng.uniform(0.2, 0.8)
        scores = np.where(low, rng.normal(0.5, 0.2, count), rng.normal(rng.uniform(1, 3), 0.4, count))
        values[gt, :count], valid[gt, :count] = scores, True
    return values, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-gts", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=45)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    values, valid = random_candidates(args.num_gts, args.candidates)
    values = values.astype(np.float32).astype(np.float64)  # both sides see float32 scores
    start = time.perf_counter()
    expected = [reference_positives(v[m]) for v, m in zip(values, valid)]
    sklearn_seconds = time.perf_counter() - start
    scores = torch.from_numpy(values).float().to(args.device)
    mask = torch.from_numpy(valid).to(args.device)
    paa_separation(scores, mask)  # warm-up
    start = time.perf_counter()
    positives = paa_separation(scores, mask).cpu().numpy()
    torch_seconds = time.perf_counter() - start
    agree = sum(np.array_equal(p[m], e) for p, m, e in zip(positives, valid, expected))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    print(f"{args.num_gts} GTs x up to {args.candidates} candidates")
    print(f"scikit-learn, one fit per GT: {sklearn_seconds:8.3f} s")
    print(f"lada batched torch EM:        {torch_seconds:8.3f} s")
    print(f"GTs with identical positives: {agree} / {args.num_gts}")


if __name__ == "__main__":
    main()
