#!/usr/bin/env python
"""Parameters, FLOPs and activations of a config's model at an input size, as
detectron2's tools/analyze_model.py counts them (fvcore).

    python tools/analyze_model.py --config-file configs/quick/lada.yaml --size 128 128
    python tools/analyze_model.py --config-file configs/COCO-Detection/lada_R_50_FPN_1x.yaml \\
        --size 800 1333 --tasks parameter flop

``--size HEIGHT WIDTH`` is the image the model sees (after the test resize; the model
pads it to its size divisibility). FLOPs count one multiply-add as one (``lada.analysis``:
what is and is not counted). The matchers and losses are training-only: every method's
model of one backbone and head has the same parameters and FLOPs. The model is built with
random weights (``MODEL.WEIGHTS`` is not read), on the CPU when there is no GPU. Prints
the parameters per module, the FLOPs per module and operator type and the activations;
``--json FILE`` also writes them.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import lada  # noqa: F401  (prepares detectron2, registers the meta-architecture)
from detectron2.modeling import build_model
from fvcore.nn import parameter_count_table
from lada.analysis import model_cost
from lada.engine.setup import merged_cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"), default=None,
                        help="input image size (default: INPUT.MIN_SIZE_TEST square)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def report(config_file: str, cost: Dict, table: str) -> str:
    """The numbers of ``cost`` (a ``ModelCost`` as a dict) and the parameter table."""
    lines = [
        f"{config_file} at {cost['height']} x {cost['width']}:",
        f"parameters: {cost['parameters']:,} ({cost['parameters'] / 1e6:.2f} M)",
        table,
        f"FLOPs (multiply-adds): {cost['flops'] / 1e9:.3f} G",
    ]
    for name, value in sorted(cost["flops_by_module"].items()):
        lines.append(f"  module {name}: {value / 1e9:.3f} G")
    for name, value in sorted(cost["flops_by_operator"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  operator {name}: {value / 1e9:.3f} G")
    lines.append(f"activations: {cost['activations'] / 1e6:.2f} M")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = merged_cfg(args.config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device,
                                        "DATASETS.REGISTER_COCO", [], *args.opts])
    height, width = args.size or (cfg.INPUT.MIN_SIZE_TEST,) * 2
    model = build_model(cfg).eval()
    cost = asdict(model_cost(model, height, width))
    print(report(args.config_file, cost, parameter_count_table(model, max_depth=2)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"config_file": args.config_file, **cost}, handle, indent=2)
    return cost


if __name__ == "__main__":
    main()
