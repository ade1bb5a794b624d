"""Command line and config setup of ``train_net.py``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from ..config import add_lada_config
from ..custom_imports import import_custom, imports_named_by
from ..data import install_dataset_checks, register_coco_datasets
from ..data.recipe import Recipe, apply_recipe, recipe_keys
from ..modeling.presets import warn_detector_mismatch
from .amp import amp_dtype

__all__ = [
    "add_dataset_argument", "build_argument_parser", "build_cfg", "check_before_launch",
    "command_line_cfg", "merge_registrations", "merged_cfg", "register_datasets",
    "setup_cfg", "user_set_keys",
]

logger = logging.getLogger(__name__)


def build_argument_parser() -> argparse.ArgumentParser:
    """detectron2's parser plus ``--dataset NAME JSON IMAGE_ROOT`` (repeatable)."""
    parser = default_argument_parser()
    add_dataset_argument(parser)
    return parser


def add_dataset_argument(
    parser: argparse.ArgumentParser,
    help: str = "register a COCO-format dataset under NAME (repeatable)",
) -> None:
    """``--dataset NAME JSON IMAGE_ROOT``, repeatable, into ``args.dataset`` (a list of
    [name, json, image_root]): the registrations :func:`build_cfg` and
    :func:`register_datasets` take, for every entry point that reads datasets."""
    parser.add_argument(
        "--dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"), help=help,
    )


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """The config of ``train_net.py`` (:func:`build_cfg`), then the run's set-up: logging to
    the console and ``OUTPUT_DIR/log.txt``, the environment and the full config logged,
    seeds (``SEED``), what the own-data recipe chose, and a warning when the detector is not
    the matcher's method's (:mod:`lada.modeling.presets`).

    This is detectron2's ``default_setup`` except that it does not write
    ``OUTPUT_DIR/config.yaml``: the training run writes it once it has started
    (:func:`lada.engine.run_folder.save_run_config`), so that ``--eval-only`` or a run
    that fails at start-up leaves a trained run's config as it was."""
    cfg, recipe = build_cfg(args.config_file, args.opts, getattr(args, "dataset", ()))
    _setup_run(cfg, args)
    # lada's own loggers (data checks, checkpoints) to the console and OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lada")
    if recipe is not None:
        for line in recipe.lines:
            logger.info(line)
    elif cfg.RECIPE.ENABLED:
        logger.info("own-data recipe: applied when this config was saved (RECIPE.APPLIED): "
                    "its sizes and schedule are used as they are")
    warn_detector_mismatch(cfg)
    return cfg


def build_cfg(
    config_file: str, opts: Sequence[str], datasets: Iterable[Sequence[str]] = ()
) -> tuple[CfgNode, Optional[Recipe]]:
    """The frozen config of a run and the own-data recipe it applied (None when it applied
    none), as every entry point builds it (``train_net.py``, ``tools/predict.py``):

    get_cfg -> lada keys -> merge ``config_file`` -> merge the ``KEY VALUE`` ``opts`` ->
    ``datasets`` (``--dataset NAME JSON IMAGE_ROOT`` entries) recorded in
    ``DATASETS.REGISTER_COCO`` (:func:`merge_registrations`), so that the saved config
    registers them again -> with ``RECIPE.ENABLED`` and not ``RECIPE.APPLIED``, register
    the datasets and apply the recipe (:mod:`lada.data.recipe`) to the keys the user did
    not set -> freeze -> check the device and precision. Nothing is written."""
    cfg, file_cfg = _merged_cfg(config_file, opts)
    cfg.DATASETS.REGISTER_COCO = merge_registrations(cfg.DATASETS.REGISTER_COCO, datasets)
    recipe = None
    if cfg.RECIPE.ENABLED and not cfg.RECIPE.APPLIED:
        register_coco_datasets(cfg.DATASETS.REGISTER_COCO)
        user_keys = user_set_keys(config_file, opts) & set(recipe_keys())
        recipe = apply_recipe(cfg, user_keys, base=file_cfg)
    cfg.freeze()
    _check_runtime(cfg)
    return cfg, recipe


