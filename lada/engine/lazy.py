"""Training and evaluation of LazyConfig (``.py``) configs, for
``tools/lazyconfig_train_net.py``: the steps of ``train_net.py`` on a LazyConfig, once
loaded, checked and its datasets registered (:mod:`lada.engine.lazy_config`, whose
functions this module also gives, as the tool and saved run configs name them here).

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
  the share of GT boxes left without a positive (:class:`lada.engine.hooks.UntrainedGTWarning`),
  writers (console, ``metrics.json``, TensorBoard), then the stop with a checkpoint on
  SIGINT/SIGTERM (:mod:`lada.engine.interrupt`);
* at start-up, a warning when the detector is not the matcher's method's
  (:mod:`lada.engine.lazy_checks`).
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine import defaults as detectron2_defaults
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from omegaconf import DictConfig

from .amp import AutocastTrainer, autocast_dtype
from .checkpoint import LAZY_KEYS, CheckpointError, LadaCheckpointer, failed_save_last
from .hooks import UntrainedGTWarning
from .interrupt import STOP_SIGNALS, StopOnSignal
from .lazy_checks import lazy_method, lazy_untrained_gt_advice
from .lazy_config import (  # re-exported: tools and saved run configs name them here
    AMP_KEYS, check_before_launch, load_lazy_config, register_datasets, rescale_lazy_schedule,
    setup, test_dataset_names, warmup_multistep,
)
from .preflight import FINAL_MODEL
from .results import write_results_file
from .run_folder import warn_earlier_run
from .summary import log_summary, readme_figure, summary_lines

__all__ = [
    "build_step",
    "check_before_launch",
    "do_eval_only",
    "do_test",
    "do_train",
    "load_lazy_config",
    "register_datasets",
    "rescale_lazy_schedule",
    "setup",
    "summarize_run",
    "test_dataset_names",
    "warmup_multistep",
]

logger = logging.getLogger(__name__)


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
    output dir), evaluates and writes ``eval_results.json``. A checkpoint that does not
    give every weight of the model (another ``model.num_classes``, another architecture)
    or cannot be read ends the command with one line (``SystemExit``) saying why."""
    model = _build_model(cfg)
    try:
        LadaCheckpointer(
            model, save_dir=cfg.train.output_dir, trust_pickle=cfg.train.weights_trust_pickle,
            for_inference=True, keys=LAZY_KEYS,
        ).resume_or_load(cfg.train.init_checkpoint, resume=resume)
    except CheckpointError as error:
        raise SystemExit(f"--eval-only: {error}") from None
    results = do_test(cfg, model)
    write_results_file(
        cfg.train.output_dir, cfg.train.init_checkpoint, test_dataset_names(cfg), results
    )
    return results


def do_train(cfg: DictConfig, resume: bool) -> Optional[Dict[str, Any]]:
    """Trains for ``train.max_iter`` iterations with periodic checkpoints and evaluation
    (``train.eval_period``; 0: at the end only); writes the last evaluation's results to
    ``eval_results.json`` (of the final model) and returns them (None without one)."""
    warn_earlier_run(cfg.train.output_dir, resume)
    for name in test_dataset_names(cfg):
        DatasetCatalog.get(name)  # loads and checks the test data before training
    model = _build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    model = detectron2_defaults.create_ddp_model(model, **cfg.train.ddp)
    trainer = build_step(cfg, model, loader, optimizer)
    checkpointer = LadaCheckpointer(
        model, cfg.train.output_dir, trust_pickle=cfg.train.weights_trust_pickle,
        keys=LAZY_KEYS, trainer=trainer,
    )
    main = comm.is_main_process()
    last: Dict[str, Any] = {}

    def evaluate() -> Dict[str, Any]:
        last["results"] = do_test(cfg, model)
        return last["results"]

    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
        UntrainedGTWarning(lazy_untrained_gt_advice(cfg), _matcher_name(cfg)),
        hooks.PeriodicWriter(
            default_writers(cfg.train.output_dir, cfg.train.max_iter),
            period=cfg.train.log_period,
        ) if main else None,
        StopOnSignal(checkpointer),
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # a checkpoint holds the iteration that finished: continue at the next one
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    STOP_SIGNALS.install()  # before the data loader's workers are forked (its first batch)
    try:
        with failed_save_last():
            trainer.train(start_iter, cfg.train.max_iter)
    finally:
        STOP_SIGNALS.restore()
    results = last.get("results")
    if results:
        write_results_file(cfg.train.output_dir, os.path.join(cfg.train.output_dir, FINAL_MODEL),
                           test_dataset_names(cfg), results)
    return results


def _matcher_name(cfg: DictConfig) -> str:
    """The method of ``model.matcher`` (its registered name), else its class's name."""
    method = lazy_method(cfg)
    if method is not None:
        return method.METHOD.name
    target = cfg.model.matcher.get("_target_")
    return getattr(target, "__name__", str(target))


def summarize_run(
    cfg: DictConfig, args: argparse.Namespace, warnings: List[str],
    results: Optional[Dict[str, Any]],
) -> None:
    """The end-of-run summary (:mod:`lada.engine.summary`) of a LazyConfig run, on the main
    process, with the README's figure for a shipped quick config on its own datasets."""
    if not comm.is_main_process():
        return
    file_cfg = load_lazy_config(args.config_file)
    data_keys = ("dataloader.train.dataset.names", "dataloader.test.dataset.names",
                 "dataloader.register_coco")
    same_data = not getattr(args, "dataset", None) and not any(
        o.split("=", 1)[0] in data_keys for o in args.opts)
    figure = readme_figure(args.config_file) if same_data else None
    iterations = None if args.eval_only else (cfg.train.max_iter, file_cfg.train.max_iter)
    log_summary(summary_lines(cfg.train.output_dir, warnings, results, figure, iterations))


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


