"""Command line and config setup of ``train_net.py``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

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
from ..harmless_warnings import NO_CUDA_RUNTIME, ignoring_log_record
from ..modeling.presets import warn_detector_mismatch
from ..schedule import check_steps, moved_schedule
from .amp import amp_dtype
from .console import keep_dumps_in_log_file
from .preflight import (
    check_dataset_files, check_eval_datasets, check_eval_weights, check_registrations_used,
)
from .summary import log_summary, readme_figure, summary_lines

__all__ = [
    "add_dataset_argument", "build_argument_parser", "build_cfg", "check_before_launch",
    "command_line_cfg", "merge_registrations", "merged_cfg", "register_datasets",
    "rescale_schedule", "setup_cfg", "summarize_run", "user_set_keys",
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
    the console and ``OUTPUT_DIR/log.txt``, the environment and the full config logged (to
    ``log.txt`` only, :mod:`lada.engine.console`), seeds (``SEED``), what the own-data
    recipe or a shortened schedule chose, and a warning when the detector is not the
    matcher's method's (:mod:`lada.modeling.presets`).
    Training refuses steps outside its schedule (:func:`lada.schedule.check_steps`).

    This is detectron2's ``default_setup`` except that it does not write
    ``OUTPUT_DIR/config.yaml``: the training run writes it once it has started
    (:func:`lada.engine.run_folder.save_run_config`), so that ``--eval-only`` or a run
    that fails at start-up leaves a trained run's config as it was."""
    notes: list[str] = []
    cfg, recipe = build_cfg(args.config_file, args.opts, getattr(args, "dataset", ()), notes)
    if not getattr(args, "eval_only", False):
        check_steps(cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER, "SOLVER.STEPS", "SOLVER.MAX_ITER")
    _setup_run(cfg, args)
    # lada's own loggers (data checks, checkpoints) to the console and OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lada")
    for line in notes:
        logger.info(line)
    if recipe is not None:
        for line in recipe.lines:
            logger.info(line)
    elif cfg.RECIPE.ENABLED:
        logger.info("own-data recipe: applied when this config was saved (RECIPE.APPLIED): "
                    "its sizes and schedule are used as they are")
    warn_detector_mismatch(cfg)
    return cfg


def build_cfg(
    config_file: str, opts: Sequence[str], datasets: Iterable[Sequence[str]] = (),
    notes: Optional[list[str]] = None,
) -> tuple[CfgNode, Optional[Recipe]]:
    """The frozen config of a run and the own-data recipe it applied (None when it applied
    none), as every entry point builds it (``train_net.py``, ``tools/predict.py``):

    get_cfg -> lada keys -> merge ``config_file`` -> merge the ``KEY VALUE`` ``opts`` ->
    a ``SOLVER.MAX_ITER`` of the command line moves the config's steps and warm-up with it
    (:func:`rescale_schedule`) -> ``datasets`` (``--dataset NAME JSON IMAGE_ROOT``
    entries) recorded in ``DATASETS.REGISTER_COCO`` (:func:`merge_registrations`), so that
    the saved config registers them again -> with ``RECIPE.ENABLED`` and not
    ``RECIPE.APPLIED``, register the datasets and apply the recipe
    (:mod:`lada.data.recipe`) to the keys the user did not set -> freeze -> check the
    device and precision. Nothing is written; what was chosen on the way (the rescaled
    schedule) is appended to ``notes``, lines to log."""
    cfg, file_cfg = _merged_cfg(config_file, opts, notes)
    cfg.DATASETS.REGISTER_COCO = merge_registrations(cfg.DATASETS.REGISTER_COCO, datasets)
    recipe = None
    if _recipe_applies(cfg):
        register_coco_datasets(cfg.DATASETS.REGISTER_COCO)
        user_keys = user_set_keys(config_file, opts) & set(recipe_keys())
        recipe = apply_recipe(cfg, user_keys, base=file_cfg)
    cfg.freeze()
    _check_runtime(cfg)
    return cfg, recipe


def _recipe_applies(cfg: CfgNode) -> bool:
    return cfg.RECIPE.ENABLED and not cfg.RECIPE.APPLIED


