"""Command line and config setup of ``train_net.py``."""
from __future__ import annotations

import argparse
import logging
from typing import Any, Iterable

import torch
import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from ..config import add_lada_config
from ..data import install_dataset_checks, register_coco_datasets
from ..data.recipe import RECIPE_KEYS, apply_recipe
from ..modeling.presets import warn_detector_mismatch
from .amp import amp_dtype

__all__ = ["build_argument_parser", "register_datasets", "setup_cfg", "user_set_keys"]

logger = logging.getLogger(__name__)


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
    """get_cfg -> add lada keys -> merge file -> merge KEY VALUE overrides -> with
    ``RECIPE.ENABLED``, register the datasets and apply the own-data recipe
    (:mod:`lada.data.recipe`) to the keys the user did not set -> freeze -> detectron2's
    default_setup (logging, output dir, seeds) -> log what the recipe chose -> warn when the
    detector is not the matcher's method's (:mod:`lada.modeling.presets`)."""
    cfg = get_cfg()
    add_lada_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    file_cfg = cfg.clone()
    cfg.merge_from_list(args.opts)
    recipe = None
    if cfg.RECIPE.ENABLED:
        register_coco_datasets(list(cfg.DATASETS.REGISTER_COCO) + list(getattr(args, "dataset", [])))
        user_keys = user_set_keys(args.config_file, args.opts) & set(RECIPE_KEYS)
        recipe = apply_recipe(cfg, user_keys, base=file_cfg)
    cfg.freeze()
    _check_runtime(cfg)
    default_setup(cfg, args)
    # lada's own loggers (data checks, checkpoints) to the console and OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lada")
    if recipe is not None:
        for line in recipe.lines:
            logger.info(line)
    warn_detector_mismatch(cfg)
    return cfg


def user_set_keys(config_file: str, opts: Iterable[str]) -> set[str]:
    """The config keys the user set: the ``KEY VALUE`` pairs of the command line and the
    keys written in ``config_file`` itself. Keys a config inherits through ``_BASE_`` are
    the project's defaults (``configs/quick/own_data.yaml`` inherits the quick configs'
    128 px sizes and schedule, which the recipe replaces), so a config of your own that
    sets ``INPUT.*`` or ``SOLVER.*`` keys must be the ``--config-file`` itself."""
    opts = list(opts)
    keys = set(opts[0::2])
    if config_file:
        with PathManager.open(config_file) as f:  # as CfgNode.merge_from_file
            keys |= set(_flat_keys(yaml.safe_load(f) or {}))
    keys.discard("_BASE_")
    return keys


def _flat_keys(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


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
