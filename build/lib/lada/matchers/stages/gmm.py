"""Two-component 1-D Gaussian mixtures fitted by EM, batched over groups, and the PAA
separation of candidate anchors (Kim & Lee, "Probabilistic Anchor Assignment with IoU
Prediction for Object Detection", ECCV 2020, Sec. 3.1 and Fig. 3(c)).

Every group (one GT box) holds a variable number of candidate scores, given as a padded
``(B, K)`` tensor and a ``(B, K)`` bool mask. EM runs on all groups at once: the only
Python loop is over EM iterations. The fit reproduces scikit-learn's ``GaussianMixture``
(1-D, ``covariance_type="full"``) from the PAA initialisation: same E/M steps, same
convergence test (change of the mean per-sample log-likelihood < ``tol``), and every group
stops updating at its own convergence. Computation is in float64 on the input's device,
without autograd (label assignment needs no gradient).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianMixture1D", "fit_gmm_1d", "higher_component", "paa_separation"]

_EPS = torch.finfo(torch.float64).eps
_MIN_LOG_RESP = -300.0


@dataclass
class GaussianMixture1D:
    """Fitted mixtures of ``B`` groups; component 0 starts at the group's minimum."""

    means: Tensor  # (B, 2)
    variances: Tensor  # (B, 2)
    weights: Tensor  # (B, 2)
    num_iter: Tensor  # (B,) long, EM iterations run per group (0 for empty groups)
    converged: Tensor  # (B,) bool

    def log_prob(self, values: Tensor) -> Tensor:
        """(B, K) values -> (B, K, 2) ``log(w_c N(x | mu_c, var_c))``."""
        return self._log_prob(values).permute(2, 1, 0)

    def predict(self, values: Tensor) -> Tensor:
        """(B, K) values -> (B, K) long index of the most probable component (ties -> 0)."""
        return _most_probable(self._log_prob(values)).t()

    def score_samples(self, values: Tensor) -> Tensor:
        """(B, K) values -> (B, K) mixture log-likelihood ``log sum_c w_c N(x | mu_c, var_c)``."""
        return _log_likelihood(self._log_prob(values)).t()

    def _log_prob(self, values: Tensor) -> Tensor:
        """(B, K) values -> (2, K, B) weighted component log-densities (groups last)."""
        x = values.to(device=self.means.device, dtype=torch.float64).t()
        return _weighted_log_prob(x, self.means.t(), self.variances.t(), self.weights.t())


@torch.no_grad()
def fit_gmm_1d(values: Tensor, valid: Tensor, max_iter: int = 100, tol: float = 1e-3,
               reg_covar: float = 1e-6) -> GaussianMixture1D:
    """Fit one two-component mixture per row of ``values`` (B, K) on its ``valid`` (B, K)
    entries by EM.

    Init: means = (min, max) of each group's valid values, weights (0.5, 0.5), variances 1.
    Groups without a valid value keep that init (means 0) with ``num_iter`` 0 and count as
    converged. A group whose valid values are all equal gets two identical components. A
    single valid value is fitted too (sklearn requires two). Parameters are float64 on the
    input's device. ``reg_covar`` must be > 0 so that no variance is 0.

    Cost: EM runs on a working set holding only the groups still iterating, their valid
    values moved first (stable) and the columns no group uses dropped; a group leaves it
    when it converges, so the late iterations, which a few slow groups need, cost little.
    One host synchronisation per iteration (to shrink the set), none per group.
    """
    _check_arguments(values, valid, max_iter, tol)
    if not reg_covar > 0:
        raise ValueError(f"reg_covar must be > 0, got {reg_covar}")
    x = torch.where(valid, values.to(torch.float64), 0.0)
    count = valid.sum(dim=1).to(torch.float64)
    means, variances, weights = _initial_parameters(x, valid, count)  # (B, 2) each
    converged = count == 0
    num_iter = torch.zeros_like(count, dtype=torch.long)
    rows = (~converged).nonzero().squeeze(1)  # the working set: groups still iterating
    if len(rows) == 0:
        return GaussianMixture1D(means, variances, weights, num_iter, converged)
    take = (~valid[rows]).to(torch.uint8).argsort(dim=1, stable=True)[:, : int(count.max())]
    data = torch.stack([x[rows].gather(1, take), valid[rows].gather(1, take).double()]).mT
    # (2, K, n): each group's values, valid ones first, and weights (1 valid, 0 padding),
    # groups last so that every operation runs on long contiguous rows
    state = _WorkingState.initial(means[rows], variances[rows], weights[rows], count[rows])
    for iteration in range(1, max_iter + 1):
        bound, params = _em_step(data[0], data[1], state.count,
                                 (state.means, state.variances, state.weights), reg_covar)
        done = (bound - state.bound).abs() < tol  # sklearn's test on the E-step's bound
        state = state.after_step(params, bound)
        leaving = done if iteration < max_iter else torch.ones_like(done)
        if int(leaving.sum()) == 0:  # the iteration's one host synchronisation
            continue
        finished = rows[leaving]
        for full, part in zip((means, variances, weights), params):
            full[finished] = part[:, leaving].t()
        num_iter[finished] = iteration
        converged[finished] = done[leaving]
        keep = ~leaving
        rows, state = rows[keep], state.select(keep)
        if len(rows) == 0:
            break
        data = data[:, : int(state.count.max()), keep]  # without columns no group uses
    return GaussianMixture1D(means, variances, weights, num_iter, converged)


