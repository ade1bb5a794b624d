"""detectron2's ``DefaultTrainer`` with the project's evaluator, data mapper, checkpointer
and mixed-precision step."""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict

import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, TrainerBase

from ..compat import HAS_COMPILED_OPS
from ..data import ReadCheckedDatasetMapper, check_test_categories
from ..evaluation import SlenderCOCOEvaluator, aspect_ratio_bands
from .amp import AutocastTrainer, amp_dtype
from .checkpoint import LadaCheckpointer, failed_save_last
from .hooks import UntrainedGTWarning, untrained_gt_advice
from .interrupt import STOP_SIGNALS, StopOnSignal
from .run_folder import save_run_config

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` that

    * loads (and so checks, see ``lada.data.box_checks``) its test datasets at start-up, so
      that a bad evaluation set stops the run before training rather than after it, and
      compares their categories with the training set's;
    * maps images with :class:`ReadCheckedDatasetMapper` (read errors name the file);
    * checkpoints with :class:`LadaCheckpointer` (safe loading, atomic saving);
    * evaluates with ``COCOEvaluator`` (box AP; its compiled fast path is used only when
      detectron2 has its C++ extension, plain pycocotools otherwise), plus the AP per
      aspect-ratio band of ``TEST.ASPECT_RATIO_EDGES`` (:class:`SlenderCOCOEvaluator`);
    * with ``SOLVER.AMP.ENABLED`` (see :mod:`lada.engine.amp`) steps with detectron2's
      ``AMPTrainer`` in float16 (CUDA) and with :class:`AutocastTrainer` in bfloat16;
    * logs the share of the first 20 iterations' GT boxes without a positive, a warning
      above 5 % (:class:`~lada.engine.hooks.UntrainedGTWarning`);
    * checkpoints the optimizer and the grad scaler of its step, as upstream detectron2
      does (v0.6's ``DefaultTrainer`` saves neither, so ``--resume`` restarted them);
    * on SIGINT or SIGTERM, stops after the iteration in progress with a checkpoint
      (:mod:`lada.engine.interrupt`; its handlers are installed before the data loader's
      workers start);
    * writes ``OUTPUT_DIR/config.yaml`` when training starts, once the model, the data and
      the checkpoint have loaded (:mod:`lada.engine.run_folder`).
    """

    def __init__(self, cfg):
        STOP_SIGNALS.install()  # before super() forks the data loader's workers
        try:
            self._build(cfg)
        except BaseException:
            STOP_SIGNALS.restore()  # a trainer that could not be built trains nothing
            raise

    def _build(self, cfg) -> None:
        dtype = amp_dtype(cfg)  # refuses a precision the device does not allow
        aspect_ratio_bands(cfg.TEST.ASPECT_RATIO_EDGES)  # bad edges stop before training
        with warnings.catch_warnings():
            if dtype == torch.bfloat16:
                # DefaultTrainer builds detectron2's AMPTrainer (replaced below), whose
                # CUDA GradScaler warns on a machine without CUDA.
                warnings.filterwarnings("ignore", message=".*GradScaler")
            super().__init__(cfg)  # loads and checks the training datasets
        if dtype == torch.bfloat16:
            step = self._trainer
            self._trainer = AutocastTrainer(
                step.model, step.data_loader, step.optimizer,
                device_type=torch.device(cfg.MODEL.DEVICE).type, dtype=dtype,
            )
        for name in cfg.DATASETS.TEST:
            DatasetCatalog.get(name)
        check_test_categories(cfg.DATASETS.TRAIN, cfg.DATASETS.TEST)

    def resume_or_load(self, resume: bool = True) -> None:
        """detectron2's, with the signal handlers of ``__init__`` put back when the
        checkpoint cannot be loaded: that trainer trains nothing, and the process (a test,
        a notebook) keeps Python's Ctrl-C."""
        try:
            super().resume_or_load(resume=resume)
        except BaseException:
            STOP_SIGNALS.restore()
            raise

    def train(self):
        """Trains (after writing ``OUTPUT_DIR/config.yaml``); returns the results of the
        last evaluation (None without one), which ``DefaultTrainer.train`` returns only
        with ``TEST.EXPECTED_RESULTS``."""
        save_run_config(self.cfg)
        STOP_SIGNALS.install()  # again, if another trainer of this process restored them
        try:
            with failed_save_last():
                super().train()
        finally:
            STOP_SIGNALS.restore()
        return getattr(self, "_last_eval_results", None)

    def state_dict(self) -> Dict[str, Any]:
        state = TrainerBase.state_dict(self)  # iteration, hooks (LR scheduler)
        state["_trainer"] = self._trainer.state_dict()  # optimizer, grad scaler
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        TrainerBase.load_state_dict(self, state)
        if "_trainer" in state:  # absent from checkpoints of v0.6's DefaultTrainer
            self._trainer.load_state_dict(state["_trainer"])

    def build_hooks(self):
        # DefaultTrainer.__init__ hard-codes a DetectionCheckpointer; build_hooks runs
        # right after, before the PeriodicCheckpointer hook takes it: replace it here.
        old = self.checkpointer
        self.checkpointer = LadaCheckpointer(
            old.model, old.save_dir, trust_pickle=self.cfg.MODEL.WEIGHTS_TRUST_PICKLE,
            save_to_disk=old.save_to_disk, **old.checkpointables,
        )
        hooks = super().build_hooks()
        # before the writers (the last hooks), so that its warning precedes their output
        hooks.insert(len(hooks) - 1, UntrainedGTWarning(untrained_gt_advice(self.cfg),
                                                        self.cfg.MODEL.MATCHER.NAME))
        hooks.append(StopOnSignal(self.checkpointer))  # last: after the iteration's writes
        return hooks

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=ReadCheckedDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        mapper = ReadCheckedDatasetMapper(cfg, False, dataset_names=(dataset_name,))
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return SlenderCOCOEvaluator(
            dataset_name, tasks=("bbox",), output_dir=output_folder,
            use_fast_impl=HAS_COMPILED_OPS, aspect_ratio_edges=cfg.TEST.ASPECT_RATIO_EDGES,
        )
