"""The checks a training entry point makes before it starts any process or reads any data,
each ending the command with one line that says what to set (``SystemExit``), not a
traceback: ``train_net.py`` (:func:`lada.engine.setup.check_before_launch`) and
``tools/lazyconfig_train_net.py`` (:func:`lada.engine.lazy.check_before_launch`) call them
with their own key names.

* the files of the datasets the run uses exist (the embedded dataset's message says how
  to make it, detectron2's builtin COCO's where it is looked for);
* every ``--dataset`` registration is used by the training or test datasets (otherwise
  the run would silently train on the config's own datasets);
* ``--eval-only`` has trained weights to evaluate (otherwise it would evaluate a randomly
  initialised model, or the weights a run started from).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.synthetic import EMBEDDED_ROOT, MAKE_EMBEDDED

__all__ = ["check_dataset_files", "check_eval_weights", "check_registrations_used"]

FINAL_MODEL = "model_final.pth"  # detectron2's name for the last checkpoint of a run
LAST_CHECKPOINT = "last_checkpoint"  # fvcore's pointer to the checkpoint --resume loads


def check_dataset_files(
    used: Mapping[str, str], registrations: Iterable[Sequence[str]]
) -> None:
    """``used``: each dataset the run reads -> the key that names it (``DATASETS.TRAIN``);
    ``registrations``: ``[name, json_file, image_root]`` entries. A used dataset whose
    json or image folder is missing stops the run: one registered here, or one of
    detectron2's builtin COCO-format datasets (``coco_2017_train``: its files under
    ``$DETECTRON2_DATASETS``); other datasets are checked when loaded."""
    files = {str(entry[0]): (Path(entry[1]), Path(entry[2])) for entry in registrations}
    for name, key in used.items():
        builtin = name not in files and _builtin_coco_files(name)
        if builtin:
            files[name] = builtin
        if name not in files:
            continue
        json_file, image_root = files[name]
        if not json_file.is_file():
            missing = f"annotation file {json_file}"
        elif not image_root.is_dir():
            missing = f"image folder {image_root}"
        else:
            continue
        raise SystemExit(f"dataset '{name}' ({key}): {missing} does not exist"
                         + (_where_builtin_data_is() if builtin else _how_to_make(json_file)))


def _builtin_coco_files(name: str) -> Optional[Tuple[Path, Path]]:
    """The json and image folder of a dataset that detectron2 registered itself with
    COCO-format files (its builtin ``coco_*`` names), None for any other name."""
    if name not in DatasetCatalog.list():
        return None
    metadata = MetadataCatalog.get(name)
    json_file, image_root = metadata.get("json_file"), metadata.get("image_root")
    return (Path(json_file), Path(image_root)) if json_file and image_root else None


def _where_builtin_data_is() -> str:
    root = os.environ.get("DETECTRON2_DATASETS")
    where = f"$DETECTRON2_DATASETS ({root})" if root else (
        f"datasets/ of the working folder {Path.cwd()} ($DETECTRON2_DATASETS is not set)")
    return (f"; detectron2's builtin datasets are read under {where}: set DETECTRON2_DATASETS "
            "to the folder holding coco/ (the layout: datasets/README.md)")


def _how_to_make(json_file: Path) -> str:
    """The hint after a missing file: a relative path is read from the working folder
    (the configs of the repository name the embedded dataset from its root)."""
    hint = ""
    if not json_file.is_absolute():
        hint = f" (a relative path, read from the working folder {Path.cwd()})"
    if json_file.parent.parent.parts[-len(EMBEDDED_ROOT.parts):] == EMBEDDED_ROOT.parts:
        hint += f"; it is the embedded synthetic dataset: make it with {MAKE_EMBEDDED}"
    return hint


def check_registrations_used(
    registered: Iterable[str], train: Sequence[str], test: Sequence[str],
    train_key: str, test_key: str, example: str,
) -> None:
    """Each dataset of ``registered`` (the ``--dataset`` names) must be one of ``train``
    (the value of ``train_key``) or ``test`` (``test_key``): a registration nothing uses
    means the run would train and test on the config's own datasets. ``example`` is how
    to set a key on this command line, with ``{key}`` and ``{name}`` to fill in."""
    unused = [name for name in dict.fromkeys(registered) if name not in (*train, *test)]
    if not unused:
        return
    name = unused[0]
    raise SystemExit(
        f"--dataset {name} is registered but the run does not use it: {train_key} is "
        f"{_names(train)} and {test_key} {_names(test)}; add "
        + example.format(key=train_key, name=name) + " (training) or "
        + example.format(key=test_key, name=name) + " (testing) to the command line")


def _names(names: Sequence[str]) -> str:
    return repr(tuple(names)) if names else "empty"


def check_eval_datasets(test: Sequence[str], test_key: str, train: Sequence[str],
                        example: str = "{key} \"('{name}',)\"") -> None:
    """For ``--eval-only``: ``test`` (the value of ``test_key``) must name a dataset, or
    the command would evaluate nothing and write an ``eval_results.json`` without
    metrics. The hint names the first training dataset, the config's own data."""
    if test:
        return
    name = train[0] if train else "name"
    raise SystemExit(f"--eval-only: {test_key} is empty, so nothing would be evaluated; add "
                     f"`{example.format(key=test_key, name=name)}` (a registered dataset) to "
                     "the command line")


def check_eval_weights(
    weights: str, weights_key: str, *, given: bool, resume: bool, output_dir: str,
    config_file: str, example: str = "{key} {value}", command: str = "--eval-only",
) -> None:
    """For ``--eval-only`` (or another ``command`` that runs trained weights, e.g. the
    export): ``weights`` (the value of ``weights_key``; ``given``: set on the command
    line, where ``example`` sets a key) must name trained weights. Refused: none (a
    randomly initialised model would be evaluated), and, for a run's own saved
    ``config.yaml`` (its folder is the config's output dir), weights the command line does
    not name: that config's weights are what the run started from, not what it trained.
    ``--resume`` with a checkpoint in ``output_dir`` evaluates that checkpoint."""
    folder = Path(output_dir).resolve() if output_dir else None
    if resume and folder is not None and (folder / LAST_CHECKPOINT).is_file():
        return
    run_config = (folder is not None and bool(config_file)
                  and Path(config_file).resolve().parent == folder)
    if weights and (given or not run_config):
        return
    final = folder / FINAL_MODEL if folder is not None else None
    if final is not None and final.is_file():
        add = f"add `{example.format(key=weights_key, value=final)}` (this run's final model)"
    else:
        add = (f"add `{example.format(key=weights_key, value='path/to/' + FINAL_MODEL)}` "
               "(the checkpoint of a training run)")
    if not weights:
        problem = f"{weights_key} is empty, so a randomly initialised model would be evaluated"
    else:
        problem = (f"{weights_key} {weights} is the run config's: what the run started from, "
                   "not what it trained")
    raise SystemExit(f"{command}: {problem}; {add} to the command line")
