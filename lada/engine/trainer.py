"""detectron2's ``DefaultTrainer`` with the project's evaluator."""
from __future__ import annotations

import os

from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from ..compat import HAS_COMPILED_OPS

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """Evaluates with ``COCOEvaluator`` (box AP); its compiled fast path is used only when
    detectron2 has its C++ extension, plain pycocotools otherwise."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(
            dataset_name, tasks=("bbox",), output_dir=output_folder, use_fast_impl=HAS_COMPILED_OPS
        )
