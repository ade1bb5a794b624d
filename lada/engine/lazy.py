"""Training and evaluation of LazyConfig (``.py``) configs, for
``tools/lazyconfig_train_net.py``: the steps of ``train_net.py`` on a LazyConfig.

A config (``configs/lazy/``) holds ``model``, ``dataloader`` (``train``, ``test``,
``evaluator``, ``checks``, ``register_coco``), ``optimizer``, ``lr_multiplier`` and
``train`` (output dir, weights, schedule length, AMP, device, periods, seed). What the
yaml path does through :class:`lada.engine.Trainer` happens here with the same parts:

* datasets of ``dataloader.register_coco`` and ``--dataset`` are registered, and every
  training and test dataset is checked at load (:mod:`lada.data.box_checks`, with the
  policies of ``dataloader.checks``); the test datasets are loaded before training, so
  that a bad evaluation set stops the run before training rather than after it;
* images are read by :class:`lada.data.ReadCheckedDatasetMapper` (the config's mapper);
* evaluation: :class:`lada.evaluation.SlenderCOCOEvaluator` per test dataset;
* the step: detectron2's ``SimpleTrainer``, its ``AMPTrainer`` (float16, CUDA) or
  :class:`lada.engine.AutocastTrainer` (bfloat16), from ``train.amp``;
* checkpoints: :class:`lada.engine.LadaCheckpointer` with the trainer's state (iteration,
  LR scheduler, optimizer, grad scaler), so that ``--resume`` continues (from the newest
  complete checkpoint);
* detectron2's hooks: iteration timer, LR scheduler, periodic checkpointer, evaluation,
  writers (console, ``metrics.json``, TensorBoard), then the stop with a checkpoint on
  SIGINT/SIGTERM (:mod:`lada.engine.interrupt`).
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Sequence

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine import defaults as detectron2_defaults
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.solver import WarmupParamScheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.common.param_scheduler import MultiStepParamScheduler, ParamScheduler
from omegaconf import DictConfig, OmegaConf

from ..custom_imports import import_custom
from ..data import DatasetChecks, install_dataset_check, register_coco_datasets
from ..evaluation import aspect_ratio_bands
from .amp import AutocastTrainer, autocast_dtype
from .checkpoint import LadaCheckpointer, failed_save_last
from .interrupt import STOP_SIGNALS, StopOnSignal
from .results import write_results_file

__all__ = [
    "build_step",
    "do_eval_only",
    "do_test",
    "do_train",
    "load_lazy_config",
    "register_datasets",
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


def load_lazy_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The LazyConfig of ``config_file`` with ``key=value`` ``overrides`` applied and its
    interpolations (``"${train.max_iter}"``, ``"${..num_classes}"``) resolved, so that an
    override reaches every value that follows it and a part of the config (one test
    loader) can be copied on its own. Its ``train.custom_imports`` (files or modules, as
    the yaml configs' ``CUSTOM_IMPORTS``) are imported, files recorded as absolute paths,
    so that a target such as ``L("my_matcher.MyMatcher")`` is found when it is built."""
    cfg = LazyConfig.load(config_file)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    OmegaConf.resolve(cfg)
    if cfg.get("train", {}).get("custom_imports"):
        cfg.train.custom_imports = import_custom(cfg.train.custom_imports)
    return cfg


def setup(args: argparse.Namespace) -> DictConfig:
    """Loads the config, refuses a device or precision this machine does not have,
    registers and checks the datasets, runs detectron2's ``default_setup`` (logging,
    output dir, config dump, seed) and logs lada's loggers too."""
    cfg = load_lazy_config(args.config_file, args.opts)
    _check_runtime(cfg)
    aspect_ratio_bands(cfg.dataloader.evaluator.aspect_ratio_edges)  # bad edges stop early
    register_datasets(cfg, args)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="lada")
    return cfg


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


