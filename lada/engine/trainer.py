"""detectron2's ``DefaultTrainer`` with the project's evaluator, data mapper and
checkpointer."""
from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from ..compat import HAS_COMPILED_OPS
from ..data import ReadCheckedDatasetMapper
from .checkpoint import LadaCheckpointer

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` that

    * loads (and so checks, see ``lada.data.checks``) its test datasets at start-up, so
      that a bad evaluation set stops the run before training rather than after it;
    * maps images with :class:`ReadCheckedDatasetMapper` (read errors name the file);
    * checkpoints with :class:`LadaCheckpointer` (safe loading, atomic saving);
    * evaluates with ``COCOEvaluator`` (box AP); its compiled fast path is used only when
      detectron2 has its C++ extension, plain pycocotools otherwise.
    """

    def __init__(self, cfg):
        super().__init__(cfg)  # loads and checks the training datasets
        for name in cfg.DATASETS.TEST:
            DatasetCatalog.get(name)

    def build_hooks(self):
        # DefaultTrainer.__init__ hard-codes a DetectionCheckpointer; build_hooks runs
        # right after, before the PeriodicCheckpointer hook takes it: replace it here.
        old = self.checkpointer
        self.checkpointer = LadaCheckpointer(
            old.model, old.save_dir, trust_pickle=self.cfg.MODEL.WEIGHTS_TRUST_PICKLE,
            save_to_disk=old.save_to_disk, **old.checkpointables,
        )
        return super().build_hooks()

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
        return COCOEvaluator(
            dataset_name, tasks=("bbox",), output_dir=output_folder, use_fast_impl=HAS_COMPILED_OPS
        )
