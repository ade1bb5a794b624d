"""detectron2's ``DetectionCheckpointer`` with safe loading and atomic saving.

* Loading: a ``.pkl`` goes through :mod:`lada.engine.safe_pickle` (numpy arrays and plain
  types only) unless ``trust_pickle``; ``.pth`` files are read by ``torch.load``, whose
  weights-only default (torch >= 2.6) refuses anything but tensors and plain types. Any
  failure is a :class:`CheckpointError` naming the file and what is wrong with it.
* Class head: a checkpoint whose class count differs from the model's (e.g. the
  embedded-data checkpoint of ``make demo``, 5 classes, as ``MODEL.WEIGHTS`` of a 1-class
  dataset) loads everything but the class head; detectron2 skips the mismatched
  ``cls_score`` weight and bias with a generic warning, and a log line says the class head
  was re-initialised, from how many to how many classes. The skipped parameters keep the
  model's initialisation (weights N(0, 0.01), bias the prior ``-log((1 - p) / p)``,
  ``MODEL.FCOS.PRIOR_PROB``).
* Saving: every file the checkpointer writes (``model_*.pth``, ``last_checkpoint``) is
  written to a temporary ``.<name>.<pid>.<random>.partial`` beside it and renamed over the
  final name once complete (POSIX rename is atomic), so a kill never leaves a truncated
  file under a final name; ``last_checkpoint`` is written after the checkpoint it names.
  ``--resume`` reads ``last_checkpoint`` and so ignores unfinished writes; it lists them
  in a warning (not deleted: another process might still be writing one).
"""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from typing import Any, IO

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .safe_pickle import UnsafePickleError, load_weights_pickle

__all__ = ["CheckpointError", "LadaCheckpointer"]

PARTIAL_SUFFIX = ".partial"
CLASS_HEAD = "cls_score"  # name of the class-logit conv of the FCOS-style heads


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded; the message names the file and the reason."""


class LadaCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` (same formats, same conversions of model-zoo files) that
    refuses unsafe pickles and writes atomically. ``trust_pickle``: read ``.pkl`` files with
    plain pickle (``MODEL.WEIGHTS_TRUST_PICKLE``)."""

    def __init__(
        self, model, save_dir: str = "", *, trust_pickle: bool = False, save_to_disk=None,
        **checkpointables,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.trust_pickle = trust_pickle
        self.path_manager = _AtomicWrites(self.path_manager)

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        if resume and self.save_to_disk and os.path.isdir(self.save_dir):
            unfinished = sorted(
                name for name in os.listdir(self.save_dir)
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX)
            )
            if unfinished:
                self.logger.warning(
                    f"ignoring unfinished checkpoint writes in {self.save_dir} (of a killed "
                    f"run?): {', '.join(unfinished)}; delete them to free the space"
                )
        return super().resume_or_load(path, resume=resume)

    def _load_model(self, checkpoint: dict[str, Any]):
        incompatible = super()._load_model(checkpoint)
        heads = {
            key: (shape_checkpoint, shape_model)
            for key, shape_checkpoint, shape_model in incompatible.incorrect_shapes
            if key.split(".")[-2:] == [CLASS_HEAD, "bias"]
        }
        for key, (shape_checkpoint, shape_model) in heads.items():
            module = key[: -len(".bias")]
            self.logger.info(
                f"class head re-initialised: {module} predicts {shape_checkpoint[0]} classes in "
                f"the checkpoint and {shape_model[0]} in the model (MODEL.FCOS.NUM_CLASSES); its "
                "weight and bias keep their initialisation (bias from MODEL.FCOS.PRIOR_PROB), "
                "every other matching parameter is loaded"
            )
        return incompatible

    def _load_file(self, filename: str) -> dict[str, Any]:
        if filename.endswith(".pkl") and not self.trust_pickle:
            checkpoint = self._load_weights_pickle(filename)
        else:
            try:
                checkpoint = super()._load_file(filename)
            except Exception as error:  # torch's and pickle's errors name no file
                raise CheckpointError(
                    f"cannot load checkpoint {filename}: {type(error).__name__}: {error}"
                ) from error
        _check_weights(filename, checkpoint)
        return checkpoint

    def _load_weights_pickle(self, filename: str) -> dict[str, Any]:
        """detectron2's ``.pkl`` handling (its model zoo or Caffe2's), restricted unpickler."""
        try:
            with self.path_manager.open(filename, "rb") as f:
                data = load_weights_pickle(f)
        except UnsafePickleError as error:
            raise CheckpointError(
                f"refused checkpoint {filename}: {error}. If you trust this file, set "
                "MODEL.WEIGHTS_TRUST_PICKLE True (plain pickle runs any code it contains)."
            ) from error
        except Exception as error:
            raise CheckpointError(
                f"cannot load checkpoint {filename}: not a pickle of weights "
                f"({type(error).__name__}: {error})"
            ) from error
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {filename} holds a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # detectron2 model zoo
            self.logger.info("Reading a file from '{}'".format(data["__author__"]))
            return data
        data = data.get("blobs", data)  # Caffe2 detection models nest them in "blobs"
        weights = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}


def _check_weights(filename: str, checkpoint: Any) -> None:
    weights = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(weights, Mapping) or not weights:
        raise CheckpointError(f"checkpoint {filename} holds no model weights")
    for key, value in weights.items():
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise CheckpointError(
                f"checkpoint {filename}: weight '{key}' is a {type(value).__name__}, "
                "not a tensor or array"
            )


class _AtomicWrites:
    """Proxy of a checkpointer's iopath ``PathManager``: ``open`` for writing a local file
    returns an :class:`_AtomicFile`; everything else is the path manager's."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name: str) -> Any:
        return getattr(self._path_manager, name)

    def open(self, path: str, mode: str = "r", **kwargs) -> IO:
        if "w" not in mode or "://" in str(path):
            return self._path_manager.open(path, mode, **kwargs)
        return _AtomicFile(str(path), mode)


class _AtomicFile:
    """A file opened for writing that appears under its name only once complete: writes
    go to a temporary file in the same folder, which ``close()`` (or leaving a ``with``
    block normally) flushes to disk and renames over the target; leaving a ``with``
    block by an exception deletes it."""

    def __init__(self, path: str, mode: str):
        folder, name = os.path.split(os.path.abspath(path))
        self.path = path
        self.partial = os.path.join(
            folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        )
        self._file = open(self.partial, mode.replace("w", "x"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> "_AtomicFile":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.partial)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)
        _fsync_folder(os.path.dirname(os.path.abspath(self.path)))


def _fsync_folder(folder: str) -> None:
    """Makes a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
