"""Entropic optimal transport over a sparse cost (OTA, Ge et al., CVPR 2021, section 3.2):
Sinkhorn-Knopp iterations in the log domain, in float64, for all images of a batch at
once, without a (suppliers, points) matrix.

The problem of one image: suppliers are GT boxes g, each with supply ``mu_g``, and the
background with supply ``mu_bg``; every point p demands ``nu_p = 1``. A GT is connected to
the points of its pairs only (the cost of any other point is so large that its plan
entry is 0), the background to every point of its image. With potentials ``f`` of the
suppliers and ``psi`` of the points, all 0 at the start, each iteration is

    psi_p = ln(nu_p + 1e-8) - LSE_{i ~ p}(-c(p, i) / eps + f_i)
    f_i   = ln(mu_i + 1e-8) - LSE_{p ~ i}(-c(p, i) / eps + psi_p)

(``i ~ p``: the suppliers connected to p), and the plan is
``pi(p, i) = exp(-c(p, i) / eps + f_i + psi_p)``: the official ``SinkhornDistance``
with ``u = eps f``, ``v = eps psi`` (its initial ``u = 1`` cancels in the plan). The
log-sum-exps are segment reductions over the pairs (a maximum, then a sum of exponentials),
a fixed number of iterations with no host synchronisation.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

__all__ = ["sparse_sinkhorn_log_plan"]

_LOG_OFFSET = 1e-8
"""Added to supplies and demands before their logarithm (the official code's), so that a
background of supply 0 stays finite."""


def sparse_sinkhorn_log_plan(
    pair_cost: torch.Tensor,
    pair_point: torch.Tensor,
    pair_supplier: torch.Tensor,
    supply: torch.Tensor,
    background_cost: torch.Tensor,
    background_supply: torch.Tensor,
    eps: float,
    iterations: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The logarithm of the transport plan after ``iterations`` Sinkhorn iterations
    (module docstring), float64.

    Args:
        pair_cost: (P,) cost of each (point, GT supplier) edge.
        pair_point: (P,) long, the flat point key ``image * R + point`` of each edge.
        pair_supplier: (P,) long, its GT supplier in [0, M).
        supply: (M,) supply of each GT supplier; a supplier without edges is ignored.
        background_cost: (N, R) cost of each point's background edge.
        background_supply: (N,) supply of each image's background.
        eps: the entropic regularisation.
        iterations: Sinkhorn iterations (exactly that many).

    Returns:
        ``ln pi`` of the P edges (P,) and of the background edges (N, R).
    """
    num_images, num_points = background_cost.shape
    pair_logit = -pair_cost.double() / eps  # (P,)
    background_logit = -background_cost.double() / eps  # (N, R)
    log_supply = torch.log(supply.double() + _LOG_OFFSET)  # (M,)
    log_background_supply = torch.log(background_supply.double() + _LOG_OFFSET)[:, None]  # (N, 1)
    log_demand = math.log(1.0 + _LOG_OFFSET)
    supplier_potential = torch.zeros_like(log_supply)
    background_potential = torch.zeros_like(log_background_supply)
    point_potential = background_logit.new_zeros(num_images * num_points)
    for _ in range(iterations):
        point_potential = log_demand - _segment_logsumexp(
            pair_logit + supplier_potential.index_select(0, pair_supplier), pair_point,
            (background_logit + background_potential).reshape(-1),
        )
        supplier_potential = log_supply - _segment_logsumexp(
            pair_logit + point_potential.index_select(0, pair_point), pair_supplier,
            torch.full_like(log_supply, float("-inf")),
        )
        background_potential = log_background_supply - torch.logsumexp(
            background_logit + point_potential.view(num_images, num_points), dim=1, keepdim=True
        )
    pair_log_plan = (pair_logit + supplier_potential.index_select(0, pair_supplier)
                     + point_potential.index_select(0, pair_point))
    background_log_plan = (background_logit + background_potential
                           + point_potential.view(num_images, num_points))
    return pair_log_plan, background_log_plan


def _segment_logsumexp(
    values: torch.Tensor, segment: torch.Tensor, base: torch.Tensor
) -> torch.Tensor:
    """``ln(exp(base_s) + sum_{j: segment_j = s} exp(values_j))`` for every segment s:
    values (P,), segment (P,) long, base (S,) (``-inf``: no base term) -> (S,). The
    maximum of each segment is subtracted before the exponentials."""
    top = base.clone().scatter_reduce_(0, segment, values, "amax")  # (S,)
    finite_top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.exp(base - finite_top).scatter_add_(
        0, segment, torch.exp(values - finite_top.index_select(0, segment))
    )
    return finite_top + torch.log(total)
