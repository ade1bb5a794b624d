#!/usr/bin/env python
"""Convert a torchvision ResNet checkpoint (ImageNet weights) into the weights of the
project's ResNet-FPN backbone, checked against a config's model.

    python tools/convert_torchvision_resnet.py --input resnet18-f37072fd.pth \\
        --output output/weights/resnet18_imagenet.pth
    python train_net.py --config-file configs/quick/own_data_R_18_imagenet.yaml --dataset ...

The input is a torchvision state dict (``torchvision.models.resnet18(weights=...)
.state_dict()`` saved by ``torch.save``, or the file torchvision downloads). Its keys are
renamed to the backbone's (:mod:`lada.modeling.torchvision_resnet`), and the result must
be exactly the ``backbone.bottom_up`` weights of the model of ``--config-file`` (default
``configs/quick/own_data_R_18_imagenet.yaml``): every key present, none left over, every
shape equal; the config must also feed the model torchvision's input (RGB, its mean and
standard deviation). Written: ``{"model": weights}`` for ``MODEL.WEIGHTS`` (a ``.pth``,
loaded safely by ``torch.load``); the FPN and the head start from their initialisation.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import lada  # noqa: F401  (registers the model)
from detectron2.modeling import build_model
from lada.engine import command_line_cfg
from lada.modeling.torchvision_resnet import (
    backbone_key_problems, convert_torchvision_resnet, torchvision_input_problems,
)

DEFAULT_CONFIG = "configs/quick/own_data_R_18_imagenet.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True,
                        help="torchvision ResNet state dict (.pth)")
    parser.add_argument("--output", type=Path, required=True,
                        help="converted weights (.pth), for MODEL.WEIGHTS")
    parser.add_argument("--config-file", default=str(Path(__file__).resolve().parent.parent
                                                     / DEFAULT_CONFIG),
                        help=f"the config whose backbone the weights are for (default {DEFAULT_CONFIG})")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides of that config")
    return parser


def convert(input_path: Path, output_path: Path, config_file: str, opts: Sequence[str] = ()) -> dict:
    """Converts ``input_path`` for the model of ``config_file`` + ``opts`` and writes
    ``output_path``; returns the weights written. Raises SystemExit naming what does not
    fit (unknown keys, keys or shapes that differ from the model's, input conventions)."""
    if output_path.resolve() == input_path.resolve():
        raise SystemExit(f"{output_path}: the output would overwrite the input")
    try:
        state_dict = torch.load(input_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's messages name no file
        raise SystemExit(f"{input_path}: cannot load a state dict: {type(error).__name__}: {error}")
    try:
        weights = convert_torchvision_resnet(state_dict)
    except ValueError as error:
        raise SystemExit(f"{input_path}: {error}")
    cfg = command_line_cfg(argparse.Namespace(config_file=config_file,
                                              opts=[*opts, "MODEL.DEVICE", "cpu"]))
    problems = backbone_key_problems(weights, build_model(cfg)) + torchvision_input_problems(cfg)
    if problems:
        raise SystemExit(
            f"{input_path} does not fit the model of {config_file} (MODEL.RESNETS.DEPTH "
            f"{cfg.MODEL.RESNETS.DEPTH}):\n  " + "\n  ".join(problems))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(f".{output_path.name}.{os.getpid()}.partial")
    torch.save({"model": weights, "__author__": f"torchvision ({input_path.name})"}, partial)
    os.replace(partial, output_path)  # a complete file or none under the final name
    dropped = len(state_dict) - len(weights)
    print(f"{input_path}: {len(weights)} tensors renamed to the backbone of {config_file} (every "
          f"backbone.bottom_up weight, none left over; {dropped} dropped: the classifier fc "
          f"and the BatchNorm counters) -> {output_path}")
    return weights


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    return convert(args.input, args.output, args.config_file, args.opts)


if __name__ == "__main__":
    main()
