"""DW's box refinement (section 3.4, docs/methods/dw.md): against a per-point bilinear loop,
zero offsets on a consistent box map, zeros outside the map, gradients, mixed precision."""
import math

import pytest
import torch
from conftest import small_cfg
from detectron2.modeling import build_model

from lada.modeling.box_refine import BoxRefinement, refine_distances

OFFSET = 0.5  # MODEL.ANCHOR_GENERATOR.OFFSET: points at cell centres


def _bilinear(grid, x, y):
    """Bilinear value of a list-of-rows map at cell coordinates (x, y), 0 outside."""
    height, width = len(grid), len(grid[0])
    x0, y0 = math.floor(x), math.floor(y)
    value = 0.0
    for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            if 0 <= xx < width and 0 <= yy < height:
                value += wx * wy * grid[yy][xx]
    return value


def _reference(distances, offsets):
    """docs/methods/dw.md / section 3.4, one point and one side at a time: side k of the point's
    coarse box is read at the point of that side moved by its offset (dx, dy)."""
    _, height, width = distances.shape
    d, o = distances.tolist(), offsets.tolist()
    coarse = [[[0.0] * width for _ in range(height)] for _ in range(4)]
    for j in range(height):
        for i in range(width):
            u, v = i + OFFSET, j + OFFSET
            left, top, right, bottom = (d[k][j][i] for k in range(4))
            for k, value in enumerate((u - left, v - top, u + right, v + bottom)):
                coarse[k][j][i] = value
    refined = torch.zeros(4, height, width)
    for j in range(height):
        for i in range(width):
            u, v = i + OFFSET, j + OFFSET
            left, top, right, bottom = (d[k][j][i] for k in range(4))
            shifts = [(-left, 0.0), (0.0, -top), (right, 0.0), (0.0, bottom)]
            sides = []
            for k, (sx, sy) in enumerate(shifts):
                dx, dy = o[2 * k][j][i], o[2 * k + 1][j][i]
                sides.append(_bilinear(coarse[k], i + sx + dx, j + sy + dy))
            refined[:, j, i] = torch.tensor([u - sides[0], v - sides[1], sides[2] - u, sides[3] - v])
    return refined


def test_refinement_equals_a_per_point_bilinear_loop():
    generator = torch.Generator().manual_seed(0)
    distances = 3 * torch.rand(2, 4, 5, 7, generator=generator)  # some sides leave the map
    offsets = torch.randn(2, 8, 5, 7, generator=generator)
    refined = refine_distances(distances, offsets, OFFSET)
    for image in range(2):
        torch.testing.assert_close(refined[image], _reference(distances[image], offsets[image]),
                                   atol=1e-5, rtol=1e-5)


def test_zero_offsets_keep_the_boxes_of_a_consistent_map():
    # Every point predicts the same box (1.2, 2.0, 6.3, 5.5) in stride units: each side
    # is re-read inside the map at a point that predicts the same side.
    rows = torch.arange(8.0)[:, None].expand(8, 8) + OFFSET
    cols = torch.arange(8.0)[None, :].expand(8, 8) + OFFSET
    distances = torch.stack([cols - 1.2, rows - 2.0, 6.3 - cols, 5.5 - rows])[None]
    refined = refine_distances(distances, torch.zeros(1, 8, 8, 8), OFFSET)
    torch.testing.assert_close(refined, distances)


def test_offsets_back_to_the_point_give_the_identity():
    # Offsets cancelling each side's displacement read the point's own box.
    distances = 2 * torch.rand(1, 4, 6, 6)
    left, top, right, bottom = distances[0]
    zero = torch.zeros_like(left)
    offsets = torch.stack([left, zero, zero, top, -right, zero, zero, -bottom])[None]
    torch.testing.assert_close(refine_distances(distances, offsets, OFFSET), distances)


def test_sides_read_outside_the_map_are_zero():
    distances = torch.ones(1, 4, 3, 3)
    distances[0, 0, 1, 1] = 4.0  # the left side of the centre point lies at x = -3 cells
    refined = refine_distances(distances, torch.zeros(1, 8, 3, 3), OFFSET)
    # x0' = 0 (outside the map), so the refined left distance is the point's u = 1.5.
    assert refined[0, 0, 1, 1].item() == 1.5
    # Its top side is read inside at (1, 0), whose top coordinate is 0.5 - 1 = -0.5.
    assert refined[0, 1, 1, 1].item() == pytest.approx(1.5 + 0.5)


def _refining_model():
    return build_model(small_cfg(**{"MODEL.FCOS.BOX_REFINE": True, "MODEL.FCOS.BOX_ACTIVATION": "relu",
                                    "MODEL.FCOS.BOX_BIAS_INIT": 4.0}))


def test_gradients_reach_the_offset_conv():
    model = _refining_model()
    assert model.head.box_refine.offset.out_channels == 8
    features = [torch.randn(1, 64, size, size) for size in (16, 8, 4, 2, 1)]
    _, deltas, _ = model.head(features)
    sum(d.sum() for d in deltas).backward()
    grad = model.head.box_refine.offset.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_refinement_runs_in_float32_under_bfloat16_autocast():
    """Cell coordinates up to 300 have a resolution of 2 cells in bfloat16: the module
    samples in float32 from the network's bfloat16 outputs and returns bfloat16."""
    module = BoxRefinement(16, OFFSET)
    feature = torch.randn(1, 16, 2, 300)
    distances = (40 * torch.rand(1, 4, 2, 300)).to(torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        refined = module(feature, distances)
        offsets = module.offset(feature)
    assert offsets.dtype == refined.dtype == torch.bfloat16
    expected = refine_distances(distances.float(), offsets.float(), OFFSET).to(torch.bfloat16)
    assert torch.equal(refined, expected)
    in_bfloat16 = refine_distances(distances, offsets, OFFSET)
    assert not torch.equal(in_bfloat16, expected)
