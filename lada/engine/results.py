"""The results of an evaluation of ``train_net.py`` (``--eval-only``, or the final one of a
training run) and of ``tools/lazyconfig_train_net.py`` as a file, for scripts (the study's
re-evaluation among them): detectron2 only logs them (and, in training, puts them in
``metrics.json`` beside every other scalar)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils import comm

__all__ = ["EVAL_RESULTS", "write_eval_results", "write_results_file"]

EVAL_RESULTS = "eval_results.json"


def write_eval_results(
    cfg: CfgNode, results: Mapping[str, Any], weights: str | None = None
) -> Path | None:
    """Writes ``OUTPUT_DIR/eval_results.json`` (see :func:`write_results_file`) of the
    ``weights`` evaluated (default: a yaml config's ``MODEL.WEIGHTS``, as ``--eval-only``
    loads them; after training, the final model) on ``DATASETS.TEST``."""
    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    return write_results_file(cfg.OUTPUT_DIR, weights, cfg.DATASETS.TEST, results)


def write_results_file(
    output_dir: str, weights: str, test_datasets: Sequence[str], results: Mapping[str, Any]
) -> Path | None:
    """Writes ``output_dir/eval_results.json`` on the main process and returns its path:
    the weights evaluated, each test dataset's number of images and annotations (what was
    evaluated), and the metrics, flattened with the keys of ``metrics.json``
    (``bbox/AP``, ``bbox/AP@ar>=3``; ``<dataset>/bbox/AP`` with several test datasets).
    A metric that is not a number (detectron2's NaN AP of a size range or category
    without ground truth) is written as ``null``: strict JSON has no NaN."""
    if not comm.is_main_process():
        return None
    datasets = {}
    for name in test_datasets:
        records = DatasetCatalog.get(name)
        datasets[name] = {
            "images": len(records),
            "annotations": sum(len(r.get("annotations", ())) for r in records),
        }
    path = Path(output_dir) / EVAL_RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "weights": weights,
        "datasets": datasets,
        "metrics": {k: _json_number(v) for k, v in flatten_results_dict(dict(results)).items()},
    }
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(content, indent=1, allow_nan=False))
    os.replace(partial, path)
    return path


def _json_number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
