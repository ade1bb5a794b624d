"""The run folder's ``config.yaml``: written by a training run once it has started, never
by ``--eval-only`` or by a run that fails at start-up, and complete enough to be reused
alone (``--config-file OUTPUT_DIR/config.yaml``) by ``--eval-only``, ``tools/predict.py``
and the other tools.

* ``DATASETS.REGISTER_COCO`` holds the datasets given with ``--dataset``
  (:func:`lada.engine.setup.build_cfg`), so the reused config registers them again, and
  every registration's paths absolute (a config's own relative paths, such as the quick
  configs' ``datasets/synthetic/...``, resolved from the training's working folder), so
  that the reused config finds the data from any folder.
* With the own-data recipe, the saved keys are those the recipe chose and
  ``RECIPE.APPLIED`` is True, so a reuse keeps the sizes and schedule that were trained
  instead of choosing them again from whatever data it is given.
* ``OUTPUT_DIR`` is saved absolute (the run folder itself), so that ``--eval-only`` run
  from any working folder writes ``eval_results.json`` and ``inference/`` beside the run,
  not under a relative ``output/...`` of that folder. A moved run folder needs
  ``OUTPUT_DIR <its new place>`` on the command line.
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Optional

from detectron2.config import CfgNode
from detectron2.utils import comm

__all__ = ["RUN_CONFIG", "earlier_run_warning", "save_run_config", "warn_earlier_run"]

RUN_CONFIG = "config.yaml"

logger = logging.getLogger(__name__)


def save_run_config(cfg: CfgNode) -> Path | None:
    """Writes ``cfg`` to ``OUTPUT_DIR/config.yaml`` on the main process (through a
    temporary file, so an interrupted write leaves the previous file whole), with
    ``RECIPE.APPLIED`` set when the recipe is enabled and ``OUTPUT_DIR`` and the
    registrations' paths absolute; returns its path."""
    if not comm.is_main_process():
        return None
    saved = cfg.clone()
    saved.defrost()
    saved.OUTPUT_DIR = str(Path(cfg.OUTPUT_DIR).resolve())
    saved.DATASETS.REGISTER_COCO = [
        [str(name), str(Path(json_file).resolve()), str(Path(image_root).resolve())]
        for name, json_file, image_root in cfg.DATASETS.REGISTER_COCO
    ]
    if saved.RECIPE.ENABLED:
        saved.RECIPE.APPLIED = True
    path = Path(saved.OUTPUT_DIR) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(RUN_CONFIG + ".tmp")
    partial.write_text(saved.dump())
    os.replace(partial, path)
    logger.info("Full config saved to %s", path)
    return path


EARLIER_RUN_FILES = ("model_final.pth", "last_checkpoint", "metrics.json")
"""What a training run leaves in its ``OUTPUT_DIR`` (its final model, the pointer to its
newest checkpoint, its metrics), unlike a folder that only an evaluation or a start-up
failure wrote."""


def earlier_run_warning(output_dir: str, resume: bool) -> Optional[str]:
    """The warning for a training without ``--resume`` into a folder that holds an
    earlier run, which it would replace (checkpoints, ``config.yaml``,
    ``eval_results.json``) and mix with (``metrics.json``, TensorBoard); None otherwise."""
    folder = Path(output_dir)
    found = [folder / name for name in EARLIER_RUN_FILES if (folder / name).is_file()]
    if resume or not found:
        return None
    when = datetime.datetime.fromtimestamp(max(path.stat().st_mtime for path in found))
    return (f"OUTPUT_DIR {folder} holds an earlier run ({', '.join(p.name for p in found)}, "
            f"last written {when:%Y-%m-%d %H:%M}): this run replaces its checkpoints, "
            "config.yaml and eval_results.json and appends to its metrics.json; give another "
            "OUTPUT_DIR to keep it, or --resume to continue it")


def warn_earlier_run(output_dir: str, resume: bool) -> None:
    """Logs :func:`earlier_run_warning` on the main process, before a training starts
    (``train_net.py`` and ``tools/lazyconfig_train_net.py``)."""
    message = comm.is_main_process() and earlier_run_warning(output_dir, resume)
    if message:
        logger.warning(message)
