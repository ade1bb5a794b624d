"""Deterministic synthetic COCO-format detection dataset for label-assignment experiments.

Label-assignment strategies (centre sampling, ATSS, PAA, DW, ...) differ mostly on objects
where "the box centre" or "a fixed IoU threshold" are poor proxies for "a good location to
predict from". This generator produces small images that concentrate exactly those cases:

* extreme aspect ratios: slender bars / poles (1:6 to 1:12) and wide plates (2:1 to 4:1);
* eccentric objects whose box centre is background: rings, L shapes ("ell") and arcs;
* partial occlusion: later objects are painted over earlier ones; an occluded object keeps its
  full (amodal) box only while >= 50 % of its in-image pixels stay visible, else it is dropped;
* sizes from about 10 to 90 px on a 128 px image, 0-6 objects per image (~2 % empty images);
* textured backgrounds (smooth noise, gradients, stripes) in random colours.

Each class has a typical hue, but hues overlap and 25 % of objects get a random hue, so colour
alone does not separate the classes; every object contrasts clearly with what lies beneath it.

Images are drawn with numpy masks on a pixel-centre grid and saved as PNG with Pillow. Every
image uses its own ``numpy.random.default_rng((seed, split, index))`` stream, so a given spec
always yields byte-identical files. Annotation ``area`` is the box area (not the mask area).
"""
from __future__ import annotations

import colorsys
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..progress import progress_bar

CLASS_NAMES: tuple[str, ...] = ("bar", "plate", "ring", "ell", "stroke")
#: Typical hue per class (HSV hue in [0, 1)); red/yellow and blue/purple overlap on purpose.
CLASS_HUES: tuple[float, ...] = (0.0, 0.58, 0.33, 0.14, 0.78)
SPLITS: tuple[str, ...] = ("train", "val")
#: Where ``datasets/make_synthetic.py`` (``make data``) writes the embedded dataset, relative
#: to the repository root, and where the quick configs read it (relative to the working folder).
EMBEDDED_ROOT = Path("datasets") / "synthetic"
#: How to make it, for the messages that find it missing.
MAKE_EMBEDDED = "`make data` (or `python datasets/make_synthetic.py`) from the repository root"
MIN_BOX_SIDE = 4  # px; smaller (clipped) boxes are not annotated
MIN_VISIBLE = 0.5  # fraction of an object's in-image pixels that must stay unoccluded
EMPTY_IMAGE_PROB = 0.02
FORMAT_VERSION = 1  # bump whenever rendering changes, so cached datasets are regenerated

