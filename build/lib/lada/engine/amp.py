"""Mixed precision (``SOLVER.AMP``): the autocast dtype a run may use, and the trainer step
of bfloat16 runs.

* float16 (CUDA only): detectron2's ``AMPTrainer``, autocast with gradient scaling, which
  float16 needs (gradients below its smallest normal, about 6e-5, would flush to zero).
* bfloat16 (the CPU, or a CUDA device that supports it): :class:`AutocastTrainer`,
  autocast without scaling, which bfloat16 does not need (it has float32's exponent range).

Weights, gradients and optimizer state stay float32; under autocast, convolutions and
matrix products run in the low precision. ``LadaFCOS`` runs matching and the losses in
float32 (see ``lada.modeling.meta_arch``).
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer

__all__ = ["PRECISIONS", "AutocastTrainer", "amp_dtype", "autocast_dtype"]

PRECISIONS = ("auto", "float16", "bfloat16")


def amp_dtype(cfg: CfgNode) -> Optional[torch.dtype]:
    """The autocast dtype of ``SOLVER.AMP`` on ``MODEL.DEVICE`` (see :func:`autocast_dtype`)."""
    return autocast_dtype(cfg.SOLVER.AMP.ENABLED, cfg.SOLVER.AMP.PRECISION, cfg.MODEL.DEVICE)


def autocast_dtype(
    enabled: bool,
    precision: str,
    device: str,
    *,
    keys: Tuple[str, str, str] = ("SOLVER.AMP.ENABLED", "SOLVER.AMP.PRECISION", "MODEL.DEVICE"),
) -> Optional[torch.dtype]:
    """The autocast dtype of mixed precision ``enabled`` at ``precision`` on ``device``,
    None when it is off. ``auto`` is float16 on CUDA (detectron2's AMPTrainer) and
    bfloat16 on the CPU. Raises ``ValueError`` naming the config ``keys`` (enabled,
    precision, device: the yaml keys, or a LazyConfig's) when the device does not allow
    the precision."""
    enabled_key, precision_key, device_key = keys
    if not enabled:
        return None
    if precision not in PRECISIONS:
        raise ValueError(f"{precision_key} must be one of {PRECISIONS}, got '{precision}'")
    device_type = torch.device(device).type
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{enabled_key} with {device_key} '{device}', but no CUDA device "
                f"is available; set {device_key} cpu (bfloat16 autocast on the CPU)."
            )
        if precision == "bfloat16":
            if not torch.cuda.is_bf16_supported():
                raise ValueError(
                    f"{precision_key} bfloat16: this CUDA device does not support bfloat16 "
                    "(compute capability 8.0 or newer needed); use float16 (or auto)."
                )
            return torch.bfloat16
        return torch.float16
    if device_type == "cpu":
        if precision == "float16":
            raise ValueError(
                f"{precision_key} float16 needs {device_key} cuda (detectron2's AMPTrainer "
                "with gradient scaling); on the CPU use bfloat16 (or auto)."
            )
        return torch.bfloat16
    raise ValueError(f"{enabled_key} supports {device_key} cuda and cpu, got '{device}'")


class AutocastTrainer(SimpleTrainer):
    """detectron2's ``SimpleTrainer`` whose forward pass (model and loss sum) runs under
    ``torch.autocast(device_type, dtype)``: the step of detectron2's ``AMPTrainer``
    without gradient scaling, on any device autocast supports (``AMPTrainer`` is
    CUDA-only). Backward runs outside autocast, as torch recommends. Metrics, state dict
    (the optimizer's) and hooks are ``SimpleTrainer``'s."""

    def __init__(self, model, data_loader, optimizer, *, device_type: str, dtype: torch.dtype):
        super().__init__(model, data_loader, optimizer)
        self.device_type = device_type
        self.dtype = dtype

    def run_step(self) -> None:
        assert self.model.training, "[AutocastTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses = loss_dict
                loss_dict = {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
