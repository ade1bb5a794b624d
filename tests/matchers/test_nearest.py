"""The k nearest points of a centre per level (ATSS's candidates), searched in windows
around the centre (stages/nearest.py) or from every distance (its form for small
inputs), against a plain loop over every point written from the definition: squared
distance, equal distances to the lower point index."""
import math

import pytest
import torch

from lada.matchers.stages import pairs as pairs_module
from lada.matchers.stages.nearest import nearest_dense, nearest_per_level
from lada.matchers.stages.pairs import WindowIndex


def nearest_by_loop(points, counts, centers, k):
    """Per centre and level, the min(k, count) nearest points by a loop over the points;
    a centre that is not finite has every point at the same distance (its IoUs are NaN)."""
    rows = []
    for cx, cy in centers.double().tolist():
        row, start = [], 0
        finite = math.isfinite(cx) and math.isfinite(cy)
        for count in counts:
            distance = [((x - cx) ** 2 + (y - cy) ** 2 if finite else 0.0, start + i)
                        for i, (x, y) in enumerate(points[start:start + count].double().tolist())]
            row += [index for _, index in sorted(distance)[:min(k, count)]]
            start += count
        rows.append(row)
    return rows


def feature_map_points(strides, width, height):
    """Points of feature maps, row by row, as the detector's anchor points."""
    levels = []
    for s in strides:
        ys, xs = torch.meshgrid(torch.arange((height + s - 1) // s), torch.arange((width + s - 1) // s),
                                indexing="ij")
        levels.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float() * s + s / 2)
    return torch.cat(levels), [len(level) for level in levels]


def scenes():
    """(name, points, counts, centres): feature maps with centres inside, on exact ties
    (integer coordinates between grid points), near and far outside the image; the same
    maps listed in another order; points that form no grid; levels with fewer points
    than k, one point, none."""
    generator = torch.Generator().manual_seed(0)
    points, counts = feature_map_points((8, 16, 32, 64), 200, 120)
    centers = torch.cat([
        torch.rand(40, 2, generator=generator) * torch.tensor([200.0, 120.0]),
        torch.randint(0, 50, (40, 2), generator=generator).float() * 4,  # exact ties
        torch.tensor([[-300.0, 60.0], [900.0, -40.0], [100.0, 1000.0], [-5.0, -5.0],
                      [float("nan"), 3.0], [float("inf"), 5.0]]),  # not finite: first points
    ])
    yield "feature maps", points, counts, centers
    shuffle = torch.cat([torch.randperm(n, generator=generator) + sum(counts[:i])
                         for i, n in enumerate(counts)])
    yield "feature maps listed in another order", points[shuffle], counts, centers
    scattered = [torch.rand(n, 2, generator=generator) * 150 - 20 for n in (60, 7, 1, 0)]
    yield "scattered points", torch.cat(scattered), [60, 7, 1, 0], centers[::3]
    repeated = torch.randint(0, 12, (50, 2), generator=generator).float() * 3.5  # repeats
    yield "repeated points", repeated, [30, 20], centers[::5] / 4


@pytest.mark.parametrize("k", [1, 9, 20])
def test_nearest_points_equal_a_loop_over_every_point(k, monkeypatch):
    for name, points, counts, centers in scenes():
        expected = nearest_by_loop(points, counts, centers, k)
        for max_elements in (pairs_module.MAX_CHUNK_ELEMENTS, 50):  # one chunk, many
            monkeypatch.setattr(pairs_module, "MAX_CHUNK_ELEMENTS", max_elements)
            found = nearest_per_level(WindowIndex(points, counts), centers, k)
            assert found.tolist() == expected, name
        assert nearest_dense(points, counts, centers, k).tolist() == expected, name


def test_the_grid_search_is_used_for_feature_maps_and_ties_go_to_the_lower_index():
    points, counts = feature_map_points((8,), 64, 64)
    index = WindowIndex(points, counts)
    assert index.is_grid and index.row_major
    # The centre (32, 32) is equidistant from the four points (28 or 36, 28 or 36): the
    # two nearest are the first two of them in point order, (28, 28) and (36, 28).
    found = nearest_per_level(index, torch.tensor([[32.0, 32.0]]), 2)
    assert points[found[0]].tolist() == [[28.0, 28.0], [36.0, 28.0]]
    assert found[0].tolist() == sorted(found[0].tolist())
