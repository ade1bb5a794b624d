"""Sparse (GT, point) pairs instead of dense ``(G, R)`` matrices, and GT chunks.

Most (G, R) tests of the matchers (near the GT centre, inside the GT, anchor box
overlapping the GT) hold for a few points of each GT only, yet the dense form costs
O(G R) time and memory: at G = 1,000 on an 800x1333 image (R = 22,300) every (G, R)
float32 tensor takes 89 MB. ``WindowIndex`` finds the points of a rectangular window per
(GT, level) by binary search on each level's points sorted by x, and yields the pairs in
chunks of consecutive GT boxes holding about ``max_pairs`` pairs each, so that peak
memory stays bounded whatever G. A window is a superset: callers evaluate their exact
test (the same float expression as the dense form) on each chunk's pairs.
``gt_chunks`` bounds dense per-GT work (G rows of R columns) the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch

__all__ = ["LevelGrids", "MAX_CHUNK_ELEMENTS", "SMALL_PROBLEM_ELEMENTS", "WindowIndex", "gt_chunks",
           "level_maxima", "widen"]

MAX_CHUNK_ELEMENTS = 1 << 20
"""Elements per chunk (pairs, or rows x columns): about 4 MiB per float32 tensor, so a
chunk's dozen intermediates stay within tens of MiB."""

SMALL_PROBLEM_ELEMENTS = 1 << 17
"""Up to this many (GT, point) combinations (G x R: a training batch of small images),
the stages that search the neighbourhood of each GT in rounds (``nearest.py``, the
pruned preliminary match) take their exhaustive form instead, whose fewer operations
cost less than the searches' fixed work; the results are the same."""


def gt_chunks(costs: torch.Tensor, max_elements: Optional[int] = None) -> List[slice]:
    """Consecutive ranges of GT boxes, each of summed ``costs`` (G,) at most
    ``max_elements`` (default ``MAX_CHUNK_ELEMENTS``) plus the cost of its first GT (a GT
    is never split), covering all G. One host synchronisation."""
    if costs.numel() == 0:
        return []
    if max_elements is None:
        max_elements = MAX_CHUNK_ELEMENTS
    cumulative = costs.detach().to("cpu", torch.long).cumsum(0)
    chunk_of_gt = (cumulative - 1).clamp(min=0) // max(int(max_elements), 1)
    sizes = torch.unique_consecutive(chunk_of_gt, return_counts=True)[1].tolist()
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    return [slice(start, end) for start, end in zip(starts[:-1], starts[1:])]


def level_maxima(values: torch.Tensor, num_points_per_level: List[int]) -> torch.Tensor:
    """Per level, the largest of the points' ``values`` (R, ...) -> (L, ...); 0 for an
    empty level."""
    return torch.stack([
        level.amax(dim=0) if len(level) else values.new_zeros(values.shape[1:])
        for level in values.split(list(num_points_per_level))
    ])


def widen(windows: torch.Tensor, relative: float = 1e-4, absolute: float = 1e-2) -> torch.Tensor:
    """Windows (..., 4) XYXY grown on every side by ``absolute + relative * |coordinate|``,
    so that a window computed in float arithmetic contains every point that the exact
    test (also computed in floats, rounded differently) accepts."""
    margin = absolute + relative * windows.abs()
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=windows.dtype, device=windows.device)
    return windows + sign * margin


class _GridRows(NamedTuple):
    """The rows of a ``WindowIndex`` whose levels are full grids (all None, False
    otherwise): sorted row keys (rows,), the first row of each level (L,), and whether
    the points are listed row by row."""

    row_key: Optional[torch.Tensor]
    first_row: Optional[torch.Tensor]
    row_major: bool


@dataclass
class LevelGrids:
    """Per level of a ``WindowIndex``, float64 on the points' device: the bounding box
    of its points (L, 4) XYXY, its mean gap between consecutive distinct x and between
    consecutive distinct y (L, 2) (0 along an axis of one coordinate; 1 for an empty
    level), and whether it is a regular grid (L,) bool: a full grid (``is_grid``) whose
    gaps are all equal along each axis, where every location within the bounding box
    is within half a gap of a point along each axis."""

    boxes: torch.Tensor
    spacing: torch.Tensor
    regular: torch.Tensor


