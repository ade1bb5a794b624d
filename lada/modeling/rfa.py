"""MMMC's receptive-field adaptor (RFA, Hao et al., section 3.1): a 3x3 conv of the head
towers becomes a deformable conv whose sampling offsets are predicted from its input, so
that the classification and box branches each adapt their receptive field."""
from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformableConv3x3", "finite_offsets"]

logger = logging.getLogger(__name__)


class DeformableConv3x3(nn.Module):
    """A 3x3, stride-1, padding-1 deformable conv (``torchvision.ops.deform_conv2d``, CPU
    and CUDA, no compiled detectron2 op) with offsets (2 x 3 x 3 channels) from a
    zero-initialised 3x3 conv: it starts as the plain conv it replaces.

    Its ``weight`` and ``bias`` have the plain conv's names and shapes, so a checkpoint
    without RFA loads into it; the offset conv then keeps its zero start and a log line
    says so.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=0.01)
        self.offset = nn.Conv2d(in_channels, 2 * 3 * 3, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DeformableConv3x3":
        """The deformable version of a 3x3 stride-1 padding-1 ``conv``, same weights."""
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1):
            raise ValueError(f"RFA replaces 3x3 convs of stride 1 and padding 1, got {conv}")
        module = cls(conv.in_channels, conv.out_channels)
        module.weight.data.copy_(conv.weight.data)
        module.bias.data.copy_(conv.bias.data)
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W). In float32 under autocast (SOLVER.AMP), as
        torchvision's CUDA autocast rule runs it; it has no CPU rule nor bfloat16 kernel.

        The offsets are made finite first (:func:`finite_offsets`): torchvision's CPU kernel
        reads outside the feature map at a NaN offset and kills the process."""
        offset = finite_offsets(self.offset(x), x.shape[-2:])
        with torch.autocast(x.device.type, enabled=False):
            out = deform_conv2d(x.float(), offset.float(), self.weight, self.bias, padding=(1, 1))
        return out.to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "weight" in state_dict and prefix + "offset.weight" not in state_dict:
            logger.warning(
                "RFA: the checkpoint has a plain conv at '%s'; its weights load into the "
                "deformable conv, whose new offset parameters '%soffset.{weight,bias}' are "
                "not in the checkpoint and keep their zero start (the layer starts as the "
                "plain conv).", prefix.rstrip("."), prefix,
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def finite_offsets(offset: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling offsets (N, 2 x 3 x 3, H, W) that ``deform_conv2d`` can use whatever the
    features were: a NaN offset becomes 0 (the plain conv's sampling point) and every
    offset is clamped to +-(max(H, W) + 2), beyond which a point samples only the zero
    padding, so finite offsets keep their output and gradient. Non-finite features still
    reach the output through the sampled values (a NaN feature gives a NaN output), so a
    diverging training stops at detectron2's non-finite loss check."""
    # a tensor, so that torch.export keeps the size symbolic (a float would fix it)
    limit = torch.scalar_tensor(max(size) + 2, dtype=offset.dtype, device=offset.device)
    return torch.nan_to_num(offset, nan=0.0).clamp(-limit, limit)