Mask = np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a synthetic dataset; its fingerprint decides whether to regenerate."""

    num_train: int = 1500
    num_val: int = 1000  # per-image streams: the first n images do not depend on num_val
    image_size: int = 128  # square images; object sizes scale with image_size / 128
    max_objects: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_train, self.num_val, self.seed) < 0:
            raise ValueError(f"num_train, num_val and seed must be >= 0: {self}")
        if self.image_size < 32 or self.max_objects < 1:
            raise ValueError(f"need image_size >= 32 and max_objects >= 1: {self}")


@dataclass(frozen=True)
class SyntheticObject:
    """One painted object: its full (pre-occlusion) mask clipped to the image, and how much shows."""

    category_id: int  # 1-based index into CLASS_NAMES
    mask: Mask
    visible: float  # fraction of mask pixels not covered by objects painted later

    @property
    def bbox(self) -> list[float]:
        """Tight COCO box [x, y, w, h] of the full mask, in pixels."""
        ys, xs = np.nonzero(self.mask)
        x0, y0 = int(xs.min()), int(ys.min())
        return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]

    @property
    def annotated(self) -> bool:
        """Whether the object gets an annotation (mostly visible and box not too small)."""
        _, _, w, h = self.bbox
        return self.visible >= MIN_VISIBLE and min(w, h) >= MIN_BOX_SIDE


# ---------------------------------------------------------------- shapes
# Each shape function receives pixel-centre offsets (dx, dy) from a random object centre and the
# image scale factor (image_size / 128), draws its own random parameters and returns a mask.


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _rotate(dx: np.ndarray, dy: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by ``angle`` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, c * dy - s * dx


def _bar(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, scale: float) -> Mask:
    """Slender vertical or horizontal bar / pole, 1:6 to 1:12, tilted by at most ~2 degrees."""
    length = _loguniform(rng, 24, 90) * scale
    width = max(4.0, length / rng.uniform(6, 12))  # >= 4 px so the box survives MIN_BOX_SIDE
    angle = rng.uniform(-0.04, 0.04) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    u, v = _rotate(dx, dy, angle)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def _plate(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, scale: float) -> Mask:
    """Wide flat rectangle or ellipse, 2:1 to 4:1, tilted by at most ~10 degrees."""
    half_w = _loguniform(rng, 20, 90) * scale / 2
    half_h = max(2.0, half_w / rng.uniform(2, 4))
    u, v = _rotate(dx, dy, rng.uniform(-0.17, 0.17))
    if rng.random() < 0.5:
        return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
    return (u / half_w) ** 2 + (v / half_h) ** 2 <= 1.0


def _ring(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, scale: float) -> Mask:
    """Annulus; the hole always covers the box centre."""
    outer = _loguniform(rng, 6, 42) * scale
    inner = outer - max(2.0, outer * rng.uniform(0.2, 0.45))
    r = np.hypot(dx, dy)
    return (r <= outer) & (r >= inner)


def _ell(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, scale: float) -> Mask:
    """L shape: union of two arms of thickness <= 30 % of the shorter side, any of 4 flips."""
    w, h = _loguniform(rng, 16, 80) * scale, _loguniform(rng, 16, 80) * scale
    t = max(3.0, min(w, h) * rng.uniform(0.15, 0.3))
    flip_x, flip_y = rng.choice([-1.0, 1.0], size=2)
    u, v = _rotate(dx, dy, rng.uniform(-0.2, 0.2))
    u, v = flip_x * u + w / 2, flip_y * v + h / 2  # corner of the L at (u, v) = (0, 0)
    return (u >= 0) & (u <= w) & (v >= 0) & (v <= h) & ((u <= t) | (v <= t))


def _stroke(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, scale: float) -> Mask:
    """Thick diagonal line segment (26-63 degrees) or thick circular arc (90-200 degrees)."""
    half_width = max(1.5, rng.uniform(1.5, 3.5) * scale)
    if rng.random() < 0.5:
        half_len = _loguniform(rng, 20, 90) * scale / 2
        u, v = _rotate(dx, dy, rng.uniform(0.45, 1.1) * rng.choice([-1.0, 1.0]))
        return np.hypot(np.maximum(np.abs(u) - half_len, 0.0), v) <= half_width  # segment distance
    radius = _loguniform(rng, 12, 40) * scale
    extent = rng.uniform(0.5, 1.1) * np.pi
    theta = np.mod(np.arctan2(dy, dx) - rng.uniform(0, 2 * np.pi), 2 * np.pi)
    return (np.abs(np.hypot(dx, dy) - radius) <= half_width) & (theta <= extent)


_SHAPES: tuple[Callable[..., Mask], ...] = (_bar, _plate, _ring, _ell, _stroke)

# ---------------------------------------------------------------- colours and backgrounds


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, scale: float) -> np.ndarray:
    """Blend of two similar random colours along a smooth-noise, gradient or stripe pattern."""
    base = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.9))
    other = np.clip(base + rng.uniform(-50, 50, size=3), 0, 255)
    kind, angle = rng.integers(3), rng.uniform(0, 2 * np.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    if kind == 0:  # smooth value noise: a coarse random grid upsampled bicubically
        cells = int(rng.integers(3, 9))
        coarse = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
        t = np.asarray(coarse.resize(xx.shape[::-1], Image.BICUBIC)).clip(0, 1)
    elif kind == 1:  # linear gradient
        t = (along - along.min()) / np.ptp(along)
    else:  # sinusoidal stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * along / (rng.uniform(6, 24) * scale) + rng.uniform(0, 2 * np.pi))
    return base + (other - base) * t[..., None]


def _object_colour(rng: np.random.Generator, cls: int, beneath: np.ndarray) -> np.ndarray:
    """Class-typical colour (75 % near the class hue, else any hue) contrasting with ``beneath``."""
    for _ in range(8):
        hue = CLASS_HUES[cls] + rng.normal(0, 0.07) if rng.random() < 0.75 else rng.random()
        colour = _hsv(hue, rng.uniform(0.45, 1.0), rng.uniform(0.5, 1.0))
        if np.linalg.norm(colour - beneath) >= 100:
            return colour
    return 255.0 - beneath  # rare fallback: the complement always contrasts


# ---------------------------------------------------------------- rendering


def render_sample(
    seed: int, split: str, index: int, image_size: int = 128, max_objects: int = 6
) -> tuple[np.ndarray, list[SyntheticObject]]:
    """Render one image (H, W, 3 uint8) and every object painted on it, in painting order.

    Pure function of its arguments; ``generate`` writes exactly this image and annotates the
    objects whose ``annotated`` is true. Exposed so tests and analyses can inspect masks.
    """
    rng = np.random.default_rng((seed, SPLITS.index(split), index))
    scale = image_size / 128
    yy, xx = np.indices((image_size, image_size), dtype=np.float64) + 0.5
    canvas = _background(rng, xx, yy, scale)
    n = 0 if rng.random() < EMPTY_IMAGE_PROB else int(rng.integers(1, max_objects + 1))
    painted: list[tuple[int, Mask]] = []
    for _ in range(n):
        cls = int(rng.integers(len(CLASS_NAMES)))
        cx, cy = rng.uniform(0.05, 0.95, size=2) * image_size
        mask = _SHAPES[cls](rng, xx - cx, yy - cy, scale)
        if mask.any():  # objects may leave the image partly (or, rarely for arcs, entirely)
            canvas[mask] = _object_colour(rng, cls, canvas[mask].mean(axis=0))
            painted.append((cls, mask))
    canvas += rng.normal(0, 3, size=canvas.shape)  # mild sensor noise
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    objects: list[SyntheticObject] = []
    covered = np.zeros((image_size, image_size), dtype=bool)
    for cls, mask in reversed(painted):  # later objects occlude earlier ones
        objects.append(SyntheticObject(cls + 1, mask, float((mask & ~covered).sum() / mask.sum())))
        covered |= mask
    return image, objects[::-1]


# ---------------------------------------------------------------- dataset files


def fingerprint(spec: SyntheticSpec) -> str:
    """Hash of the spec and the rendering version, stored in each json's "info"."""
    payload = json.dumps({"spec": asdict(spec), "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_current(json_path: Path, image_dir: Path, expected: str) -> bool:
    """True if the json exists, carries the expected fingerprint and all its images exist."""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False
    return data.get("info", {}).get("fingerprint") == expected and all(
        (image_dir / im["file_name"]).is_file() for im in data["images"]
    )


def _write_split(split: str, count: int, spec: SyntheticSpec, image_dir: Path, json_path: Path) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in progress_bar(range(count), desc=f"synthetic {split}", unit="image"):
        pixels, objects = render_sample(spec.seed, split, index, spec.image_size, spec.max_objects)
        file_name = f"{index:06d}.png"
        Image.fromarray(pixels).save(image_dir / file_name)
        size = spec.image_size
        images.append({"id": index + 1, "file_name": file_name, "height": size, "width": size})
        for obj in filter(lambda o: o.annotated, objects):
            box = obj.bbox
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": obj.category_id,
                "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
            })
    data = {
        "info": {"description": f"lada-det synthetic dataset ({split})", "version": str(FORMAT_VERSION),
                 "fingerprint": fingerprint(spec), "spec": asdict(spec), "area": "bbox area"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, json_path)  # the json appears last and atomically: it marks a complete split


def generate(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> dict[str, Path]:
    """Write root/{train,val}/*.png and root/annotations/{train,val}.json for ``spec``.

    Returns {"train": json, "val": json, "train_images": dir, "val_images": dir}. Idempotent: a
    split whose json carries the spec's fingerprint (and whose images exist) is not rewritten.
    Images left over from an earlier, larger spec are not deleted (they are not referenced).
    """
    root = Path(root)
    paths: dict[str, Path] = {}
    for split, count in zip(SPLITS, (spec.num_train, spec.num_val)):
        paths[split] = root / "annotations" / f"{split}.json"
        paths[f"{split}_images"] = root / split
        if not _is_current(paths[split], paths[f"{split}_images"], fingerprint(spec)):
            _write_split(split, count, spec, paths[f"{split}_images"], paths[split])
    return paths