def merge_registrations(
    registered: Iterable[Sequence[str]], datasets: Iterable[Sequence[str]]
) -> list[list[str]]:
    """``DATASETS.REGISTER_COCO`` entries plus the ``[name, json_file, image_root]``
    entries of ``datasets``, whose paths are made absolute (from the working directory)
    so that a saved config finds them from any folder. An entry of ``datasets`` replaces
    a registered one of the same name, as a command-line ``KEY VALUE`` replaces a config's."""
    merged: dict[str, list[str]] = {}
    for source, entries in (("DATASETS.REGISTER_COCO", registered), ("--dataset", datasets)):
        for entry in entries:
            if isinstance(entry, str) or len(entry) != 3:
                raise ValueError(f"{source}: a dataset to register needs [name, json_file, "
                                 f"image_root], got {entry!r}")
            name, json_file, image_root = (str(part) for part in entry)
            if source == "--dataset":
                json_file, image_root = str(Path(json_file).resolve()), str(Path(image_root).resolve())
            merged[name] = [name, json_file, image_root]
    return list(merged.values())


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
    register_coco_datasets(merge_registrations(cfg.DATASETS.REGISTER_COCO,
                                               getattr(args, "dataset", ())))
    install_dataset_checks(cfg)


def _setup_run(cfg: CfgNode, args: argparse.Namespace) -> None:
    """detectron2's ``default_setup`` without its write of ``OUTPUT_DIR/config.yaml``."""
    output_dir = cfg.OUTPUT_DIR
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    d2_logger = setup_logger(output_dir, distributed_rank=rank)
    d2_logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    d2_logger.info("Environment info:\n" + collect_env_info())
    d2_logger.info("Command line arguments: " + str(args))
    if getattr(args, "config_file", ""):
        with PathManager.open(args.config_file) as f:
            d2_logger.info(f"Contents of args.config_file={args.config_file}:\n{f.read()}")
    d2_logger.info("Running with full config:\n" + cfg.dump())
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def check_before_launch(args: argparse.Namespace) -> None:
    """The checks of the config that need neither data nor a process group (the device,
    the precision), made by ``train_net.py`` before it spawns processes: a refused config
    then ends with its own message naming the key, not with the workers'
    ``ProcessExitedException``. :func:`setup_cfg` checks again in every process."""
    _check_runtime(command_line_cfg(args))


def command_line_cfg(args: argparse.Namespace) -> CfgNode:
    """The config of the command line alone: the lada defaults, the config file and the
    ``KEY VALUE`` overrides, without the own-data recipe (which reads the datasets and sets
    only sizes, augmentations, the solver and the number of classes)."""
    return merged_cfg(args.config_file, args.opts)


def merged_cfg(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """A config file with ``KEY VALUE`` overrides, as every entry point merges it: its
    ``CUSTOM_IMPORTS`` imported first, the lada defaults, the file, the overrides; not
    frozen, without the own-data recipe."""
    return _merged_cfg(config_file, opts)[0]


def _merged_cfg(config_file: str, opts: Sequence[str]) -> tuple[CfgNode, CfgNode]:
    """The base of every config of the command line, not frozen: the modules of
    ``CUSTOM_IMPORTS`` imported (a matcher of your own registers its keys) -> get_cfg ->
    lada keys -> merge ``config_file`` (none if empty) -> merge the ``KEY VALUE`` ``opts``,
    with ``CUSTOM_IMPORTS`` as recorded (files absolute); and a copy taken before the
    ``opts`` (the own-data recipe's ``base``: what the files set)."""
    imported = import_custom(imports_named_by(config_file, opts))
    cfg = add_lada_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    file_cfg = cfg.clone()
    cfg.merge_from_list(list(opts))
    cfg.CUSTOM_IMPORTS = imported
    return cfg, file_cfg


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
