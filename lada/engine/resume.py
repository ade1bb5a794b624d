"""Which checkpoint ``--resume`` continues from: the newest complete one of the run folder,
whatever ``last_checkpoint`` says.

A save writes the checkpoint (``model_<iteration>.pth``, atomically) and then
``last_checkpoint`` (atomically too, :mod:`lada.engine.checkpoint`). A run killed between
the two leaves a complete checkpoint newer than the one ``last_checkpoint`` names;
detectron2 would resume from the older one and later overwrite the newer. Here every
``.pth`` file of the folder is checked instead:

* complete: its zip directory and its pickled content read with ``torch.load``
  (weights-only, memory-mapped: tensor data are not read) and it records an
  ``iteration``, as every checkpoint of a training run does;
* a file that cannot be read that way is named in a warning and skipped (a file cut
  short by a copy, a disk error); a ``.pth`` without an iteration (exported weights) is
  not a checkpoint of a run and is ignored.

The choice, among the complete checkpoints: the one of the highest iteration among the
files written since ``last_checkpoint`` was last updated (no earlier than it: saved by
a run killed before it could update it) and the one it names; ties go to the newer
file, then to the one ``last_checkpoint`` names. A complete file of a higher iteration
written *before* the last update is left out with a warning: an update that named a
lower iteration was made by a later run into the same folder (started without
``--resume``), whose checkpoints are the ones to continue. Without ``last_checkpoint``,
or when the file it names is missing or unreadable, the highest iteration of all.
"""
from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

__all__ = ["CheckpointFile", "ResumeChoice", "choose_resume_checkpoint", "scan_checkpoints"]

LAST_CHECKPOINT = "last_checkpoint"  # fvcore's name for the file naming the last save


@dataclass(frozen=True)
class CheckpointFile:
    """One ``.pth`` file of a run folder: its recorded ``iteration`` (None: none
    recorded), or ``error``, why it cannot be read."""

    name: str
    mtime_ns: int
    iteration: Optional[int] = None
    error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.iteration is not None


@dataclass(frozen=True)
class ResumeChoice:
    """The checkpoint to resume from (``name`` None: there is none), why (``reason``,
    for the log) and the ``warnings`` to log with it; ``refusal``: why the folder cannot
    be resumed although it holds checkpoints, none of them complete."""

    name: Optional[str]
    iteration: Optional[int] = None
    reason: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    refusal: Optional[str] = None


def read_checkpoint_file(path: str) -> CheckpointFile:
    """Checks that ``path`` is a complete checkpoint and reads its iteration, without
    reading its tensors (torch's zip format memory-mapped; the legacy format read whole)."""
    stat = os.stat(path)
    name = os.path.basename(path)
    try:
        checkpoint = _load_without_tensors(path)
    except Exception as error:  # noqa: BLE001 -- any failure makes the file unusable
        return CheckpointFile(name, stat.st_mtime_ns, error=f"{type(error).__name__}: {error}")
    iteration = checkpoint.get("iteration") if isinstance(checkpoint, dict) else None
    if not isinstance(iteration, int) or isinstance(iteration, bool):
        return CheckpointFile(name, stat.st_mtime_ns)
    return CheckpointFile(name, stat.st_mtime_ns, iteration=iteration)


def _load_without_tensors(path: str):
    """``torch.load`` (weights-only) of ``path``, its tensors memory-mapped, not read, where
    the file is a zip (torch's format; its directory ends the file, so a file cut short has
    none) and the file system can map it; read whole otherwise."""
    if zipfile.is_zipfile(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 -- e.g. a file system that cannot map: read whole
            pass
    return torch.load(path, map_location="cpu", weights_only=True)


def scan_checkpoints(
    folder: str, read: Callable[[str], CheckpointFile] = read_checkpoint_file
) -> tuple[list[CheckpointFile], Optional[str], Optional[int]]:
    """The ``.pth`` files of ``folder`` (read by ``read``), the name ``last_checkpoint``
    holds and that file's modification time (both None without it)."""
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".pth"))
    files = [read(path) for path in paths if os.path.isfile(path)]
    tag_path = os.path.join(folder, LAST_CHECKPOINT)
    try:
        with open(tag_path) as f:
            tagged = f.read().strip()
        tag_time = os.stat(tag_path).st_mtime_ns
    except FileNotFoundError:
        tagged = tag_time = None
    return files, tagged, tag_time


def choose_resume_checkpoint(
    files: list[CheckpointFile], tagged: Optional[str], tag_time: Optional[int]
) -> ResumeChoice:
    """The newest complete checkpoint of ``files`` (see the module docstring), given what
    ``last_checkpoint`` names (``tagged``) and when it was written (``tag_time``)."""
    by_name = {f.name: f for f in files}
    complete = [f for f in files if f.complete]
    warnings = [
        f"skipping {f.name}: not a complete checkpoint ({f.error}); move it away to keep it "
        "(the run saves over files of its name)"
        for f in files if f.error
    ]
    tagged_file = by_name.get(tagged) if tagged else None

    def newest(candidates):
        return max(candidates, key=lambda f: (f.iteration, f.mtime_ns, f.name == tagged))

    if not complete:
        broken = [f.name for f in files if f.error]
        if tagged is None and not broken:
            return ResumeChoice(None)
        named = f"last_checkpoint names {tagged}; " if tagged is not None else ""
        return ResumeChoice(None, warnings=tuple(warnings), refusal=(
            f"no complete checkpoint to resume from: {named}unreadable: "
            f"{', '.join(broken) or 'none'}. Move them away to start from MODEL.WEIGHTS "
            "(train.init_checkpoint), or drop --resume"
        ))
    if tagged is None:
        choice = newest(complete)
        reason = "the newest complete checkpoint (the folder has no last_checkpoint file)"
    else:
        since_tag = [f for f in complete if f.mtime_ns >= tag_time or f.name == tagged]
        choice = newest(since_tag or complete)
        reason = _reason(choice, tagged, tagged_file)
    warnings += [
        f"not resuming from {f.name} (iteration {f.iteration}): it was written before "
        f"last_checkpoint was updated to name a checkpoint of a lower iteration, so by an "
        "earlier run into this folder; move it away to keep it (this run saves over files "
        "of its name)"
        for f in complete if f.iteration > choice.iteration
    ]
    return ResumeChoice(choice.name, choice.iteration, reason, tuple(warnings))


def _reason(choice: CheckpointFile, tagged: str, tagged_file: Optional[CheckpointFile]) -> str:
    if choice.name == tagged:
        return "the newest complete checkpoint, as last_checkpoint says"
    if tagged_file is None:
        return f"the newest complete checkpoint; last_checkpoint names {tagged}, which is missing"
    if not tagged_file.complete:
        return (f"the newest complete checkpoint; last_checkpoint names {tagged}, which is not "
                "a complete checkpoint")
    return (
        f"the newest complete checkpoint, written after last_checkpoint's {tagged} (iteration "
        f"{tagged_file.iteration}): the run stopped after saving it and before updating "
        "last_checkpoint"
    )


def log_choice(logger: logging.Logger, folder: str, choice: ResumeChoice) -> None:
    """Logs the warnings and the choice of :func:`choose_resume_checkpoint`."""
    for message in choice.warnings:
        logger.warning(f"--resume in {folder}: {message}")
    if choice.name is not None:
        logger.info(f"--resume: continuing from {os.path.join(folder, choice.name)} "
                    f"(iteration {choice.iteration}): {choice.reason}")
