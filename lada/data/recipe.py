"""The own-data recipe (``RECIPE.ENABLED``, ``configs/quick/own_data.yaml``): input size,
augmentations, schedule and class count chosen from the training datasets, for a small
dataset trained from scratch (or from an embedded-data checkpoint) on a CPU.

The quick configs are sized for the embedded 128 px dataset; a real dataset needs its own
sizes and schedule (README, "Train on your own data"). At start-up the recipe reads the
training datasets once and sets

* the size (``INPUT.MIN_SIZE_TEST``): the short side that keeps the median object at
  ``RECIPE.OBJECT_SIZE`` px, within [``RECIPE.MIN_SIZE``, ``RECIPE.MAX_SIZE``]: small
  images whose objects need more pixels are enlarged (``RECIPE.UPSAMPLE``; without it,
  at most the images' median short side), and no image has more pixels than its objects
  need;
* training sizes (``INPUT.MIN_SIZE_TRAIN``): that size times ``RECIPE.SCALES`` with
  ``multi_scale`` (one drawn per image), the size alone without; the long sides
  (``INPUT.MAX_SIZE_*``) from the images' median aspect ratio;
* flips and colour jitter (``INPUT.RANDOM_FLIP``, ``INPUT.EXTRA_AUGMENTATIONS``) from
  ``RECIPE.AUGMENTATIONS``;
* the schedule: ``RECIPE.IMS_PER_BATCH`` images per iteration with ``BASE_LR`` scaled
  linearly from the config's batch (Goyal et al. 2017), ``MAX_ITER`` for ``RECIPE.EPOCHS``
  epochs but at most what ``RECIPE.BUDGET_MEGAPIXELS`` of training pixels allow, ``STEPS``
  and ``WARMUP_ITERS`` at the config's fractions of its ``MAX_ITER``;
* ``MODEL.FCOS.NUM_CLASSES``: the training datasets' number of categories;
* the anchor boxes of every matcher that has them (``MODEL.MATCHER.<NAME>.ANCHOR_SCALE``
  of each registered matcher with an ``anchor_scale`` argument: ``atss``, ``ciou_atss``,
  ``lada``, ``paa``): the P3 anchor (side ``ANCHOR_SCALE`` x 8
  px) at ``RECIPE.ANCHOR_TO_OBJECT`` times the median object at the chosen size, the
  ratio the papers' 8-stride anchors have to the median COCO object at 800 px (see
  :data:`COCO_ANCHOR_TO_OBJECT`). The papers' 8 strides are 64 px at P3, twice the 32-px
  objects the size above gives, and leave boxes without a candidate (README, "Why
  ``paa`` trails").

A key the user set (see :func:`lada.engine.setup.user_set_keys`) is kept and the others
are chosen consistently with it (e.g. your ``INPUT.MIN_SIZE_TEST`` is the size the
training sizes are derived from; your ``SOLVER.MAX_ITER`` sets where the steps fall).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, Optional, Sequence, Tuple

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..matchers import matcher_class, registered_matchers, uses_anchors
from ..matchers.declaration import ANCHOR_ARGUMENT, config_key
from ..schedule import scaled_schedule

__all__ = [
    "RECIPE_AUGMENTATIONS",
    "DatasetStats",
    "Recipe",
    "anchor_keys",
    "apply_recipe",
    "choose_recipe",
    "dataset_stats",
    "recipe_keys",
]

RECIPE_AUGMENTATIONS = ("horizontal_flip", "vertical_flip", "color_jitter", "multi_scale")
# Config keys the recipe may set.
SIZE_KEYS = ("INPUT.MIN_SIZE_TEST", "INPUT.MIN_SIZE_TRAIN", "INPUT.MIN_SIZE_TRAIN_SAMPLING",
             "INPUT.MAX_SIZE_TRAIN", "INPUT.MAX_SIZE_TEST")
AUGMENTATION_KEYS = ("INPUT.RANDOM_FLIP", "INPUT.EXTRA_AUGMENTATIONS")
SOLVER_KEYS = ("SOLVER.IMS_PER_BATCH", "SOLVER.BASE_LR", "SOLVER.MAX_ITER", "SOLVER.STEPS",
               "SOLVER.WARMUP_ITERS")
CLASS_KEY = "MODEL.FCOS.NUM_CLASSES"


def anchor_keys() -> Dict[str, str]:
    """Registered matcher with anchor boxes (an ``anchor_scale`` argument,
    ``lada/matchers/declaration.py``) -> its ``ANCHOR_SCALE`` key, by name."""
    return {name: config_key(matcher_class(name), ANCHOR_ARGUMENT)
            for name in registered_matchers() if uses_anchors(matcher_class(name))}


def recipe_keys() -> Tuple[str, ...]:
    """Every config key the recipe may set."""
    return SIZE_KEYS + AUGMENTATION_KEYS + SOLVER_KEYS + (CLASS_KEY,) + tuple(anchor_keys().values())

# P3's stride, px: the anchor box of a P3 point is ANCHOR_SCALE x P3_STRIDE px wide.
P3_STRIDE = 8
# The ratio of the papers' P3 anchor (8 strides = 64 px) to the median COCO object at
# detectron2's 800-px test size, the default of RECIPE.ANCHOR_TO_OBJECT. The COCO
# detection evaluation page gives 41 % of the objects small (area < 32^2 px), 34 % medium
# (32^2-96^2), 24 % large at the images' own size: the median object's side (square root
# of its area) lies 9/34 of the way into the medium band, 32 x 3^(9/34) = 43 px
# (interpolated in log size). The images are at most 640 px wide, mostly 640 x 480, so 800
# px is 800 / 480 = 1.67 x: the median object is about 72 px there, and 64 / 72 = 0.9.
COCO_ANCHOR_TO_OBJECT = 0.9


@dataclass(frozen=True)
class DatasetStats:
    """What the recipe reads from the training datasets.

    num_images: images (with or without annotations).
    short_side, long_side: medians over the images of min / max of (height, width), px.
    aspect: median over the images of long / short side.
    object_size: median over the non-crowd boxes of sqrt(width * height), px at the
        images' own size; None without boxes.
    num_classes: number of categories; None if unknown or not the same in every dataset.
    """

    num_images: int
    short_side: float
    long_side: float
    aspect: float
    object_size: Optional[float]
    num_classes: Optional[int]


@dataclass
class Recipe:
    """values: config key -> value the recipe sets; kept: the recipe's keys the user set,
    with their values; lines: what was chosen and why, to log at start-up."""

    values: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


class _Chooser:
    """Fills a :class:`Recipe`: a key the user set is kept, any other takes the recipe's
    value; either way the value in force is returned, for the keys derived from it."""

    def __init__(self, cfg: CfgNode, user_keys: Collection[str]):
        self.cfg, self.user_keys, self.recipe = cfg, set(user_keys), Recipe()

    def __call__(self, key: str, value: Any) -> Any:
        if key in self.user_keys:
            self.recipe.kept[key] = _get(self.cfg, key)
            return self.recipe.kept[key]
        self.recipe.values[key] = value
        return value

    def yours(self, key: str) -> bool:
        return key in self.user_keys

    def say(self, line: str) -> None:
        self.recipe.lines.append(line)


def dataset_stats(dicts: Sequence[dict], num_classes: Optional[int] = None) -> DatasetStats:
    """Statistics of detectron2 dataset dicts (each with ``height``, ``width`` and
    ``annotations`` holding ``bbox`` / ``bbox_mode``)."""
    if not dicts:
        raise ValueError("the recipe needs at least one training image (DATASETS.TRAIN is empty)")
    sizes = np.array([(d["height"], d["width"]) for d in dicts], dtype=np.float64)  # (I, 2)
    short, long = sizes.min(axis=1), sizes.max(axis=1)
    areas = []
    for mode in (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS):
        boxes = [a["bbox"] for d in dicts for a in d.get("annotations", ())
                 if not a.get("iscrowd", 0) and BoxMode(a["bbox_mode"]) == mode]
        if boxes:
            xywh = BoxMode.convert(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), mode,
                                   BoxMode.XYWH_ABS)
            areas.append(xywh[:, 2].clip(min=0) * xywh[:, 3].clip(min=0))
    areas = np.concatenate(areas) if areas else np.zeros(0)
    return DatasetStats(
        num_images=len(dicts),
        short_side=float(np.median(short)),
        long_side=float(np.median(long)),
        aspect=float(np.median(long / short)),
        object_size=float(np.median(np.sqrt(areas))) if areas.size else None,
        num_classes=num_classes,
    )


def choose_recipe(
    cfg: CfgNode, stats: DatasetStats, user_keys: Collection[str] = (),
    base: Optional[CfgNode] = None,
) -> Recipe:
    """What the recipe sets for a dataset with ``stats``: a pure function of ``cfg``, the
    statistics, the keys the user set (kept) and ``base``, the config before the command
    line's overrides (default ``cfg``), whose ``SOLVER`` gives the batch the learning rate
    is scaled from and the schedule's shape (steps and warm-up as fractions of MAX_ITER)."""
    _check_recipe_config(cfg.RECIPE)
    choose = _Chooser(cfg, user_keys)
    objects = (f"{stats.object_size:.0f} px (square root of the box area)" if stats.object_size
               else "unknown (no boxes)")
    classes = (f", {stats.num_classes} categor{'y' if stats.num_classes == 1 else 'ies'}"
               if stats.num_classes else "")
    choose.say(f"own-data recipe (RECIPE.ENABLED): {stats.num_images} training images, median "
               f"{stats.short_side:.0f} x {stats.long_side:.0f} px, median object {objects}{classes}")
    size, sides, max_train = _choose_sizes(choose, cfg.RECIPE, stats)
    _choose_augmentations(choose, cfg, multi_scale=len(sides) > 1)
    _choose_schedule(choose, cfg.RECIPE, base if base is not None else cfg, stats,
                     pixels=float(np.mean([s * min(s * stats.aspect, max_train) for s in sides])))
    if stats.num_classes:
        count = choose(CLASS_KEY, stats.num_classes)
        choose.say(f"  classes: {count} (MODEL.FCOS.NUM_CLASSES, "
                   + ("yours)" if choose.yours(CLASS_KEY) else "the training set's categories)"))
    _choose_anchors(choose, cfg, stats, size)
    if choose.recipe.kept:
        choose.say("  kept as you set them: " + ", ".join(
            f"{key} {value}" for key, value in choose.recipe.kept.items()))
    if stats.object_size and stats.object_size * size / stats.short_side < 8:
        choose.say(
            f"  warning: the median object is {stats.object_size * size / stats.short_side:.1f} "
            "px at this size, below the finest stride (8 px): raise INPUT.MIN_SIZE_TEST / "
            "MIN_SIZE_TRAIN (or RECIPE.MAX_SIZE), or cut the images into tiles")
    return choose.recipe