@torch.no_grad()
def paa_separation(values: Tensor, valid: Tensor, max_iter: int = 100,
                   tol: float = 1e-3) -> Tensor:
    """PAA positives (paper Fig. 3(c), official ``inds[:fg_max_idx + 1]``): (B, K) scores
    (lower is better), (B, K) bool -> (B, K) bool positives, in the input's column order
    (the function sorts internally).

    A GMM is fitted to each group's scores; the cut-off is the member of component 0 (the
    low-score, "foreground" one) of highest mixture log-likelihood, and *every* candidate
    sorted at or before it is positive, including members of component 1 sorted before
    it. Policies (official code): no candidate in component 0 -> every valid candidate
    positive (happens when a cluster much narrower than the initial variance draws both
    components to its mean); no valid candidate -> no positive. One candidate, or
    all-equal scores, give two identical components, so every candidate ties into
    component 0: all positive.
    """
    _check_arguments(values, valid, max_iter, tol)
    # Sorting makes the fit independent of the columns' order, bit for bit.
    keys = torch.where(valid, values.to(torch.float64), math.inf)
    order = keys.argsort(dim=1, stable=True)
    sorted_valid = valid.gather(1, order)
    sorted_values = torch.where(sorted_valid, keys.gather(1, order), 0.0)
    gmm = fit_gmm_1d(sorted_values, sorted_valid, max_iter, tol)
    log_prob = gmm._log_prob(sorted_values)
    positive = _separate(sorted_values, sorted_valid, _most_probable(log_prob).t() == 0,
                         _log_likelihood(log_prob).t())
    return torch.zeros_like(valid).scatter(1, order, positive)


@torch.no_grad()
def higher_component(values: Tensor, valid: Tensor, max_iter: int = 100,
                     tol: float = 1e-3) -> Tensor:
    """MMMC's spatial division (Eq. 10): (B, K) scores (higher is better), (B, K) bool ->
    (B, K) bool, the valid candidates whose most probable component is the one of higher
    mean. Means start at each group's min and max (MMMC section 4.1), weights 0.5,
    variances 1, as PAA. One candidate or all-equal scores give two identical components:
    all positive. A group whose higher component wins no candidate keeps its best-scored
    one, so no group with a valid candidate is left without a positive."""
    _check_arguments(values, valid, max_iter, tol)
    x = torch.where(valid, values.to(torch.float64), 0.0)
    gmm = fit_gmm_1d(x, valid, max_iter, tol)
    high = gmm.means.argmax(dim=1, keepdim=True)  # (B, 1)
    positive = valid & (gmm.predict(x) == high)
    best = torch.where(valid, x, -math.inf).argmax(dim=1, keepdim=True)
    fallback = torch.zeros_like(valid).scatter(1, best, True) & valid
    return positive | (fallback & ~positive.any(dim=1, keepdim=True))


def _most_probable(log_prob: Tensor) -> Tensor:
    """(2, K, B) component log-densities -> (K, B) long most probable one (ties -> 0)."""
    return (log_prob[1] > log_prob[0]).long()


def _log_likelihood(log_prob: Tensor) -> Tensor:
    """(2, K, B) component log-densities -> (K, B) mixture log-likelihood."""
    return _mixture_terms(log_prob)[2]


