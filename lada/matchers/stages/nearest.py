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

from . import pairs as pairs_module
from .pairs import WindowIndex, widen

__all__ = ["nearest_dense", "nearest_per_level"]

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
    offsets = _starts(widths)
    fallback = torch.cat([torch.arange(start, start + width, device=device)
                          for start, width in zip(_starts(index.num_points_per_level), widths)])
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
        nearest, done = _search_round(index, center64.index_select(0, rows), grids.boxes,
                                      row_margin, row_pending, k, widths)
        for level, (offset, width) in enumerate(zip(offsets, widths)):
            accepted = done[:, level].nonzero().squeeze(1)
            result[rows.index_select(0, accepted), offset: offset + width] = (
                nearest[accepted, level, :width]
            )
        pending[rows] = row_pending & ~done
        margin[rows] = torch.where(done, row_margin, 2 * row_margin)


def nearest_dense(
    points: torch.Tensor, num_points_per_level: List[int], centers: torch.Tensor, k: int
) -> torch.Tensor:
    """:func:`nearest_per_level` from the distances of every centre to every point (G, R):
    for small G R (``pairs.SMALL_PROBLEM_ELEMENTS``), where it costs less than the
    rounds of window searches. The ``k + 1`` smallest of a centre's row on a level
    decide it unless two of them are equal (or not finite); such rows are sorted
    stably."""
    x, y = points.double().unbind(dim=1)
    cx, cy = centers.double().unbind(dim=1)
    distances = (x - cx[:, None]).square() + (y - cy[:, None]).square()  # (G, R)
    levels = list(zip(_starts(num_points_per_level), num_points_per_level))
    parts = [distances[:, start:start + count].topk(min(k + 1, count), dim=1, largest=False)
             for start, count in levels]
    smallest = torch.cat([part.values for part in parts], dim=1)  # (G, W), W = sum of widths
    nearest = torch.cat([part.indices + start for part, (start, _) in zip(parts, levels)], dim=1)
    widths = [min(k + 1, count) for _, count in levels]
    firsts = _starts(widths)  # the first column of each level's k + 1 smallest
    same_level = torch.ones(max(sum(widths) - 1, 0), dtype=torch.bool, device=points.device)
    same_level[[first - 1 for first in firsts if 0 < first < sum(widths)]] = False
    tied = ((smallest.diff(dim=1) == 0) & same_level).any(dim=1)
    tied |= ~torch.isfinite(smallest).all(dim=1)
    nearest = nearest[:, [first + i for first, (_, count) in zip(firsts, levels)
                          for i in range(min(k, count))]]
    ties = tied.nonzero().squeeze(1)
    if len(ties):  # rare: equal distances among the k + 1 smallest, sorted stably
        nearest[ties] = torch.cat([
            distances[ties, start:start + count].sort(dim=1, stable=True).indices[:, :min(k, count)]
            + start for start, count in levels], dim=1)
    return nearest


def _starts(counts: List[int]) -> List[int]:
    """Offsets of consecutive ranges of the given sizes."""
    return [sum(counts[:index]) for index in range(len(counts))]


