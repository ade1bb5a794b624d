"""torchvision's ImageNet ResNet weights as the backbone's: the keys of a torchvision
``resnet18/34/50/101/152`` state dict renamed to those of detectron2's ResNet, the bottom-up
of :func:`lada.modeling.backbone.build_fcos_resnet_fpn_backbone`
(``tools/convert_torchvision_resnet.py``; docs/own-data.md, "ImageNet weights").

torchvision                       the model (``backbone.bottom_up.`` + ...)
``conv1``, ``bn1``                ``stem.conv1``, ``stem.conv1.norm``
``layer<i>.<b>.conv<k>``          ``res<i+1>.<b>.conv<k>``
``layer<i>.<b>.bn<k>``            ``res<i+1>.<b>.conv<k>.norm``
``layer<i>.<b>.downsample.0/1``   ``res<i+1>.<b>.shortcut``, ``res<i+1>.<b>.shortcut.norm``
``fc``                            dropped (the ImageNet classifier)
``*.num_batches_tracked``         dropped (a BatchNorm training counter)

The features equal torchvision's only with torchvision's input conventions: RGB images
normalised by its mean and standard deviation, and (ResNet-50 and deeper) the stride in
the 3x3 convolution; :func:`torchvision_input_problems` names the config keys that differ.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
from detectron2.config import CfgNode

__all__ = [
    "BOTTOM_UP", "TORCHVISION_PIXEL_MEAN", "TORCHVISION_PIXEL_STD", "backbone_key_problems",
    "convert_torchvision_resnet", "torchvision_input_problems",
]

BOTTOM_UP = "backbone.bottom_up."
# torchvision's ImageNet normalisation (RGB), on the 0-255 scale of detectron2's PIXEL_*
TORCHVISION_PIXEL_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_PIXEL_STD = (58.395, 57.12, 57.375)

_STEM = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm"}
_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)$")
_PARAMETER = re.compile(r"(.+)\.(weight|bias|running_mean|running_var)$")


def _module_name(torchvision_module: str) -> str | None:
    """The model's module for a torchvision module name, None if it has none."""
    if torchvision_module in _STEM:
        return _STEM[torchvision_module]
    block = _BLOCK.fullmatch(torchvision_module)
    if block is None:
        return None
    stage, index, part = block.groups()
    renamed = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(part)
    if renamed is None:
        renamed = part if part.startswith("conv") else f"conv{part[2:]}.norm"
    return f"res{int(stage) + 1}.{index}.{renamed}"


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's ``backbone.bottom_up.*`` weights from a torchvision ResNet state dict
    (module docstring); a key that is neither renamed nor dropped is an error naming it
    (not a ResNet of torchvision, or a wrapped one, e.g. with a ``module.`` prefix)."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith(".num_batches_tracked"):
            continue
        parameter = _PARAMETER.fullmatch(key)
        module = _module_name(parameter.group(1)) if parameter else None
        if module is None:
            unknown.append(key)
            continue
        converted[f"{BOTTOM_UP}{module}.{parameter.group(2)}"] = value
    if unknown:
        raise ValueError(
            f"not a torchvision ResNet state dict: {len(unknown)} key(s) of no ResNet layer, "
            f"e.g. {', '.join(unknown[:5])}"
        )
    return converted


def backbone_key_problems(
    converted: Mapping[str, torch.Tensor], model: torch.nn.Module
) -> list[str]:
    """What keeps ``converted`` from being exactly the bottom-up weights of ``model``:
    its ``backbone.bottom_up.*`` keys the weights lack, keys the model lacks, and shapes
    that differ (empty when every backbone weight is loaded and none is left over)."""
    expected = {key: value.shape for key, value in model.state_dict().items()
                if key.startswith(BOTTOM_UP) and not key.endswith(".num_batches_tracked")}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    shapes = sorted(f"{key} {tuple(converted[key].shape)} (model {tuple(expected[key])})"
                    for key in set(expected) & set(converted)
                    if converted[key].shape != expected[key])
    problems = []
    for what, keys in (("missing from the weights", missing), ("not in the model", unexpected),
                       ("of another shape", shapes)):
        if keys:
            problems.append(f"{len(keys)} backbone key(s) {what}, e.g. {', '.join(keys[:3])}")
    return problems


def torchvision_input_problems(cfg: CfgNode) -> list[str]:
    """The config keys with which torchvision weights would not see the inputs they were
    trained on: ``INPUT.FORMAT``, ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` (RGB order), and for
    bottleneck ResNets ``MODEL.RESNETS.STRIDE_IN_1X1`` (torchvision strides in the 3x3)."""
    problems = []
    if cfg.INPUT.FORMAT != "RGB":
        problems.append(f"INPUT.FORMAT is {cfg.INPUT.FORMAT}, torchvision's models read RGB")
    conventions = (("PIXEL_MEAN", TORCHVISION_PIXEL_MEAN), ("PIXEL_STD", TORCHVISION_PIXEL_STD))
    for key, wanted in conventions:
        value = tuple(cfg.MODEL[key])
        if len(value) != 3 or any(abs(a - b) > 1e-3 for a, b in zip(value, wanted)):
            problems.append(f"MODEL.{key} is {list(value)}, torchvision's is {list(wanted)}")
    if cfg.MODEL.RESNETS.DEPTH >= 50 and cfg.MODEL.RESNETS.STRIDE_IN_1X1:
        problems.append("MODEL.RESNETS.STRIDE_IN_1X1 is True, torchvision's bottleneck "
                        "blocks stride in the 3x3 convolution (set it False)")
    return problems
