"""The ``k`` nearest points of a centre on every level (ATSS's candidates), searched in a
window around the centre instead of among all points of the level, so that the work
per centre is bounded whatever the number of centres G or points R.

The result is exact and the same on every device: distances are squared Euclidean
distances in float64 (exact for float32 coordinates on a grid of pixel or half-pixel
steps: sums of two exact squares), equal distances go to the lower point index, and a
window counts only when it proves that no point outside it is as close as its
``k``-th point. A window that cannot (a centre near the border of its level or outside
it, a level of few points) is doubled until it can, at worst until it holds the whole
level.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch

from .pairs import WindowIndex, widen

__all__ = ["nearest_per_level"]

_NO_POINT = torch.iinfo(torch.long).max


def nearest_per_level(index: WindowIndex, centers: torch.Tensor, k: int) -> torch.Tensor:
    """Per centre and level, the ``min(k, points on level)`` points nearest (L2) to the
    centre, ascending by distance, equal distances by point index. ``index`` holds the
    (R, 2) points of L levels; centers (G, 2) -> (G, K) indices into R, K = sum over
    levels of min(k, points on level), grouped by level.

    Rounds: each searches the points within distance ``reach`` of all pending (centre,
    level) pairs at once (a window holding the part of the disc of radius ``reach`` that
    meets the level's bounding box). ``reach`` is the centre's distance to that box plus
    a ``margin``, first ``sqrt(k / pi) + 1/4`` grid spacings of the level (the larger
    of its mean gaps along x and y, ``WindowIndex.level_grids``), which holds
    the ``k`` nearest points of any centre inside a regular grid (the ``k``-th is at most
    ``sqrt(k / pi) + 0.15`` spacings away for k <= 100). A pair whose window holds fewer
    than ``min(k, points on level)`` points, or whose last chosen point is farther than
    ``reach`` (a closer one could lie outside), doubles its ``margin`` for the next
    round. A centre that is not finite gets the first points of each level (its IoUs
    are NaN)."""
    device = centers.device
    widths = [min(k, count) for count in index.num_points_per_level]
    starts = [sum(index.num_points_per_level[:level]) for level in range(index.num_levels)]
    offsets = [sum(widths[:level]) for level in range(index.num_levels)]
    fallback = torch.cat([torch.arange(start, start + width, device=device)
                          for start, width in zip(starts, widths)])
    result = fallback.repeat(len(centers), 1)  # (G, K): the non-finite centres' answer
    grids = index.level_grids()
    spacing = grids.spacing.amax(dim=1)
    spacing = torch.where(spacing > 0, spacing, torch.ones_like(spacing))  # (L,)
    center64 = centers.double()
    margin = ((math.sqrt(k / math.pi) + 0.25) * spacing).repeat(len(centers), 1)  # (G, L)
    pending = (torch.tensor(widths, device=device) > 0) & torch.isfinite(centers).all(
        dim=1, keepdim=True)  # (G, L)
    while True:
        rows = pending.any(dim=1).nonzero().squeeze(1)  # one host synchronisation per round
        if len(rows) == 0:
            return result
        row_margin, row_pending = margin.index_select(0, rows), pending.index_select(0, rows)
        nearest, done = _search_round(index, center64.index_select(0, rows), grids.boxes, row_margin,
                                      row_pending, k, widths)
        for level, (offset, width) in enumerate(zip(offsets, widths)):
            accepted = done[:, level].nonzero().squeeze(1)
            result[rows.index_select(0, accepted), offset: offset + width] = (
                nearest[accepted, level, :width]
            )
        pending[rows] = row_pending & ~done
        margin[rows] = torch.where(done, row_margin, 2 * row_margin)


def _search_round(
    index: WindowIndex, centers: torch.Tensor, boxes: torch.Tensor, margin: torch.Tensor,
    pending: torch.Tensor, k: int, widths: List[int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One round for g centres (g, 2) float64, the levels' bounding boxes (L, 4) float64,
    margins (g, L) float64 and pending levels (g, L) bool -> the k nearest points of
    each window (g, L, k) (ascending distance, then index; unspecified past the
    window's points) and (g, L) bool, whether a pending window's points are exact."""
    num_levels = index.num_levels
    outside = torch.maximum(boxes[:, :2] - centers[:, None], centers[:, None] - boxes[:, 2:])
    outside = outside.clamp(min=0)  # (g, L, 2) distance to the box along x and along y
    reach = outside.square().sum(dim=2).sqrt() + margin  # (g, L)
    half = (reach[..., None].square() - outside.flip(dims=[2]).square()).clamp(min=0).sqrt()
    windows = widen(torch.cat([centers[:, None] - half, centers[:, None] + half], dim=2))
    nothing = torch.cat([centers + 1, centers - 1], dim=1)[:, None]  # (g, 1, 4) inverted
    windows = torch.where(pending[..., None], windows, nothing)  # (g, L, 4)
    nearest = torch.zeros((len(centers) * num_levels, k), dtype=torch.long, device=centers.device)
    count = torch.zeros(len(centers) * num_levels, dtype=torch.long, device=centers.device)
    last = torch.full((len(centers) * num_levels,), math.inf, dtype=torch.float64,
                      device=centers.device)
    width_of_level = torch.tensor(widths, device=centers.device)
    for gt, point in index.pairs(windows):
        if len(gt) == 0:
            continue
        group = gt * num_levels + index.level_of_point.index_select(0, point)  # ascending
        distance = (index.points.index_select(0, point).double()
                    - centers.index_select(0, gt)).square().sum(dim=1)
        first = int(group[0])
        part = _k_nearest_per_group(group - first, distance, point, k,
                                    width_of_level.roll(-(first % num_levels)))
        span = slice(first, first + len(part[0]))
        nearest[span], count[span], last[span] = part
    nearest, count, last = (t.view(len(centers), num_levels, *t.shape[1:])
                            for t in (nearest, count, last))
    level_size = torch.tensor(index.num_points_per_level, device=centers.device)
    exact = (count >= width_of_level) & ((last <= reach.square()) | (count == level_size))
    return nearest, pending & exact


def _k_nearest_per_group(
    group: torch.Tensor, distance: torch.Tensor, point: torch.Tensor, k: int,
    width_from_first: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (P,) of groups 0, 1, ... (ascending, some possibly empty), each with a
    distance and a point index, and ``width_from_first`` (L,) the width of group 0's
    level, then of the following levels (groups cycle over the L levels) -> per group:
    its k nearest points (ascending distance, then point index) (n, k), its number of
    pairs (n,) and the distance of its ``width``-th nearest (``inf`` with fewer pairs)
    (n,). The pairs are laid out in a (n, widest group) table, so every sort is along
    the short rows."""
    num_groups = int(group[-1]) + 1
    count = torch.bincount(group, minlength=num_groups)
    rank = torch.arange(len(group), device=group.device) - (count.cumsum(0) - count)[group]
    columns = max(int(count.max()), k)
    slots = group * columns + rank
    points = torch.full((num_groups * columns,), _NO_POINT, dtype=torch.long, device=group.device)
    distances = torch.full((num_groups * columns,), math.inf, dtype=torch.float64,
                           device=group.device)
    points[slots], distances[slots] = point, distance
    points, by_point = points.view(num_groups, columns).sort(dim=1)
    distances = distances.view(num_groups, columns).gather(1, by_point)
    distances, by_distance = distances.sort(dim=1, stable=True)
    nearest = points.gather(1, by_distance[:, :k])
    width = width_from_first.repeat(num_groups // len(width_from_first) + 1)[:num_groups]
    last = distances.gather(1, (width - 1).clamp(min=0)[:, None]).squeeze(1)
    return nearest, count, torch.where(count >= width, last, math.inf)