def _choose_sizes(choose: _Chooser, r: CfgNode, stats: DatasetStats) -> tuple[int, tuple, int]:
    """Test size, training sizes, long-side caps; returns (size, training sides, MAX_SIZE_TRAIN)."""
    upper = r.MAX_SIZE if r.UPSAMPLE else min(stats.short_side, r.MAX_SIZE)
    wanted = stats.short_side * r.OBJECT_SIZE / stats.object_size if stats.object_size else upper
    size = choose("INPUT.MIN_SIZE_TEST", int(round(min(upper, max(r.MIN_SIZE, wanted)))))
    choose.say(f"  size: short side {size} px (INPUT.MIN_SIZE_TEST): " + (
        "yours" if choose.yours("INPUT.MIN_SIZE_TEST") else _size_reason(stats, r, wanted, upper)))

    sampling = choose("INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice")
    sides = (size,)
    if "multi_scale" in r.AUGMENTATIONS:
        scaled = sorted({int(round(size * scale)) for scale in r.SCALES})
        sides = (scaled[0], scaled[-1]) if sampling == "range" else tuple(scaled)
    sides = tuple(choose("INPUT.MIN_SIZE_TRAIN", sides))
    max_train = choose("INPUT.MAX_SIZE_TRAIN", int(math.ceil(max(sides) * stats.aspect)))
    max_test = choose("INPUT.MAX_SIZE_TEST", int(math.ceil(size * stats.aspect)))
    if choose.yours("INPUT.MIN_SIZE_TRAIN"):
        origin = "yours"
    else:
        origin = "multi_scale: the size x RECIPE.SCALES" if len(sides) > 1 else "the size"
    choose.say(
        f"  training sizes: short side {_sides_text(sides, sampling)} (INPUT.MIN_SIZE_TRAIN, "
        f"{origin}); long side at most {max_train} px in training, {max_test} px in testing "
        f"(INPUT.MAX_SIZE_TRAIN / TEST, median aspect ratio {stats.aspect:.2f})")
    return size, sides, max_train


