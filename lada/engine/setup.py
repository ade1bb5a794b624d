"""Command line and config setup of ``train_net.py``."""
from __future__ import annotations

import argparse

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_lada_config
from ..data import install_dataset_checks, register_coco_datasets
from .amp import amp_dtype

__all__ = ["build_argument_parser", "register_datasets", "setup_cfg"]


def build_argument_parser() -> argparse.ArgumentParser:
    """detectron2's parser plus ``--dataset NAME JSON IMAGE_ROOT`` (repeatable)."""
    parser = default_argument_parser()
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable)",
    )
    return parser


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """get_cfg -> add lada keys -> merge file -> merge KEY VALUE overrides -> freeze ->
    detectron2's default_setup (logging, output dir, seeds)."""
    cfg = get_cfg()
    add_lada_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    _check_runtime(cfg)
    default_setup(cfg, args)
    # lada's own loggers (data checks, checkpoints) to the console and OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lada")
    return cfg


def register_datasets(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Registers the datasets of ``DATASETS.REGISTER_COCO`` and ``--dataset`` (lazily:
    nothing is read) and puts the data checks on those the run uses; runs in every worker
    process."""
    register_coco_datasets(list(cfg.DATASETS.REGISTER_COCO) + list(args.dataset))
    install_dataset_checks(cfg)


def _check_runtime(cfg: CfgNode) -> None:
    has_cuda = torch.cuda.is_available()
    if cfg.MODEL.DEVICE.startswith("cuda") and not has_cuda:
        raise SystemExit(
            f"MODEL.DEVICE is '{cfg.MODEL.DEVICE}' but no CUDA device is available; "
            "add `MODEL.DEVICE cpu` to the command line."
        )
    try:
        amp_dtype(cfg)
    except ValueError as error:
        raise SystemExit(str(error)) from error