def _mixture_terms(log_prob: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(2, K, B) component log-densities -> each component's density relative to the
    larger one (2, K, B), their sum (K, B) in [1, 2] and the mixture log-likelihood
    (K, B); the likelihood equals ``torch.logsumexp`` over the components (and scipy's,
    which sklearn uses), in half the time.

    Relative densities are clamped at e^-300: below it, exp() gives subnormal float64
    numbers, on which x86 arithmetic is ~100x slower, and e^-300 ~ 5e-131 vanishes next
    to the 1 of the larger component (the sum, so the likelihood, is unchanged) and next
    to sklearn's nk >= 10 eps in the M-step.
    """
    top = torch.maximum(log_prob[0], log_prob[1])
    relative = (log_prob - top).clamp(min=_MIN_LOG_RESP).exp()
    total = relative[0] + relative[1]
    return relative, total, total.log() + top


def _separate(values: Tensor, valid: Tensor, foreground: Tensor, log_lik: Tensor) -> Tensor:
    """The separation rule on (B, K) tensors: positive = valid and scored at most the
    score of component 0's most likely candidate (the lowest-scored one among equally
    likely ones, like the official ``argmax``); all valid when component 0 is empty.

    Equal to the official ``sorted_candidates[:argmax_fg + 1]``, except that candidates
    tied with the cut-off score are all positive (independent of the candidates' order).
    """
    foreground = foreground & valid
    fg_log_lik = torch.where(foreground, log_lik, -math.inf)
    best = foreground & (fg_log_lik == fg_log_lik.amax(dim=1, keepdim=True))
    cutoff = torch.where(best, values, math.inf).amin(dim=1, keepdim=True)  # (B, 1)
    has_foreground = foreground.any(dim=1, keepdim=True)
    return valid & (~has_foreground | (values <= cutoff))


def _initial_parameters(x: Tensor, valid: Tensor, count: Tensor) -> tuple[Tensor, ...]:
    """PAA init: means (min, max) of the valid values (0 for empty groups), weights 0.5,
    variances 1; each (B, 2)."""
    low = torch.where(valid, x, math.inf).amin(dim=1)
    high = torch.where(valid, x, -math.inf).amax(dim=1)
    means = torch.where((count > 0)[:, None], torch.stack([low, high], dim=1), 0.0)
    return means, torch.ones_like(means), torch.full_like(means, 0.5)


class _WorkingState:
    """What EM carries between iterations for the n groups of the working set, packed in
    one (8, n) tensor so that leaving groups drop out with one indexing, groups last as
    in the E/M steps. Rows: the means, variances and weights of the two components
    (2, n) each, the number of valid values (n,) and the previous iteration's bound (n,)
    (sklearn's convergence test compares with it; -inf before the first iteration)."""

    MEANS, VARIANCES, WEIGHTS, COUNT, BOUND = slice(0, 2), slice(2, 4), slice(4, 6), 6, 7

    def __init__(self, packed: Tensor):
        self.packed = packed  # (8, n)

    @classmethod
    def initial(cls, means: Tensor, variances: Tensor, weights: Tensor,
                count: Tensor) -> "_WorkingState":
        """From the (n, 2) parameters and (n,) counts of the groups, no bound yet."""
        bound = torch.full_like(count[:, None], -math.inf)
        return cls(torch.cat([means, variances, weights, count[:, None], bound], dim=1).t())

    def after_step(self, params: tuple[Tensor, Tensor, Tensor], bound: Tensor) -> "_WorkingState":
        """The state after an EM step: its M-step's (2, n) means, variances and weights,
        the same counts, and its E-step's (n,) bound."""
        return _WorkingState(torch.cat([*params, self.packed[self.COUNT, None], bound[None]]))

    def select(self, keep: Tensor) -> "_WorkingState":
        """The groups of the (n,) bool ``keep``."""
        return _WorkingState(self.packed[:, keep])

    @property
    def means(self) -> Tensor:
        return self.packed[self.MEANS]

    @property
    def variances(self) -> Tensor:
        return self.packed[self.VARIANCES]

    @property
    def weights(self) -> Tensor:
        return self.packed[self.WEIGHTS]

    @property
    def count(self) -> Tensor:
        return self.packed[self.COUNT]

    @property
    def bound(self) -> Tensor:
        return self.packed[self.BOUND]


def _em_step(x: Tensor, weight: Tensor, count: Tensor, params: tuple[Tensor, Tensor, Tensor],
             reg_covar: float) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """One EM iteration, as sklearn's, on n groups, last: values x (K, n) with weights
    (K, n) (1 valid, 0 padding), counts (n,) and (2, n) means, variances, weights. Returns
    the E-step's mean log-likelihood (n,) (sklearn's lower bound, of the parameters
    before the step) and the M-step's parameters: ``nk = sum resp + 10 eps``, weighted
    mean and variance (+ ``reg_covar``), weights ``nk / sum nk``."""
    # the same exponentials give the log-likelihood and the responsibilities
    relative, total, log_norm = _mixture_terms(_weighted_log_prob(x, *params))
    bound = (log_norm * weight).sum(dim=0) / count
    resp = relative * (weight / total)  # (2, K, n)
    nk = resp.sum(dim=1) + 10 * _EPS  # (2, n)
    new_means = (resp * x).sum(dim=1) / nk
    deviation = x - new_means[:, None]
    new_variances = (resp * (deviation * deviation)).sum(dim=1) / nk + reg_covar
    return bound, (new_means, new_variances, nk / nk.sum(dim=0))


def _weighted_log_prob(x: Tensor, means: Tensor, variances: Tensor, weights: Tensor) -> Tensor:
    """(K, B) values, (2, B) parameters -> (2, K, B) ``log(w_c N(x | mu_c, var_c))``,
    groups last (every operation on contiguous rows of B). Written with the precision's
    Cholesky factor and in sklearn's order of operations, so that equal-likelihood ties
    (two candidates symmetric about a mean) round as in sklearn."""
    precision_chol = 1.0 / variances.sqrt()  # (2, B)
    z = x * precision_chol[:, None] - (means * precision_chol)[:, None]
    log_gauss = -0.5 * (math.log(2 * math.pi) + z**2) + precision_chol.log()[:, None]
    return log_gauss + weights.log()[:, None]


def _check_arguments(values: Tensor, valid: Tensor, max_iter: int, tol: float) -> None:
    if values.dim() != 2 or values.shape != valid.shape:
        raise ValueError("values and valid must be 2-D (B, K) tensors of equal shape, got "
                         f"{tuple(values.shape)} and {tuple(valid.shape)}")
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got {valid.dtype}")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