def _choose_anchors(choose: _Chooser, cfg: CfgNode, stats: DatasetStats, size: int) -> None:
    """``ANCHOR_SCALE`` of every anchor matcher: P3 anchor = ``RECIPE.ANCHOR_TO_OBJECT`` x
    the median object at the test size ``size``, in strides of P3."""
    if stats.object_size is None:
        choose.say("  anchors: the configs' (no boxes to size them from)")
        return
    obj = stats.object_size * size / stats.short_side
    ratio = cfg.RECIPE.ANCHOR_TO_OBJECT
    scale = round(ratio * obj / P3_STRIDE, 2)
    keys = anchor_keys()
    chosen = {name: choose(key, scale) for name, key in keys.items()}
    active = cfg.MODEL.MATCHER.NAME
    what = ", ".join(f"{name} {value:g}" + (" (yours)" if choose.yours(keys[name]) else "")
                     for name, value in chosen.items())
    choose.say(
        f"  anchors: ANCHOR_SCALE {what} (MODEL.MATCHER.<NAME>.ANCHOR_SCALE"
        + (f"; in use: {active}" if active in chosen else f"; {active} has no anchors")
        + f"): the P3 anchor at RECIPE.ANCHOR_TO_OBJECT {ratio:g} x the median object at this "
        f"size ({obj:.0f} px) = {scale * P3_STRIDE:.0f} px, {scale:g} strides; the papers' "
        f"{P3_STRIDE}-stride anchors have that ratio to the median COCO object at 800 px")


