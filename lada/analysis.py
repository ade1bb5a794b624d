"""What a model costs at one input size: parameters, FLOPs and activations, counted as
detectron2's ``tools/analyze_model.py`` counts them (fvcore's counters through
``detectron2.utils.analysis``), for ``tools/analyze_model.py`` and
``benchmarks/inference.py``.

fvcore counts one fused multiply-add as one flop, as detection papers' "FLOPs" (GFLOPs)
usually are. It counts by tracing one inference with ``torch.jit``: convolutions, norms
and upsampling are counted; the post-processing (thresholds, top-k, NMS, whose work
depends on the detections) and a few elementwise ops (padding, comparisons) are not.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterator

import torch
from detectron2.utils.analysis import FlopCountAnalysis, activation_count_operators
from torch import nn

__all__ = ["ModelCost", "model_cost", "parameter_count"]


@dataclass
class ModelCost:
    """The cost of one inference of one (3, ``height``, ``width``) image: ``parameters``
    (all of the model's), ``flops`` (multiply-adds) and ``activations`` (output
    elements of the counted ops), with the FLOPs of each operator type and of each
    top-level module (``backbone``, ``head``)."""

    height: int
    width: int
    parameters: int
    flops: float
    activations: float
    flops_by_operator: Dict[str, float] = field(default_factory=dict)
    flops_by_module: Dict[str, float] = field(default_factory=dict)


def parameter_count(model: nn.Module) -> int:
    """Every parameter of ``model``, trained or frozen."""
    return sum(p.numel() for p in model.parameters())


def model_cost(
    model: nn.Module, height: int, width: int, activations: bool = True, seed: int = 0
) -> ModelCost:
    """:class:`ModelCost` of ``model`` (a detectron2 model; put in eval mode for the
    count, then restored) on a random image of ``height`` x ``width`` pixels (0-255,
    seeded), on the model's device; ``activations`` False leaves them uncounted (NaN),
    which saves a second trace."""
    generator = torch.Generator().manual_seed(seed)
    image = (torch.rand(3, height, width, generator=generator) * 255).to(model.device)
    inputs = [{"image": image}]
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), _jit_deprecation_silenced():
            flops = FlopCountAnalysis(model, inputs)
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_module = flops.by_module()
            count = float("nan")
            if activations:
                with _quiet_logger("fvcore.nn.jit_analysis"):  # the training-only modules are not called
                    count = sum(activation_count_operators(model, inputs).values()) * 1e6
            total = flops.total()
            by_operator = dict(flops.by_operator())
    finally:
        model.train(training)
    return ModelCost(
        height=height,
        width=width,
        parameters=parameter_count(model),
        flops=float(total),
        activations=count,
        flops_by_operator={k: float(v) for k, v in by_operator.items()},
        flops_by_module={
            name: float(by_module.get(f"model.{name}", 0.0)) for name, _ in model.named_children()
            if by_module.get(f"model.{name}", 0.0)
        },
    )


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _jit_deprecation_silenced() -> Iterator[None]:
    """fvcore counts by tracing with torch.jit, which torch 2.14 announces as deprecated
    on every scripted helper the trace meets; that notice says nothing about the count."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield
