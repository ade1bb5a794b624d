"""LazyConfig (``.py``) configs for ``tools/lazyconfig_train_net.py``: loading with
``key=value`` overrides (interpolations resolved, ``train.custom_imports`` imported, the
schedule moved with a ``train.max_iter`` override), the learning-rate multiplier the
configs use, the checks made before any process starts, and the registration and checks
of the datasets; what ``lada.engine.setup`` does for the yaml configs. Training and
evaluation of a loaded config: :mod:`lada.engine.lazy`."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import LazyConfig
from detectron2.engine import default_setup
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler, ParamScheduler
from omegaconf import DictConfig, OmegaConf

from ..custom_imports import import_custom
from ..data import DatasetChecks, install_dataset_check, register_coco_datasets
from ..evaluation import aspect_ratio_bands
from ..harmless_warnings import NO_CUDA_RUNTIME, ignoring_log_record
from ..schedule import check_steps, moved_schedule
from .amp import autocast_dtype
from .console import keep_dumps_in_log_file
from .lazy_checks import warn_lazy_detector_mismatch
from .preflight import (
    check_dataset_files, check_eval_datasets, check_eval_weights, check_registrations_used,
)
from .setup import merge_registrations

__all__ = [
    "AMP_KEYS",
    "check_before_launch",
    "load_lazy_config",
    "register_datasets",
    "rescale_lazy_schedule",
    "setup",
    "test_dataset_names",
    "warmup_multistep",
]

logger = logging.getLogger(__name__)

AMP_KEYS = ("train.amp.enabled", "train.amp.precision", "train.device")


def warmup_multistep(
    *,
    max_iter: int,
    steps: Sequence[int],
    warmup_iters: int,
    warmup_factor: float = 0.001,
    warmup_method: str = "linear",
    gamma: float = 0.1,
) -> ParamScheduler:
    """The learning-rate multiplier of the yaml configs' ``WarmupMultiStepLR`` (detectron2's
    ``build_lr_scheduler``) in iterations: x ``gamma`` at each of ``steps``, after a
    ``warmup_method`` warm-up over ``warmup_iters`` from ``warmup_factor``. The config
    interpolates ``max_iter`` from ``train.max_iter``, so that overriding the schedule's
    length keeps the warm-up and steps in iterations. A step outside (0, max_iter) is
    refused (the yaml path drops it with a warning)."""
    steps = [int(s) for s in steps]
    outside = [s for s in steps if not 0 < s < max_iter]
    if outside or steps != sorted(set(steps)):
        raise ValueError(
            f"lr_multiplier.steps must increase within (0, train.max_iter = {max_iter}), "
            f"got {steps}"
        )
    if warmup_iters < 0:
        raise ValueError(f"lr_multiplier.warmup_iters must be >= 0, got {warmup_iters}")
    multistep = MultiStepParamScheduler(
        values=[gamma**k for k in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
    )
    return WarmupParamScheduler(
        multistep, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )


def load_lazy_config(
    config_file: str, overrides: Sequence[str] = (), notes: Optional[List[str]] = None
) -> DictConfig:
    """The LazyConfig of ``config_file`` with ``key=value`` ``overrides`` applied and its
    interpolations (``"${train.max_iter}"``, ``"${..num_classes}"``) resolved, so that an
    override reaches every value that follows it and a part of the config (one test
    loader) can be copied on its own. A ``train.max_iter`` override moves the config's
    ``lr_multiplier.steps`` and ``warmup_iters`` with it (:func:`rescale_lazy_schedule`;
    yours win), the line saying so appended to ``notes``. Its ``train.custom_imports``
    (files or modules, as the yaml configs' ``CUSTOM_IMPORTS``) are imported, files
    recorded as absolute paths, so that a target such as ``L("my_matcher.MyMatcher")`` is
    found when it is built."""
    cfg = LazyConfig.load(config_file)
    schedule = _schedule(cfg)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    OmegaConf.resolve(cfg)
    line = rescale_lazy_schedule(cfg, schedule, [o.split("=", 1)[0] for o in overrides])
    if line and notes is not None:
        notes.append(line)
    if cfg.get("train", {}).get("custom_imports"):
        cfg.train.custom_imports = import_custom(cfg.train.custom_imports)
    return cfg


def _schedule(cfg: DictConfig) -> Optional[tuple[int, list[int], int]]:
    """(train.max_iter, lr_multiplier.steps, lr_multiplier.warmup_iters) of a config whose
    learning rate is :func:`warmup_multistep`'s; None for another schedule."""
    multiplier = cfg.get("lr_multiplier")
    if multiplier is None or not {"steps", "warmup_iters"} <= set(multiplier.keys()):
        return None
    return int(cfg.train.max_iter), [int(s) for s in multiplier.steps], int(multiplier.warmup_iters)


def rescale_lazy_schedule(
    cfg: DictConfig, schedule: Optional[tuple[int, list[int], int]], override_keys: Sequence[str]
) -> Optional[str]:
    """The LazyConfig twin of :func:`lada.engine.setup.rescale_schedule`: with a
    ``train.max_iter`` override other than the config's (``schedule``: its length, steps
    and warm-up), ``lr_multiplier.steps`` and ``warmup_iters`` at the config's fractions
    (:func:`lada.schedule.moved_schedule`), each unless overridden too; returns the line
    that says so, None when nothing moved."""
    keys = set(override_keys)
    if schedule is None or "train.max_iter" not in keys:
        return None
    old, base_steps, base_warmup = schedule
    new = int(cfg.train.max_iter)
    if new == old:
        return None
    values, line = moved_schedule(
        base_steps, base_warmup, old, new,
        ("train.max_iter", "lr_multiplier.steps", "lr_multiplier.warmup_iters"), keys,
        "override those keys to choose others")
    if "lr_multiplier.steps" in values:
        cfg.lr_multiplier.steps = list(values["lr_multiplier.steps"])
    if "lr_multiplier.warmup_iters" in values:
        cfg.lr_multiplier.warmup_iters = values["lr_multiplier.warmup_iters"]
    return line


def setup(args: argparse.Namespace) -> DictConfig:
    """Loads the config (``train.output_dir`` made absolute and the ``--dataset``
    registrations added to ``dataloader.register_coco``, so that the saved ``config.yaml``
    is reusable alone and writes beside its run from any folder), refuses a device, precision
    or schedule this machine or run cannot have, registers and checks the datasets, runs
    detectron2's ``default_setup`` (logging, output dir, config dump, seed; the dumps to
    ``log.txt`` only) and logs lada's loggers too."""
    notes: List[str] = []
    cfg = load_lazy_config(args.config_file, args.opts, notes)
    cfg.train.output_dir = os.path.abspath(cfg.train.output_dir)
    # the saved config.yaml registers the --dataset datasets again, as train_net.py's
    cfg.dataloader.register_coco = merge_registrations(
        cfg.dataloader.get("register_coco", []), getattr(args, "dataset", ()))
    _check_runtime(cfg)
    aspect_ratio_bands(cfg.dataloader.evaluator.aspect_ratio_edges)  # bad edges stop early
    register_datasets(cfg, args)
    keep_dumps_in_log_file(cfg.train.output_dir)
    with ignoring_log_record(NO_CUDA_RUNTIME):
        default_setup(cfg, args)
    for line in notes:
        logger.info(line)
    warn_lazy_detector_mismatch(cfg)
    return cfg


def check_before_launch(args: argparse.Namespace) -> None:
    """What ``train_net.py``'s :func:`lada.engine.setup.check_before_launch` checks, for a
    LazyConfig, before any process starts (one line naming the key, no traceback): the
    device, precision and schedule, the files of the datasets the run uses, every
    ``--dataset`` used, and ``--eval-only``'s test datasets and weights
    (``train.init_checkpoint``)."""
    cfg = load_lazy_config(args.config_file, args.opts)
    _check_runtime(cfg)
    if not args.eval_only and _schedule(cfg) is not None:
        check_steps(cfg.lr_multiplier.steps, cfg.train.max_iter, "lr_multiplier.steps",
                    "train.max_iter")
    train, test = _names(cfg.dataloader.train.dataset.names), test_dataset_names(cfg)
    used: Dict[str, str] = {}
    for key, names in (("dataloader.train.dataset.names", [] if args.eval_only else train),
                       ("dataloader.test.dataset.names", test)):
        for name in names:
            used.setdefault(name, key)
    datasets = list(getattr(args, "dataset", ()))
    check_registrations_used(
        [entry[0] for entry in datasets], train, test, "dataloader.train.dataset.names",
        "dataloader.test.dataset.names", example="{key}={name}")
    check_dataset_files(used, [list(e) for e in cfg.dataloader.get("register_coco", [])] + datasets)
    if args.eval_only:
        check_eval_datasets(test, "dataloader.test.dataset.names", train, example="{key}={name}")
        check_eval_weights(
            cfg.train.init_checkpoint, "train.init_checkpoint",
            given=any(o.startswith("train.init_checkpoint=") for o in args.opts),
            resume=args.resume, output_dir=cfg.train.output_dir, config_file=args.config_file,
            example="{key}={value}")


def register_datasets(cfg: DictConfig, args: argparse.Namespace) -> None:
    """Registers ``dataloader.register_coco`` and ``--dataset`` datasets (lazily) and puts
    the data checks on the training and test datasets; runs in every worker process."""
    entries = [list(e) for e in cfg.dataloader.get("register_coco", [])]
    register_coco_datasets(entries + list(getattr(args, "dataset", [])))
    checks = cfg.dataloader.checks
    train_names = _names(cfg.dataloader.train.dataset.names)
    for name in dict.fromkeys(train_names + test_dataset_names(cfg)):
        install_dataset_check(name, DatasetChecks(
            box_policy=dict(checks.box_policy),
            num_classes=cfg.model.num_classes,
            training=name in train_names,
            allow_unannotated=checks.allow_unannotated,
        ))


def test_dataset_names(cfg: DictConfig) -> List[str]:
    """The test datasets (``dataloader.test.dataset.names``: a name or a list)."""
    return _names(cfg.dataloader.test.dataset.names)


def _check_runtime(cfg: DictConfig) -> None:
    device = cfg.train.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"train.device is '{device}' but no CUDA device is available; add "
            "`train.device=cpu` to the command line."
        )
    amp = cfg.train.amp
    try:
        autocast_dtype(amp.enabled, amp.precision, device, keys=AMP_KEYS)
    except ValueError as error:
        raise SystemExit(str(error)) from error


def _names(names) -> List[str]:
    if isinstance(names, str):
        return [names]
    return list(names)
