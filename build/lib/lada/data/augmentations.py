"""Training augmentations beyond detectron2's resize and ``INPUT.RANDOM_FLIP``, named by
``INPUT.EXTRA_AUGMENTATIONS``; each is one of ``detectron2.data.transforms``."""
from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.data import transforms as T

__all__ = ["EXTRA_AUGMENTATIONS", "build_extra_augmentations"]

EXTRA_AUGMENTATIONS = ("vertical_flip", "color_jitter")


def build_extra_augmentations(cfg: CfgNode) -> list[T.Augmentation]:
    """The augmentations of ``INPUT.EXTRA_AUGMENTATIONS``, in the order of
    :data:`EXTRA_AUGMENTATIONS`, to append to detectron2's training augmentations.

    * ``vertical_flip``: ``RandomFlip(prob=0.5, vertical=True)`` (boxes flipped with it).
    * ``color_jitter``: ``RandomBrightness``, ``RandomContrast``, ``RandomSaturation``, each
      with a factor drawn from ``[1 - x, 1 + x]``, ``x = INPUT.COLOR_JITTER``; boxes are
      unchanged. ``RandomSaturation`` blends with a grey of weights (0.299, 0.587, 0.114)
      in channel order, i.e. with ``INPUT.FORMAT`` BGR a grey weighting blue most: still a
      blend towards a grey image.
    """
    names = list(cfg.INPUT.EXTRA_AUGMENTATIONS)
    unknown = [name for name in names if name not in EXTRA_AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"INPUT.EXTRA_AUGMENTATIONS: unknown {unknown}; choose from {list(EXTRA_AUGMENTATIONS)}"
        )
    strength = float(cfg.INPUT.COLOR_JITTER)
    if "color_jitter" in names and not 0 <= strength < 1:
        raise ValueError(f"INPUT.COLOR_JITTER must be in [0, 1), got {strength}")
    augmentations: list[T.Augmentation] = []
    if "vertical_flip" in names:
        augmentations.append(T.RandomFlip(prob=0.5, horizontal=False, vertical=True))
    if "color_jitter" in names:
        low, high = 1.0 - strength, 1.0 + strength
        augmentations += [
            T.RandomBrightness(low, high), T.RandomContrast(low, high), T.RandomSaturation(low, high),
        ]
    return augmentations