def rescale_schedule(cfg: CfgNode, base: CfgNode, command_keys: Iterable[str]) -> Optional[str]:
    """With a ``SOLVER.MAX_ITER`` of the command line (``command_keys``) other than the
    config file's (``base``), puts ``SOLVER.STEPS`` and ``SOLVER.WARMUP_ITERS`` at the
    config's fractions of its schedule (:func:`lada.schedule.moved_schedule`), each
    unless the command line sets it too (yours win); returns the line that says so, None
    when nothing moved. ``cfg`` is not frozen."""
    old, new = base.SOLVER.MAX_ITER, cfg.SOLVER.MAX_ITER
    command_keys = set(command_keys)
    if "SOLVER.MAX_ITER" not in command_keys or new == old:
        return None
    values, line = moved_schedule(
        base.SOLVER.STEPS, base.SOLVER.WARMUP_ITERS, old, new,
        ("SOLVER.MAX_ITER", "SOLVER.STEPS", "SOLVER.WARMUP_ITERS"), command_keys,
        "set those keys on the command line to choose others")
    cfg.SOLVER.STEPS = values.get("SOLVER.STEPS", cfg.SOLVER.STEPS)
    cfg.SOLVER.WARMUP_ITERS = values.get("SOLVER.WARMUP_ITERS", cfg.SOLVER.WARMUP_ITERS)
    return line


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
    keep_dumps_in_log_file(output_dir)  # the dumps below: log.txt only
    d2_logger = setup_logger(output_dir, distributed_rank=rank)
    d2_logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    with ignoring_log_record(NO_CUDA_RUNTIME):
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
    """The checks of the config that read no data and need no process group, made by
    ``train_net.py`` before it spawns processes, each ending the command with one line
    naming the key to set (:mod:`lada.engine.preflight`), not with a traceback or the
    workers' ``ProcessExitedException``: the device and the precision (checked again by
    :func:`setup_cfg` in every process), the schedule's steps, the files of the datasets
    the run uses, every ``--dataset`` used, and ``--eval-only``'s test datasets and
    weights."""
    cfg = command_line_cfg(args)
    _check_runtime(cfg)
    # a run config saved before steps were checked still evaluates; the recipe sets its own
    if not args.eval_only and not _recipe_applies(cfg):
        check_steps(cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER, "SOLVER.STEPS", "SOLVER.MAX_ITER")
    datasets = list(getattr(args, "dataset", ()))
    used: dict[str, str] = {}  # dataset -> the key that names it
    if not args.eval_only or _recipe_applies(cfg):  # the recipe reads the training set
        used.update(dict.fromkeys(cfg.DATASETS.TRAIN, "DATASETS.TRAIN"))
    for name in cfg.DATASETS.TEST:
        used.setdefault(name, "DATASETS.TEST")
    check_registrations_used(  # first: it explains why the config's own datasets are read
        [entry[0] for entry in datasets], cfg.DATASETS.TRAIN, cfg.DATASETS.TEST,
        "DATASETS.TRAIN", "DATASETS.TEST", example="{key} \"('{name}',)\"")
    check_dataset_files(used, merge_registrations(cfg.DATASETS.REGISTER_COCO, datasets))
    if args.eval_only:
        check_eval_datasets(cfg.DATASETS.TEST, "DATASETS.TEST", cfg.DATASETS.TRAIN)
        check_eval_weights(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS",
                           given="MODEL.WEIGHTS" in list(args.opts)[0::2], resume=args.resume,
                           output_dir=cfg.OUTPUT_DIR, config_file=args.config_file)


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


def summarize_run(
    cfg: CfgNode, args: argparse.Namespace, warnings: list[str],
    results: Optional[Mapping[str, Any]],
) -> None:
    """Logs, on the main process, the end-of-run summary (:mod:`lada.engine.summary`) of a
    ``train_net.py`` run of ``cfg``: its ``warnings``, outputs and ``results``, with the
    README's figure when the config file is a shipped quick config and the run used its
    datasets."""
    if not comm.is_main_process():
        return
    file_cfg = _merged_cfg(args.config_file, [])[0]
    same_data = not getattr(args, "dataset", None) and all(
        list(cfg.DATASETS[key]) == list(file_cfg.DATASETS[key])
        for key in ("TRAIN", "TEST", "REGISTER_COCO"))
    figure = readme_figure(args.config_file) if same_data else None
    iterations = None if args.eval_only else (cfg.SOLVER.MAX_ITER, file_cfg.SOLVER.MAX_ITER)
    log_summary(summary_lines(cfg.OUTPUT_DIR, warnings, results, figure, iterations))


def _merged_cfg(
    config_file: str, opts: Sequence[str], notes: Optional[list[str]] = None
) -> tuple[CfgNode, CfgNode]:
    """The base of every config of the command line, not frozen: the modules of
    ``CUSTOM_IMPORTS`` imported (a matcher of your own registers its keys) -> get_cfg ->
    lada keys -> merge ``config_file`` (none if empty) -> merge the ``KEY VALUE`` ``opts``,
    with ``CUSTOM_IMPORTS`` as recorded (files absolute) -> the schedule moved with a
    command-line ``SOLVER.MAX_ITER`` (:func:`rescale_schedule`, unless the own-data recipe
    will choose it; its line appended to ``notes``); and a copy taken before the ``opts``
    (the own-data recipe's ``base``: what the files set)."""
    imported = import_custom(imports_named_by(config_file, opts))
    cfg = add_lada_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    file_cfg = cfg.clone()
    opts = list(opts)
    cfg.merge_from_list(opts)
    cfg.CUSTOM_IMPORTS = imported
    if not _recipe_applies(cfg):
        line = rescale_schedule(cfg, file_cfg, opts[0::2])
        if line and notes is not None:
            notes.append(line)
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