def do_test(cfg: DictConfig, model: torch.nn.Module) -> Dict[str, Any]:
    """Evaluates ``model`` on each test dataset (its own loader and evaluator, results in
    ``<train.output_dir>/inference/<dataset>``), as ``DefaultTrainer.test``: the results
    of the one dataset, or a dict of them by dataset name."""
    results = OrderedDict()
    for name in test_dataset_names(cfg):
        loader_cfg = copy.deepcopy(cfg.dataloader.test)
        loader_cfg.dataset.names = name
        loader_cfg.mapper.dataset_names = [name]
        evaluator_cfg = copy.deepcopy(cfg.dataloader.evaluator)
        evaluator_cfg.dataset_name = name
        if evaluator_cfg.get("output_dir") is None:
            evaluator_cfg.output_dir = os.path.join(cfg.train.output_dir, "inference", name)
        results[name] = inference_on_dataset(
            model, instantiate(loader_cfg), instantiate(evaluator_cfg)
        )
        if comm.is_main_process():
            logger.info("Evaluation results for %s in csv format:", name)
            print_csv_format(results[name])
    return results[next(iter(results))] if len(results) == 1 else results


def do_eval_only(cfg: DictConfig, resume: bool) -> Dict[str, Any]:
    """Loads ``train.init_checkpoint`` (or, with ``resume``, the last checkpoint of the
    output dir), evaluates and writes ``eval_results.json``."""
    model = _build_model(cfg)
    LadaCheckpointer(
        model, save_dir=cfg.train.output_dir, trust_pickle=cfg.train.weights_trust_pickle
    ).resume_or_load(cfg.train.init_checkpoint, resume=resume)
    results = do_test(cfg, model)
    write_results_file(
        cfg.train.output_dir, cfg.train.init_checkpoint, test_dataset_names(cfg), results
    )
    return results


def do_train(cfg: DictConfig, resume: bool) -> None:
    """Trains for ``train.max_iter`` iterations with periodic checkpoints and evaluation
    (``train.eval_period``; 0: at the end only)."""
    for name in test_dataset_names(cfg):
        DatasetCatalog.get(name)  # loads and checks the test data before training
    STOP_SIGNALS.install()  # before the data loader's workers are forked
    model = _build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    model = detectron2_defaults.create_ddp_model(model, **cfg.train.ddp)
    trainer = build_step(cfg, model, loader, optimizer)
    checkpointer = LadaCheckpointer(
        model, cfg.train.output_dir, trust_pickle=cfg.train.weights_trust_pickle,
        trainer=trainer,
    )
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(
            default_writers(cfg.train.output_dir, cfg.train.max_iter),
            period=cfg.train.log_period,
        ) if main else None,
        StopOnSignal(checkpointer),
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # a checkpoint holds the iteration that finished: continue at the next one
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    try:
        with failed_save_last():
            trainer.train(start_iter, cfg.train.max_iter)
    finally:
        STOP_SIGNALS.restore()


def _build_model(cfg: DictConfig) -> torch.nn.Module:
    model = instantiate(cfg.model)
    logger.info("Model:\n%s", model)
    return model.to(cfg.train.device)


def build_step(cfg: DictConfig, model, loader, optimizer) -> SimpleTrainer:
    """The trainer step of ``train.amp`` on ``train.device``: detectron2's
    ``SimpleTrainer`` without AMP, its ``AMPTrainer`` in float16, :class:`AutocastTrainer`
    in bfloat16; a precision the device does not allow raises ``ValueError`` naming
    the ``train.*`` key."""
    amp = cfg.train.amp
    dtype = autocast_dtype(amp.enabled, amp.precision, cfg.train.device, keys=AMP_KEYS)
    if dtype is None:
        return SimpleTrainer(model, loader, optimizer)
    if dtype == torch.float16:
        return AMPTrainer(model, loader, optimizer)
    return AutocastTrainer(
        model, loader, optimizer, device_type=torch.device(cfg.train.device).type, dtype=dtype
    )


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
