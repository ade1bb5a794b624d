"""detectron2's ``DetectionCheckpointer`` with safe loading, atomic saving and a resume from
the newest complete checkpoint.

* Loading: a ``.pkl`` goes through :mod:`lada.engine.safe_pickle` (numpy arrays and plain
  types only) unless ``trust_pickle``; ``.pth`` files are read by ``torch.load``, whose
  weights-only default (torch >= 2.6) refuses anything but tensors and plain types. Any
  failure is a :class:`CheckpointError` naming the file and what is wrong with it.
* Class head, training loads (``MODEL.WEIGHTS`` as initialisation, ``--resume``): a
  checkpoint whose class count differs from the model's (e.g. the embedded-data
  checkpoint of ``make demo``, 5 classes, as ``MODEL.WEIGHTS`` of a 1-class dataset)
  loads everything but the class head; detectron2 skips the mismatched ``cls_score``
  weight and bias with a generic warning, and a log line says the class head was
  re-initialised, from how many to how many classes. The skipped parameters keep the
  model's initialisation (weights N(0, 0.01), bias the prior ``-log((1 - p) / p)``,
  ``MODEL.FCOS.PRIOR_PROB``).
* Inference loads (``for_inference=True``: ``train_net.py --eval-only``, the LazyConfig
  tool's ``--eval-only``, ``tools/predict.py``, ``tools/export_model.py``,
  ``tools/visualize_assignment.py --weights``, ``benchmarks/assignment_diagnostics.py
  --weights``; each but the benchmark ends with the message as its one last line,
  ``SystemExit``): the model runs with the checkpoint's
  values as they are, so a checkpoint that does not give every one of them is refused
  with a :class:`CheckpointError` instead of leaving random values in the model: a
  parameter of another shape (the class head of another class count: a config built
  without the own-data recipe's ``MODEL.FCOS.NUM_CLASSES``), a parameter of the model
  missing from the checkpoint, or one of the checkpoint the model does not have (a model
  of another config). The message names the file, the first parameters of each kind
  and their counts, the class counts, and what to do: load it with the run's saved
  ``OUTPUT_DIR/config.yaml`` (which holds what the recipe chose), or set the class count
  to the checkpoint's. The state of the training losses (``loss.*``, the running loss
  normaliser) is left out of the comparison: inference does not use it. A missing file
  is a :class:`CheckpointError` too (detectron2 asserts).
* Saving, in this order: the checkpoint is written to a temporary
  ``.<name>.<pid>.<random>.partial`` beside it, flushed to disk and renamed over
  ``model_*.pth`` (POSIX rename is atomic); then ``last_checkpoint`` the same way. A kill
  never leaves a truncated file under a final name. A save that fails (no space,
  permission, I/O error) removes its temporary file and raises
  :class:`CheckpointSaveError`, whose message names the file, the cause and the
  checkpoint ``--resume`` would continue from.
* Resuming (``has_checkpoint`` / ``get_checkpoint_file``, which fvcore's
  ``resume_or_load`` and detectron2's trainer call): the newest complete checkpoint of
  the folder (:mod:`lada.engine.resume`), also when the run was killed between the
  checkpoint's rename and ``last_checkpoint``'s; the choice and its reason are logged.
  Unfinished ``.partial`` files are listed in a warning (not deleted: another process
  might still be writing one).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from typing import Any, IO, Iterator, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .resume import (
    LAST_CHECKPOINT, CheckpointFile, ResumeChoice, choose_resume_checkpoint, log_choice,
    read_checkpoint_file, scan_checkpoints,
)
from .safe_pickle import UnsafePickleError, load_weights_pickle
from .weights_fit import LAZY_KEYS, YAML_KEYS, ConfigKeys, class_heads, inference_refusal

__all__ = [
    "LAZY_KEYS", "YAML_KEYS", "CheckpointError", "CheckpointSaveError", "ConfigKeys",
    "LadaCheckpointer", "failed_save_last",
]

PARTIAL_SUFFIX = ".partial"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded; the message names the file and the reason."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the message names the file, the cause and what
    is left on disk; ``errno`` is the cause's."""

    def __init__(self, message: str, cause: OSError):
        super().__init__(message)
        self.errno = cause.errno


class LadaCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` (same formats, same conversions of model-zoo files) that
    refuses unsafe pickles and writes atomically. ``trust_pickle``: read ``.pkl`` files with
    plain pickle (``MODEL.WEIGHTS_TRUST_PICKLE``). ``for_inference``: the model will run
    with the loaded weights (evaluation, export, prediction), so a checkpoint that does
    not give each of its parameters, at its shape, is refused (:class:`CheckpointError`);
    otherwise (training: initialisation or resume) what does not fit keeps its
    initialisation, as detectron2 does. ``keys``: the config keys the messages name
    (:data:`YAML_KEYS`, :data:`LAZY_KEYS`)."""

    def __init__(
        self, model, save_dir: str = "", *, trust_pickle: bool = False,
        for_inference: bool = False, keys: ConfigKeys = YAML_KEYS, save_to_disk=None,
        **checkpointables,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.trust_pickle = trust_pickle
        self.for_inference = for_inference
        self.keys = keys
        self._loading = ""  # the file being loaded, for the messages of _load_model
        self.path_manager = _AtomicWrites(self.path_manager)
        self._files_read: dict[tuple[str, int, int], CheckpointFile] = {}

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
            log_choice(self.logger, self.save_dir, self.resume_choice())
        return super().resume_or_load(path, resume=resume)

    def has_checkpoint(self) -> bool:
        return bool(self.get_checkpoint_file())

    def get_checkpoint_file(self) -> str:
        """The newest complete checkpoint of ``save_dir`` (:meth:`resume_choice`), ``""``
        when there is none; raises :class:`CheckpointError` when the folder holds
        checkpoints but none is complete."""
        choice = self.resume_choice()
        if choice.refusal:
            raise CheckpointError(f"--resume in {self.save_dir}: {choice.refusal}")
        return os.path.join(self.save_dir, choice.name) if choice.name else ""

    def resume_choice(self) -> ResumeChoice:
        """Which checkpoint of ``save_dir`` a resume continues from, and why."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return ResumeChoice(None)
        scan = scan_checkpoints(self.save_dir, self._read_checkpoint_file)
        return choose_resume_checkpoint(*scan)

    def _read_checkpoint_file(self, path: str) -> CheckpointFile:
        """:func:`read_checkpoint_file`, once per version of the file (the periodic
        checkpointer asks for the newest checkpoint after each save)."""
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._files_read:
            self._files_read[key] = read_checkpoint_file(path)
        return self._files_read[key]

    def save(self, name: str, **kwargs: Any) -> None:
        try:
            super().save(name, **kwargs)
        except CheckpointSaveError:
            raise
        except Exception as error:
            # torch's zip writer turns a failed write of the file into a RuntimeError
            # ("unexpected pos ...") raised while handling the OSError
            cause = _in_chain(error, OSError)
            if cause is None:
                raise
            path = os.path.join(self.save_dir, f"{name}.pth")
            raise CheckpointSaveError(
                f"cannot save checkpoint {path}: {_reason(cause)}. Nothing was written under "
                f"that name; {self._what_is_left()} {_advice(cause, self.save_dir)}", cause,
            ) from cause

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        try:
            super().tag_last_checkpoint(last_filename_basename)
        except OSError as error:
            path = os.path.join(self.save_dir, LAST_CHECKPOINT)
            raise CheckpointSaveError(
                f"cannot update {path}: {_reason(error)}. The checkpoint "
                f"{last_filename_basename} is complete, and --resume continues from it. "
                f"{_advice(error, self.save_dir)}", error,
            ) from error

    def _what_is_left(self) -> str:
        try:
            choice = self.resume_choice()
        except OSError as error:
            return f"the folder cannot be read ({_reason(error)})."
        if choice.name is None:
            return "no checkpoint of this run is on disk yet."
        return (f"the checkpoint --resume continues from, {choice.name} (iteration "
                f"{choice.iteration}), is intact.")

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # detectron2 asserts: a traceback; an empty path, which loads nothing, is the
        # caller's to refuse (train_net.py's preflight, predict.py)
        if self.for_inference and path and "://" not in path and not os.path.isfile(path):
            raise CheckpointError(f"cannot load checkpoint {path}: no such file")
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint: dict[str, Any]):
        incompatible = super()._load_model(checkpoint)
        if self.for_inference:
            refusal = inference_refusal(self._loading, incompatible, self.keys)
            if refusal:
                raise CheckpointError(refusal)
            return incompatible
        for key, shape_checkpoint, shape_model in class_heads(incompatible.incorrect_shapes):
            module = key[: -len(".bias")]
            self.logger.info(
                f"class head re-initialised: {module} predicts {shape_checkpoint[0]} classes in "
                f"the checkpoint and {shape_model[0]} in the model ({self.keys.num_classes}); "
                "its weight and bias keep their initialisation (bias from "
                f"{self.keys.prior_prob}), every other matching parameter is loaded"
            )
        return incompatible

    def _load_file(self, filename: str) -> dict[str, Any]:
        self._loading = filename
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


@contextlib.contextmanager
def failed_save_last() -> Iterator[None]:
    """Around a training loop: a :class:`CheckpointSaveError` that stopped it is what the
    run ends with, also when the hooks that end the loop after it fail as well (the writers
    flushing ``metrics.json`` onto the same full disk): their error is logged, and the
    save's message stays the last thing printed."""
    try:
        yield
    except BaseException as error:
        failed_save = _in_chain(error, CheckpointSaveError)
        if failed_save is None or failed_save is error:
            raise
        logging.getLogger(__name__).error(
            f"ending the run after the failed save failed too: {type(error).__name__}: {error}"
        )
        raise failed_save  # noqa: B904 -- its own cause (the OSError) is what to show


def _in_chain(error: Optional[BaseException], kind: type) -> Optional[BaseException]:
    """The first exception of type ``kind`` in ``error``'s chain (its causes and the
    exceptions it was raised while handling), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _advice(error: OSError, folder: str) -> str:
    """What to do about a failed write into ``folder``, with its free space."""
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free there now"
    except OSError:
        free = "its free space unknown"
    elsewhere = "or set OUTPUT_DIR (train.output_dir) elsewhere"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        action = f"Free space on the file system of {folder} ({free}) {elsewhere}"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        action = f"Make {folder} writable {elsewhere}"
    else:
        action = f"Check the disk of {folder} ({free}) {elsewhere}"
    return f"{action}, then continue with --resume."


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
            self._discard()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.partial, self.path)
        except BaseException:  # a full disk fails the flush or the fsync: leave nothing
            self._discard()
            raise
        _fsync_folder(os.path.dirname(os.path.abspath(self.path)))

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial)


def _fsync_folder(folder: str) -> None:
    """Makes a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
