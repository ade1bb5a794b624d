"""Whether a checkpoint's weights fit the model they are loaded into, from fvcore's
``_IncompatibleKeys`` of the load: the one-line refusal of an inference load (evaluation,
export, prediction) whose model would run with freshly initialised parameters, and the
class heads that a training load re-initialises (``checkpoint.LadaCheckpointer``). The
messages name a config family's own keys (:class:`ConfigKeys`: yaml or LazyConfig)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from .run_folder import RUN_CONFIG  # a LazyConfig run saves its config under that name too

__all__ = ["CLASS_HEAD", "LAZY_KEYS", "YAML_KEYS", "ConfigKeys", "class_heads", "inference_refusal"]

CLASS_HEAD = "cls_score"  # name of the class-logit conv of the FCOS-style heads
# Model state that only training uses (the losses' running normaliser, a buffer so that it
# is checkpointed): not compared by an inference load.
TRAINING_ONLY_PREFIXES = ("loss.",)
LISTED = 3  # parameters named per kind in an inference refusal


@dataclass(frozen=True)
class ConfigKeys:
    """How the messages of a config family name its keys: the class count, the output
    folder, a ``KEY VALUE`` setting on the command line (``example``, with ``{key}`` and
    ``{value}``), whether the family has the own-data recipe, and the class head's prior
    probability."""

    num_classes: str
    output_dir: str
    example: str
    recipe: bool
    prior_prob: str


YAML_KEYS = ConfigKeys("MODEL.FCOS.NUM_CLASSES", "OUTPUT_DIR", "{key} {value}", recipe=True,
                       prior_prob="MODEL.FCOS.PRIOR_PROB")
LAZY_KEYS = ConfigKeys("model.num_classes", "train.output_dir", "{key}={value}", recipe=False,
                       prior_prob="model.head.prior_prob")


def inference_refusal(filename: str, incompatible: Any, keys: ConfigKeys = YAML_KEYS) -> str:
    """Why the checkpoint ``filename`` cannot be run by the model it was loaded into
    (``incompatible``: fvcore's ``_IncompatibleKeys`` of the load; the training losses'
    state left out), one line naming the parameters and what to do; "" when it fits."""
    shapes = [entry for entry in incompatible.incorrect_shapes if _used(entry[0])]
    reshaped = {entry[0] for entry in shapes}  # not loaded, so missing too: named once
    missing = [k for k in incompatible.missing_keys if _used(k) and k not in reshaped]
    unexpected = [key for key in incompatible.unexpected_keys if _used(key)]
    if not (shapes or missing or unexpected):
        return ""
    runs = (["with freshly initialised values in place of trained ones"]
            if shapes or missing else []) + (
        ["without parts of the trained model"] if unexpected else [])
    sentences = [f"refused checkpoint {filename} for inference: it does not fit the model of "
                 f"this config, which would run {' and '.join(runs)}"]
    heads = class_heads(shapes)
    for key, shape_checkpoint, shape_model in heads[:1]:
        sentences.append(
            f"The checkpoint's class head ({key[: -len('.bias')]}) predicts "
            f"{_count(shape_checkpoint[0], 'class', 'classes')}, the model's "
            f"{shape_model[0]} ({keys.num_classes} {shape_model[0]})")
    if shapes:
        sentences.append(_listed(
            shapes, "parameter of another shape", "parameters of another shape",
            lambda entry: f"{entry[0]} ({_shape(entry[1])} in the checkpoint, "
                          f"{_shape(entry[2])} in the model)"))
    if missing:
        sentences.append(_listed(missing, "parameter of the model missing from the checkpoint",
                                 "parameters of the model missing from the checkpoint", str))
    if unexpected:
        sentences.append(_listed(unexpected, "parameter of the checkpoint the model does not have",
                                 "parameters of the checkpoint the model does not have", str))
    config = f"the run's saved {keys.output_dir}/{RUN_CONFIG}"
    beside = os.path.join(os.path.dirname(os.path.abspath(filename)), RUN_CONFIG)
    if os.path.isfile(beside):
        config += f" ({beside}, beside the checkpoint)"
    holds = "every value the run used" + (", the own-data recipe's too" if keys.recipe else "")
    advice = f"Load it with the config it was trained with: {config}, which holds {holds}"
    if heads:
        setting = keys.example.format(key=keys.num_classes, value=heads[0][1][0])
        advice += f"; or set `{setting}` (the checkpoint's class count) on the command line"
    return ". ".join(sentences + [advice]) + "."


def _used(key: str) -> bool:
    """Whether inference uses the model state of ``key`` (not the training losses')."""
    return not key.startswith(TRAINING_ONLY_PREFIXES)


def class_heads(shapes: Sequence[tuple]) -> list[tuple]:
    """The ``(key, shape in the checkpoint, shape in the model)`` of class-head biases."""
    return [entry for entry in shapes if entry[0].split(".")[-2:] == [CLASS_HEAD, "bias"]]


def _listed(items: Sequence[Any], one: str, many: str, describe) -> str:
    """``3 parameters ...: a, b, c`` (the first :data:`LISTED`, then how many more)."""
    shown = ", ".join(describe(item) for item in items[:LISTED])
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return f"{_count(len(items), one, many)}: {shown}{more}"


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape) or "scalar"