def _choose_augmentations(choose: _Chooser, cfg: CfgNode, multi_scale: bool) -> None:
    wanted = cfg.RECIPE.AUGMENTATIONS
    flip = choose("INPUT.RANDOM_FLIP", "horizontal" if "horizontal_flip" in wanted else "none")
    extra = list(choose("INPUT.EXTRA_AUGMENTATIONS",
                        [name for name in ("vertical_flip", "color_jitter") if name in wanted]))
    used = [f"{flip}_flip"] * (flip != "none") + extra + ["multi_scale"] * multi_scale
    jitter = (f"; colour factors in 1 +- {cfg.INPUT.COLOR_JITTER:g}, INPUT.COLOR_JITTER"
              if "color_jitter" in extra else "")
    choose.say(f"  augmentations: {', '.join(used) or 'none'} (RECIPE.AUGMENTATIONS{jitter})")


def _choose_schedule(
    choose: _Chooser, r: CfgNode, base: CfgNode, stats: DatasetStats, pixels: float
) -> None:
    """Batch, lr, iterations (``pixels``: mean training pixels per image), steps, warm-up."""
    config_batch, config_iter = base.SOLVER.IMS_PER_BATCH, max(1, base.SOLVER.MAX_ITER)
    batch = choose("SOLVER.IMS_PER_BATCH", int(r.IMS_PER_BATCH))
    lr = choose("SOLVER.BASE_LR", base.SOLVER.BASE_LR * batch / config_batch)
    epoch_iters = int(math.ceil(r.EPOCHS * stats.num_images / batch))
    budget_iters = max(1, int(r.BUDGET_MEGAPIXELS * 1e6 // (batch * pixels)))
    max_iter = choose("SOLVER.MAX_ITER", min(epoch_iters, budget_iters))
    scaled_steps, scaled_warmup = scaled_schedule(
        base.SOLVER.STEPS, base.SOLVER.WARMUP_ITERS, config_iter, max_iter)
    steps = choose("SOLVER.STEPS", scaled_steps)
    warmup = choose("SOLVER.WARMUP_ITERS", scaled_warmup)
    if choose.yours("SOLVER.MAX_ITER"):
        why = "yours"
    elif epoch_iters <= budget_iters:
        why = f"RECIPE.EPOCHS {r.EPOCHS:g}, within the budget ({budget_iters} iterations)"
    else:
        why = (f"the CPU budget RECIPE.BUDGET_MEGAPIXELS {r.BUDGET_MEGAPIXELS:g} at "
               f"{pixels / 1e6:.3f} megapixels per image; RECIPE.EPOCHS {r.EPOCHS:g} would take "
               f"{epoch_iters}")
    lr_why = ("yours" if choose.yours("SOLVER.BASE_LR")
              else f"{base.SOLVER.BASE_LR:g} x {batch} / {config_batch}, linear scaling")
    choose.say(
        f"  schedule: {max_iter} iterations of {batch} images (SOLVER.MAX_ITER, IMS_PER_BATCH) = "
        f"{max_iter * batch / stats.num_images:.1f} epochs: {why}; lr {lr:g} (SOLVER.BASE_LR: "
        f"{lr_why}), steps {tuple(steps)}, warm-up {warmup} (the config's fractions of MAX_ITER)")


def apply_recipe(
    cfg: CfgNode, user_keys: Collection[str] = (), base: Optional[CfgNode] = None
) -> Recipe:
    """Reads the training datasets (``DATASETS.TRAIN``, registered), chooses the recipe
    (:func:`choose_recipe`) and writes its values into ``cfg`` (not frozen)."""
    dicts, counts = [], set()
    for name in cfg.DATASETS.TRAIN:
        dicts += DatasetCatalog.get(name)
        counts.add(len(MetadataCatalog.get(name).get("thing_classes", ())) or None)
    num_classes = counts.pop() if len(counts) == 1 else None
    recipe = choose_recipe(cfg, dataset_stats(dicts, num_classes), user_keys, base)
    for key, value in recipe.values.items():
        _set(cfg, key, value)
    return recipe


def _size_reason(stats: DatasetStats, r: CfgNode, wanted: float, upper: float) -> str:
    if stats.object_size is None:
        return f"no boxes; the median short side, at most RECIPE.MAX_SIZE {r.MAX_SIZE}"
    keeps = (f"the median object ({stats.object_size:.0f} px) at RECIPE.OBJECT_SIZE "
             f"{r.OBJECT_SIZE} px needs {wanted:.0f} px")
    if wanted > upper:
        bound = ("the images' median short side (RECIPE.UPSAMPLE False)"
                 if upper < r.MAX_SIZE else f"RECIPE.MAX_SIZE {r.MAX_SIZE} (CPU speed)")
        return f"{keeps}; capped at {bound}"
    if wanted < r.MIN_SIZE:
        return f"{keeps}; raised to RECIPE.MIN_SIZE {r.MIN_SIZE}" + (
            " (the images' median short side, smaller)" if upper < r.MIN_SIZE else "")
    if wanted > stats.short_side:
        return f"{keeps}: the images enlarged {wanted / stats.short_side:.2f} x (RECIPE.UPSAMPLE)"
    return keeps


def _sides_text(sides: Sequence[int], sampling: str) -> str:
    if len(sides) == 1:
        return f"{sides[0]} px"
    if sampling == "range":
        return f"drawn from [{sides[0]}, {sides[-1]}] px per image"
    return f"one of {', '.join(map(str, sides))} px per image"


def _check_recipe_config(r: CfgNode) -> None:
    unknown = [name for name in r.AUGMENTATIONS if name not in RECIPE_AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"RECIPE.AUGMENTATIONS: unknown {unknown}; choose from {list(RECIPE_AUGMENTATIONS)}")
    for key in ("OBJECT_SIZE", "MIN_SIZE", "MAX_SIZE", "IMS_PER_BATCH", "EPOCHS", "BUDGET_MEGAPIXELS",
                "ANCHOR_TO_OBJECT"):
        if not r[key] > 0:
            raise ValueError(f"RECIPE.{key} must be positive, got {r[key]}")
    if r.MIN_SIZE > r.MAX_SIZE:
        raise ValueError(f"RECIPE.MIN_SIZE ({r.MIN_SIZE}) is above RECIPE.MAX_SIZE ({r.MAX_SIZE})")
    if not r.SCALES or min(r.SCALES) <= 0:
        raise ValueError(f"RECIPE.SCALES must be positive factors, got {r.SCALES}")


def _get(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _set(cfg: CfgNode, key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value