def _search_round(
    index: WindowIndex, centers: torch.Tensor, boxes: torch.Tensor, margin: torch.Tensor,
    pending: torch.Tensor, k: int, widths: List[int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One round for g centres (g, 2) float64, the levels' bounding boxes (L, 4) float64,
    margins (g, L) float64 and pending levels (g, L) bool -> the k nearest points of
    each window (g, L, k) (ascending distance, then index; unspecified past the
    window's points) and (g, L) bool, whether a pending window's points are exact."""
    outside = torch.maximum(boxes[:, :2] - centers[:, None], centers[:, None] - boxes[:, 2:])
    outside = outside.clamp(min=0)  # (g, L, 2) distance to the box along x and along y
    reach = outside.square().sum(dim=2).sqrt() + margin  # (g, L)
    half = (reach[..., None].square() - outside.flip(dims=[2]).square()).clamp(min=0).sqrt()
    windows = widen(torch.cat([centers[:, None] - half, centers[:, None] + half], dim=2))
    nothing = torch.cat([centers + 1, centers - 1], dim=1)[:, None]  # (g, 1, 4) inverted
    windows = torch.where(pending[..., None], windows, nothing)  # (g, L, 4)
    width = torch.tensor(widths, device=centers.device).repeat(len(centers))  # (g L,)
    search = _nearest_in_grid_blocks if index.is_grid else _nearest_in_pairs
    nearest, count, last = search(index, centers, windows, k, width)
    nearest, count, last = (t.view(len(centers), index.num_levels, *t.shape[1:])
                            for t in (nearest, count, last))
    level_size = torch.tensor(index.num_points_per_level, device=centers.device)
    enough = count >= torch.tensor(widths, device=centers.device)
    exact = enough & ((last <= reach.square()) | (count == level_size))
    return nearest, pending & exact


def _nearest_in_pairs(
    index: WindowIndex, centers: torch.Tensor, windows: torch.Tensor, k: int, width: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per window of ``windows`` (g, L, 4), flattened to g L: its k nearest points to its
    centre (g, 2) float64 (g L, k), its number of points (g L,) and the distance of its
    ``width`` (g L,)-th nearest (``inf`` with fewer points) (g L,), from the points of
    ``WindowIndex.pairs`` laid out in a (windows, most points) table."""
    num_levels = index.num_levels
    nearest = torch.zeros((len(width), k), dtype=torch.long, device=centers.device)
    count = torch.zeros(len(width), dtype=torch.long, device=centers.device)
    last = torch.full((len(width),), math.inf, dtype=torch.float64, device=centers.device)
    for gt, point in index.pairs(windows):
        if len(gt) == 0:
            continue
        group = gt * num_levels + index.level_of_point.index_select(0, point)  # ascending
        first = int(group[0])
        group = group - first
        span = torch.arange(first, first + int(group[-1]) + 1, device=group.device)
        found = torch.bincount(group, minlength=len(span))
        count[span] = found
        first_of_group = (found.cumsum(0) - found).index_select(0, group)
        rank = torch.arange(len(group), device=group.device) - first_of_group
        points = torch.full((len(span), max(int(found.max()), k)), _NO_POINT, dtype=torch.long,
                            device=group.device)
        points[group, rank] = point
        points = points.sort(dim=1).values  # point order: equal distances by point index
        owner = torch.div(span, num_levels, rounding_mode="floor")
        distances = _squared_distances(index, points, centers.index_select(0, owner))
        nearest[span], last[span] = _k_nearest_in_rows(points, distances, k, width[span])
    return nearest, count, last


def _nearest_in_grid_blocks(
    index: WindowIndex, centers: torch.Tensor, windows: torch.Tensor, k: int, width: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_nearest_in_pairs` when every level is a full grid (``WindowIndex.is_grid``):
    a window's points are a block of its columns times its rows
    (``WindowIndex.grid_ranges``), laid out directly in a (windows, rows, columns)
    table, whose squared distances are sums of one term per column and one per row.
    The windows are grouped by their numbers of columns and rows rounded up to powers
    of two, so that a table is at least a quarter full, and a table holds at most
    ``MAX_CHUNK_ELEMENTS`` cells."""
    first_column, columns, first_row, rows = (t.reshape(-1) for t in index.grid_ranges(windows))
    count = columns * rows  # (g L,)
    size_class = torch.where(count > 0, _log2_ceil(columns) * 64 + _log2_ceil(rows), -1)
    by_class = size_class.argsort(stable=True)
    classes, sizes = torch.unique_consecutive(size_class.index_select(0, by_class),
                                              return_counts=True)
    nearest = torch.zeros((len(count), k), dtype=torch.long, device=centers.device)
    last = torch.full((len(count),), math.inf, dtype=torch.float64, device=centers.device)
    for size, members in zip(classes.tolist(), by_class.split(sizes.tolist())):
        if size < 0:  # empty windows
            continue
        most_columns = int(columns.index_select(0, members).max())
        most_rows = int(rows.index_select(0, members).max())
        per_chunk = max(pairs_module.MAX_CHUNK_ELEMENTS // max(most_columns * most_rows, k), 1)
        for part in members.split(per_chunk):
            owner = torch.div(part, index.num_levels, rounding_mode="floor")
            found, distance = _grid_block(
                index, centers.index_select(0, owner),
                first_column.index_select(0, part), columns.index_select(0, part), most_columns,
                first_row.index_select(0, part), rows.index_select(0, part), most_rows, k,
                width.index_select(0, part),
            )
            nearest.index_copy_(0, part, found)
            last.index_copy_(0, part, distance)
    return nearest, count, last


def _grid_block(
    index: WindowIndex, centers: torch.Tensor, first_column: torch.Tensor, columns: torch.Tensor,
    most_columns: int, first_row: torch.Tensor, rows: torch.Tensor, most_rows: int, k: int,
    width: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k nearest points (n, k) of n blocks of ``columns`` (n,) columns from
    ``first_column`` (n,) times ``rows`` rows from ``first_row``, at most ``most_columns``
    and ``most_rows``, to their centres (n, 2) float64, and the distance of the
    ``width`` (n,)-th (n,) (:func:`_k_nearest_in_rows`)."""
    column, column_ok = _block_axis(first_column, columns, most_columns)  # (n, columns)
    row, row_ok = _block_axis(first_row, rows, most_rows)  # (n, rows)
    x = index.points[index.grid_points(column, row[:, :1]), 0].double()  # (n, columns)
    y = index.points[index.grid_points(column[:, :1], row), 1].double()  # (n, rows)
    along_x = torch.where(column_ok, (x - centers[:, :1]).square(), math.inf)
    along_y = torch.where(row_ok, (y - centers[:, 1:]).square(), math.inf)
    distances = (along_y[:, :, None] + along_x[:, None, :]).flatten(1)  # (n, rows columns)
    points = index.grid_points(column[:, None, :], row[:, :, None]).flatten(1)
    if not index.row_major:  # tables in point order: equal distances by point index
        points = torch.where(torch.isinf(distances), _NO_POINT, points)
        points, by_point = points.sort(dim=1)
        distances = distances.gather(1, by_point)
    points, distances = _pad_columns(points, distances, k)
    return _k_nearest_in_rows(points, distances, k, width)


def _block_axis(
    first: torch.Tensor, number: torch.Tensor, most: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Columns (or rows) ``first + 0 .. most - 1`` (n, most) of blocks starting at
    ``first`` (n,) with ``number`` (n,) of them, those past ``number`` replaced by
    ``first``, and whether each is one of the block's (n, most) bool."""
    offset = torch.arange(most, device=first.device)
    inside = offset < number[:, None]
    return first[:, None] + torch.where(inside, offset, 0), inside


def _log2_ceil(values: torch.Tensor) -> torch.Tensor:
    """Smallest e with 2^e >= values (long, >= 1 where it matters) -> long."""
    return torch.ceil(torch.log2(values.clamp(min=1).double())).long()


def _pad_columns(
    points: torch.Tensor, distances: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tables (n, c) widened to at least k columns, with ``_NO_POINT`` at ``inf``."""
    missing = k - points.shape[1]
    if missing <= 0:
        return points, distances
    return (torch.cat([points, points.new_full((len(points), missing), _NO_POINT)], dim=1),
            torch.cat([distances, distances.new_full((len(points), missing), math.inf)], dim=1))


def _squared_distances(
    index: WindowIndex, points: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """Squared distances (n, c) float64 of a table of points (n, c) (``_NO_POINT`` in
    empty cells, whose distance is ``inf``) to one centre (n, 2) float64 per row."""
    valid = points != _NO_POINT
    xy = index.points.index_select(0, torch.where(valid, points, 0).reshape(-1)).double()
    offsets = xy.view(*points.shape, 2) - centers[:, None]
    return torch.where(valid, offsets[..., 0].square() + offsets[..., 1].square(), math.inf)


def _k_nearest_in_rows(
    points: torch.Tensor, distances: torch.Tensor, k: int, width: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows of points (n, c) in ascending order of point index (empty cells, at distance
    ``inf``, anywhere) and their distances (n, c), c >= k -> per row the k points of
    smallest distance, equal distances by point index (n, k), and the distance of the
    ``width`` (n,)-th of them (n,)."""
    distances, by_distance = distances.sort(dim=1, stable=True)
    last = distances.gather(1, (width - 1).clamp(min=0)[:, None]).squeeze(1)
    return points.gather(1, by_distance[:, :k]), last