class WindowIndex:
    """The points of every level grouped in columns (equal x), each column sorted by y,
    to find the points inside per-(GT, level) windows by binary search instead of
    testing all R points against every GT: the work is proportional to the columns the
    windows span plus the pairs found. When every level is a full grid (the points of
    feature maps), a window's rows are the same in all its columns and are searched
    once per window instead of once per column.

    Points are ordered by one float64 key per point, ``column * y_span + (y - y_min)``,
    columns numbered across levels; columns by ``level * x_span + (x - x_min)``. Both
    keys are monotone in the coordinate within a column or level, so a window's bounds
    mapped the same way select exactly the points between them (float rounding is
    monotone), and the spans keep levels and columns apart.

    Args:
        points: (R, 2) point coordinates, levels concatenated.
        num_points_per_level: points per level, sums to R.

    Attributes:
        points, num_points_per_level: as given; num_levels: L.
        level_of_point: (R,) long, the level of each point.
    """

    def __init__(self, points: torch.Tensor, num_points_per_level: List[int]):
        self.points = points
        self.num_points_per_level = list(num_points_per_level)
        self.num_levels = len(num_points_per_level)
        device = points.device
        xy = points.double()
        self._min = xy.amin(dim=0) if len(xy) else xy.new_zeros(2)
        self._span = ((xy.amax(dim=0) - self._min).floor() + 2) if len(xy) else xy.new_ones(2)
        self.level_of_point = torch.repeat_interleave(
            torch.arange(self.num_levels, device=device),
            torch.tensor(num_points_per_level, device=device, dtype=torch.long),
            output_size=len(points),
        )
        x_key = self._x_key(self.level_of_point.double(), xy[:, 0])
        self.column_key, column = torch.unique(x_key, sorted=True, return_inverse=True)
        key = self._y_key(column.double(), xy[:, 1])
        self.key, self.order = key.sort(stable=True)
        sizes = torch.bincount(column, minlength=len(self.column_key))
        self.column_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])  # (columns + 1,)
        self._column = column

    @property
    def is_grid(self) -> bool:
        """Whether every level is a full grid: its points are every combination of its
        distinct x and its distinct y, once each, as the points of a feature map."""
        return self._grid.row_key is not None

    @property
    def row_major(self) -> bool:
        """``is_grid``, and each level lists its points row by row (ascending y), each row
        by ascending x, as the points of a feature map."""
        return self._grid.row_major

    @cached_property
    def _grid(self) -> "_GridRows":
        """``_grid_rows``, found when first needed (small inputs never need it)."""
        return self._grid_rows(self.points[:, 1].double(), self._column)

    def level_grids(self) -> LevelGrids:
        """Each level's bounding box and grid spacing (``LevelGrids``), float64."""
        if self.is_grid:
            return self._full_grid_geometry()
        boxes, spacing = [], []
        for points in self.points.double().split(self.num_points_per_level):
            gaps = [torch.unique(points[:, axis]).diff() for axis in (0, 1)]
            boxes.append(torch.cat([points.amin(dim=0), points.amax(dim=0)]) if len(points)
                         else points.new_zeros(4))
            spacing.append(torch.stack([g.mean() if len(g) else g.new_tensor(0.0) for g in gaps])
                           if len(points) else points.new_ones(2))
        regular = torch.zeros(self.num_levels, dtype=torch.bool, device=self.points.device)
        return LevelGrids(torch.stack(boxes), torch.stack(spacing), regular)

    def _full_grid_geometry(self) -> LevelGrids:
        """``level_grids`` of a full grid, from its columns' x and its rows' y."""
        xy = self.points.double()
        levels = torch.arange(self.num_levels, device=xy.device)
        first_points = self.order[self.column_start[:-1]]  # (C,) the first point of each column
        columns = torch.bincount(self.level_of_point[first_points], minlength=self.num_levels)
        first_row = self._grid.first_row
        rows = torch.diff(torch.cat([first_row, first_row.new_tensor([len(self._grid.row_key)])]))
        column_x = xy[first_points, 0]  # (C,) ascending within each level
        first_column = (columns.cumsum(0) - columns).clamp(max=max(len(column_x) - 1, 0))
        _, row = _expand(rows, torch.zeros_like(rows))  # a level's rows: its first column
        row_y = xy[self.order[self.column_start[first_column.repeat_interleave(rows)] + row], 1]
        ranges, spacing, regular = [], [], []
        for values, count in ((column_x, columns), (row_y, rows)):
            level = levels.repeat_interleave(count)
            start = (count.cumsum(0) - count).clamp(max=max(len(values) - 1, 0))
            low, high = values[start], values[(start + count - 1).clamp(min=0)]
            ranges.append((low, high))
            spacing.append(torch.where(count > 1, (high - low) / (count - 1).clamp(min=1), 0.0))
            gaps, first_gap = values.diff(), values[(start + 1).clamp(max=len(values) - 1)] - low
            unequal = (level[1:] == level[:-1]) & (gaps != first_gap[level[1:]])
            regular.append(torch.bincount(level[1:][unequal], minlength=self.num_levels) == 0)
        empty = torch.tensor(self.num_points_per_level, device=xy.device) == 0
        boxes = torch.stack([ranges[0][0], ranges[1][0], ranges[0][1], ranges[1][1]], dim=1)
        return LevelGrids(
            torch.where(empty[:, None], 0.0, boxes),
            torch.where(empty[:, None], 1.0, torch.stack(spacing, dim=1)),
            regular[0] & regular[1] & ~empty,
        )

    def _grid_rows(self, y: torch.Tensor, column: torch.Tensor) -> "_GridRows":
        """From the points' y (R,) and columns (R,): when ``is_grid``, the sorted row
        keys ``level * y_span + (y - y_min)`` (rows,), the first row of each level (L,)
        and ``row_major``; None, None, False otherwise. On a full grid every column of a
        level holds the level's rows, so a point's row is its rank in its column (the
        rows are those of the level's first column), and a window's points are found by
        one search for its rows instead of one per column. O(R), no sort."""
        if len(y) == 0 or not bool((self.key.diff() > 0).all()):  # a repeated point
            return _GridRows(None, None, False)
        arange = torch.arange(len(y), device=y.device)
        position = torch.empty_like(self.order).index_copy_(0, self.order, arange)
        rank = position - self.column_start.index_select(0, column)  # (R,) row in its column
        level = self.level_of_point
        level_of_column = level.index_select(0, self.order.index_select(0, self.column_start[:-1]))
        columns = torch.bincount(level_of_column, minlength=self.num_levels)  # (L,)
        first_column = (columns.cumsum(0) - columns).clamp(max=len(level_of_column) - 1)
        sizes = self.column_start.diff()  # (C,) points per column
        rows = torch.where(columns > 0, sizes.index_select(0, first_column), 0)  # (L,)
        first_of_level = self.column_start.index_select(0, first_column)  # (L,) its position
        same_rows = first_of_level.index_select(0, level) + rank.clamp(max=len(y) - 1)
        row_y = y.index_select(0, self.order.index_select(0, same_rows))
        counts = torch.tensor(self.num_points_per_level, device=y.device)
        if not (torch.equal(columns * rows, counts)
                and torch.equal(sizes, rows.index_select(0, level_of_column))
                and torch.equal(row_y, y)):
            return _GridRows(None, None, False)
        _, row = _expand(rows, torch.zeros_like(rows))
        first_points = self.order.index_select(0, first_of_level.repeat_interleave(rows) + row)
        row_key = self._y_key(level.index_select(0, first_points).double(),
                              y.index_select(0, first_points).double())
        start = counts.cumsum(0) - counts
        first_column_number = columns.cumsum(0) - columns
        in_row_major = (start - first_column_number).index_select(0, level) + column + (
            rank * columns.index_select(0, level))
        row_major = bool(torch.equal(in_row_major, arange))
        return _GridRows(row_key, rows.cumsum(0) - rows, row_major)

    def pairs(
        self, windows: torch.Tensor, max_pairs: Optional[int] = None,
        point_values: Optional[torch.Tensor] = None,
    ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yields, for chunks of consecutive GT boxes, ``(gt, point)`` (M,) long: every
        point of level l with ``x0 <= x <= x1`` and ``y0 <= y <= y1`` where ``windows[g,
        l] = (x0, y0, x1, y1)`` (G, L, 4). A chunk's GTs hold about ``max_pairs`` (default
        ``MAX_CHUNK_ELEMENTS``) points in the x ranges of their windows (the pairs found
        are fewer). ``point_values`` (R,): yield ``point_values[point]`` instead of
        ``point`` (a caller's own numbering of the points, in one gather per pair)."""
        if windows.shape[1:] != (self.num_levels, 4):
            raise ValueError(
                f"windows must be (G, {self.num_levels}, 4), got {tuple(windows.shape)}"
            )
        sorted_values = self.order if point_values is None else point_values.index_select(
            0, self.order)
        bounds = windows.double()
        first_column, columns = self._column_ranges(bounds)
        in_x_range = self.column_start[first_column + columns] - self.column_start[first_column]
        grid = len(windows) * len(self.points) > SMALL_PROBLEM_ELEMENTS and self.is_grid
        if grid:  # a full grid: the window's rows, the same in each column
            first_row, rows = self._row_ranges(bounds)
        for chunk in gt_chunks(in_x_range.sum(dim=1), max_pairs):
            window, column = _expand(columns[chunk].reshape(-1), first_column[chunk].reshape(-1))
            if not len(window):
                continue
            if not grid:
                low_y = bounds[chunk, :, 1].reshape(-1).index_select(0, window)
                high_y = bounds[chunk, :, 3].reshape(-1).index_select(0, window)
                column_key = column.double()
                first = torch.searchsorted(self.key, self._y_key(column_key, low_y), side="left")
                end = torch.searchsorted(self.key, self._y_key(column_key, high_y), side="right")
                count = (end - first).clamp(min=0)
            else:
                first = self.column_start.index_select(0, column) + first_row[chunk].reshape(
                    -1).index_select(0, window)
                count = rows[chunk].reshape(-1).index_select(0, window)
            group, position = _expand(count, first)
            gt_of_window = chunk.start + torch.div(window, self.num_levels, rounding_mode="floor")
            yield gt_of_window.index_select(0, group), sorted_values.index_select(0, position)

    def grid_ranges(self, windows: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """When ``is_grid``: the points of ``pairs``' windows (..., L, 4) as ranges of
        columns and rows, each (..., L) long: the first column (numbered across levels),
        the number of columns, the first row (within its level) and the number of rows;
        the points are :meth:`grid_points` of those columns and rows."""
        if not self.is_grid:
            raise ValueError("grid_ranges needs points forming a full grid on every level")
        bounds = windows.double()
        return (*self._column_ranges(bounds), *self._row_ranges(bounds))

    def grid_points(self, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """When ``is_grid``: the point (index into R) in ``column`` (numbered across
        levels) and ``row`` (within the column's level), broadcast."""
        position = self.column_start.index_select(0, column.reshape(-1)).view(column.shape) + row
        return self.order.index_select(0, position.reshape(-1)).view(position.shape)

    def _column_ranges(self, bounds: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """First column and number of columns (..., L) of windows (..., L, 4) float64."""
        level = torch.arange(self.num_levels, device=bounds.device, dtype=torch.float64)
        low, high = self._x_key(level, bounds[..., 0]), self._x_key(level, bounds[..., 2])
        first = torch.searchsorted(self.column_key, low.contiguous(), side="left")
        end = torch.searchsorted(self.column_key, high.contiguous(), side="right")
        return first, (end - first).clamp(min=0)

    def _row_ranges(self, bounds: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """First row within the level and number of rows (..., L) of windows (..., L, 4)
        float64 on a full grid."""
        level = torch.arange(self.num_levels, device=bounds.device, dtype=torch.float64)
        low, high = self._y_key(level, bounds[..., 1]), self._y_key(level, bounds[..., 3])
        first = torch.searchsorted(self._grid.row_key, low.contiguous(), side="left")
        end = torch.searchsorted(self._grid.row_key, high.contiguous(), side="right")
        return first - self._grid.first_row, (end - first).clamp(min=0)

    def _x_key(self, level: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Column key of x coordinates (float64) on the given levels, broadcast."""
        offset = (x - self._min[0]).clamp(min=-0.5, max=float(self._span[0]) - 1)
        return level * self._span[0] + offset

    def _y_key(self, column: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Point key of y coordinates (float64) in the given columns, broadcast."""
        offset = (y - self._min[1]).clamp(min=-0.5, max=float(self._span[1]) - 1)
        return column * self._span[1] + offset


def _expand(counts: torch.Tensor, starts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ranges ``starts[i] .. starts[i] + counts[i] - 1`` laid end to end: (n,), (n,) ->
    the range each element belongs to and its value, both (sum of counts,)."""
    total = int(counts.sum())
    owner = torch.repeat_interleave(
        torch.arange(len(counts), device=counts.device), counts, output_size=total
    )
    range_start = (counts.cumsum(0) - counts).index_select(0, owner)
    offset = torch.arange(total, device=counts.device) - range_start
    return owner, starts.index_select(0, owner) + offset
