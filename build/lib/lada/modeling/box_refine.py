"""DW's box refinement (Li et al., CVPR 2022, section 3.4; docs/methods/dw.md, "Box
refinement"): each side of
a point's coarse box is re-read from the coarse box map at a learned point near that
side, where the prediction is expected to be more accurate."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BoxRefinement", "refine_distances"]


def refine_distances(distances: torch.Tensor, offsets: torch.Tensor, anchor_offset: float) -> torch.Tensor:
    """Refined side distances, as the authors' code (which samples the coarse box map with
    a 1x1 deformable conv; here ``grid_sample``, no compiled op).

    Units are strides: the point of cell (i, j) is at ``(u, v) = (i + anchor_offset,
    j + anchor_offset)`` and its coarse box is ``(u - l, v - t, u + r, v + b)``. Side
    ``left`` is re-read at cell coordinates ``(i - l + dx_l, j + dy_l)``, ``top`` at
    ``(i + dx_t, j - t + dy_t)``, ``right`` at ``(i + r + dx_r, j + dy_r)``, ``bottom`` at
    ``(i + dx_b, j + b + dy_b)``: by bilinear interpolation of that side's coordinate
    in the coarse box map, 0 outside the map (as the deformable conv's zero padding, so
    a side read outside lies at the image origin's coordinate). The refined distances
    are ``(u - x0', v - y0', x1' - u, y1' - v)``. With zero offsets each side is read at
    its own side point, so boxes are unchanged where the map is consistent (the points
    near a side predict the same side), not in general. Differentiable in both inputs.

    distances (N, 4, H, W) as (l, t, r, b); offsets (N, 8, H, W) as (dx, dy) for l, t, r,
    b -> (N, 4, H, W)."""
    num_images, _, height, width = distances.shape
    left, top, right, bottom = distances.unbind(dim=1)
    rows = torch.arange(height, dtype=distances.dtype, device=distances.device)[:, None]
    cols = torch.arange(width, dtype=distances.dtype, device=distances.device)[None, :]
    u, v = cols + anchor_offset, rows + anchor_offset
    coarse = torch.stack([u - left, v - top, u + right, v + bottom], dim=1)  # (N, 4, H, W)
    dx, dy = offsets.view(num_images, 4, 2, height, width).unbind(dim=2)
    zero = torch.zeros_like(left)
    x = cols + torch.stack([-left, zero, right, zero], dim=1) + dx  # (N, 4, H, W), cell units
    y = rows + torch.stack([zero, -top, zero, bottom], dim=1) + dy
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)
    sampled = F.grid_sample(
        coarse.reshape(num_images * 4, 1, height, width),
        grid.reshape(num_images * 4, height, width, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(num_images, 4, height, width)
    x0, y0, x1, y1 = sampled.unbind(dim=1)
    return torch.stack([u - x0, v - y0, x1 - u, y1 - v], dim=1)


class BoxRefinement(nn.Module):
    """The refinement module: an 8-channel 3x3 conv on the box tower's features predicts
    the sampling offsets (std 0.01, zero bias, as the authors' code), then
    :func:`refine_distances`. Runs in float32 under autocast: the sampled coordinates
    span the whole feature map, beyond bfloat16's resolution."""

    def __init__(self, in_channels: int, anchor_offset: float):
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 8, kernel_size=3, padding=1)
        nn.init.normal_(self.offset.weight, std=0.01)
        nn.init.zeros_(self.offset.bias)
        self.anchor_offset = anchor_offset

    def forward(self, box_feature: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """box_feature (N, D, H, W), coarse distances (N, 4, H, W) in strides -> refined
        distances (N, 4, H, W), in the dtype of ``distances``."""
        offsets = self.offset(box_feature)
        with torch.autocast(distances.device.type, enabled=False):
            refined = refine_distances(distances.float(), offsets.float(), self.anchor_offset)
        return refined.to(distances.dtype)
