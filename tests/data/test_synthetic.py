"""Tests for the deterministic synthetic COCO dataset (lada.data.synthetic)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from lada.data.synthetic import CLASS_NAMES, MIN_VISIBLE, SyntheticSpec, generate, render_sample

SPEC = SyntheticSpec(num_train=20, num_val=5, seed=3)
REPO = Path(__file__).resolve().parents[2]
BAR, PLATE, RING, ELL = (CLASS_NAMES.index(n) + 1 for n in ("bar", "plate", "ring", "ell"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("synthetic"), SPEC)


@pytest.fixture(scope="module")
def samples() -> list[tuple[np.ndarray, list]]:
    """Rendered images with their object masks, enough for per-class statistics."""
    return [render_sample(7, "train", i) for i in range(120)]


def _annotated(samples, category_id: int) -> list:
    return [o for _, objs in samples for o in objs if o.annotated and o.category_id == category_id]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_byte_identical(dataset, tmp_path):
    first = _files(dataset["train"].parents[1])
    generate(tmp_path, SPEC)
    assert len(first) == SPEC.num_train + SPEC.num_val + 2
    assert _files(tmp_path) == first
    other = generate(tmp_path / "other", SyntheticSpec(num_train=1, num_val=1, seed=4))
    assert (other["train_images"] / "000000.png").read_bytes() != first["train/000000.png"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_json_is_valid_coco(dataset, split):
    coco = COCO(str(dataset[split]))
    assert coco.getCatIds() == [1, 2, 3, 4, 5]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    num_images = SPEC.num_train if split == "train" else SPEC.num_val
    assert sorted(coco.getImgIds()) == list(range(1, num_images + 1))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= num_images and sorted(a["id"] for a in anns) == list(range(1, len(anns) + 1))
    for ann in anns:
        image = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        assert min(w, h) >= 4
        assert ann["area"] == pytest.approx(w * h)
        assert ann["iscrowd"] == 0 and ann["category_id"] in coco.cats
    for image in coco.dataset["images"]:
        with Image.open(dataset[f"{split}_images"] / image["file_name"]) as im:
            assert im.mode == "RGB" and im.size == (image["width"], image["height"]) == (128, 128)


def test_files_match_render_sample(dataset):
    """render_sample (used by the statistics tests) is exactly what generate writes."""
    data = json.loads(dataset["train"].read_text())
    for image in data["images"]:
        pixels, objects = render_sample(SPEC.seed, "train", image["id"] - 1)
        with Image.open(dataset["train_images"] / image["file_name"]) as im:
            np.testing.assert_array_equal(np.asarray(im), pixels)
        written = [(a["category_id"], a["bbox"]) for a in data["annotations"] if a["image_id"] == image["id"]]
        assert written == [(o.category_id, o.bbox) for o in objects if o.annotated]


def test_bars_are_slender_and_rings_are_not(dataset):
    anns = json.loads(dataset["train"].read_text())["annotations"]

    def elongation(category_id: int) -> np.ndarray:
        boxes = np.array([a["bbox"] for a in anns if a["category_id"] == category_id])
        assert len(boxes) >= 5
        return np.maximum(boxes[:, 2] / boxes[:, 3], boxes[:, 3] / boxes[:, 2])

    assert np.mean(elongation(BAR) > 3) >= 0.9
    assert np.mean(elongation(RING) < 1.5) >= 0.9


def test_box_centre_is_background_for_rings_and_ells(samples):
    def centre_on_object(category_id: int) -> float:
        objs = _annotated(samples, category_id)
        assert len(objs) >= 20
        hits = [o.mask[int(o.bbox[1] + o.bbox[3] / 2), int(o.bbox[0] + o.bbox[2] / 2)] for o in objs]
        return float(np.mean(hits))

    assert centre_on_object(RING) <= 0.1
    assert centre_on_object(ELL) <= 0.25
    assert centre_on_object(BAR) >= 0.9 and centre_on_object(PLATE) >= 0.9  # control: solid shapes


def test_occlusion_rule_and_visibility(samples):
    partially_hidden_kept = dropped = 0
    for _, objects in samples:
        for i, obj in enumerate(objects):
            covered = np.zeros_like(obj.mask)
            for later in objects[i + 1:]:
                covered |= later.mask
            visible = (obj.mask & ~covered).sum() / obj.mask.sum()
            assert obj.visible == pytest.approx(visible)
            x, y, w, h = obj.bbox
            assert obj.annotated == (visible >= MIN_VISIBLE and min(w, h) >= 4)
            assert obj.mask[int(y), :].any() and obj.mask[int(y + h - 1), :].any()  # box is tight
            partially_hidden_kept += obj.annotated and visible < 0.9
            dropped += visible < MIN_VISIBLE
    assert partially_hidden_kept >= 5 and dropped >= 2


def test_objects_are_flat_coloured_and_contrast_with_surroundings(samples):
    distances = []
    for pixels, objects in samples:
        if not objects:
            continue
        top = objects[-1]  # painted last, hence fully visible
        inside = pixels[top.mask].astype(float)
        assert inside.std(axis=0).max() < 8  # flat colour plus mild noise
        ring = np.zeros_like(top.mask)
        ring[1:-1, 1:-1] = top.mask[:-2, 1:-1] | top.mask[2:, 1:-1] | top.mask[1:-1, :-2] | top.mask[1:-1, 2:]
        ring &= ~top.mask
        if ring.any():
            distances.append(np.linalg.norm(inside.mean(0) - pixels[ring].astype(float).mean(0)))
    assert np.median(distances) >= 80


def test_some_images_are_empty_and_classes_are_balanced():
    counts = np.zeros(len(CLASS_NAMES))
    empty = 0
    for i in range(300):
        _, objects = render_sample(11, "val", i, image_size=64, max_objects=3)
        kept = [o.category_id for o in objects if o.annotated]
        empty += not kept
        np.add.at(counts, np.array(kept, dtype=int) - 1, 1)
    assert 1 <= empty <= 30
    assert counts.min() >= 0.5 * counts.mean()


def test_generate_is_idempotent(tmp_path):
    spec = SyntheticSpec(num_train=4, num_val=2, seed=1)
    paths = generate(tmp_path, spec)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in files:
        os.utime(path, ns=(10**18, 10**18))
    assert generate(tmp_path, spec) == paths
    assert all(p.stat().st_mtime_ns == 10**18 for p in files)
    (paths["val_images"] / "000001.png").unlink()  # incomplete split: regenerated, the other kept
    generate(tmp_path, spec)
    assert paths["val"].stat().st_mtime_ns != 10**18 and paths["train"].stat().st_mtime_ns == 10**18
    generate(tmp_path, SyntheticSpec(num_train=4, num_val=2, seed=2))  # new spec: regenerated
    assert paths["train"].stat().st_mtime_ns != 10**18


def test_a_larger_validation_split_keeps_every_earlier_image_and_box(tmp_path):
    """What lets a study re-evaluate models trained before the validation split grew."""
    small = generate(tmp_path / "small", SyntheticSpec(num_train=3, num_val=2, seed=6))
    large = generate(tmp_path / "large", SyntheticSpec(num_train=3, num_val=5, seed=6))
    assert _files(small["train_images"]) == _files(large["train_images"])
    small_val, large_val = _files(small["val_images"]), _files(large["val_images"])
    assert len(large_val) == 5 and {k: large_val[k] for k in small_val} == small_val

    def content(path, num_images):
        data = json.loads(path.read_text())
        return data["images"][:num_images], [a for a in data["annotations"] if a["image_id"] <= num_images]

    assert content(small["train"], 3) == content(large["train"], 3)
    assert content(small["val"], 2) == content(large["val"], 2)


def test_cli_matches_library(tmp_path):
    argv = ["--root", str(tmp_path / "cli"), "--num-train", "3", "--num-val", "2", "--seed", "5"]
    result = subprocess.run([sys.executable, "datasets/make_synthetic.py", *argv],
                            cwd=REPO, capture_output=True, text=True, check=True)
    assert "train     3 images" in result.stdout and "val       2 images" in result.stdout
    generate(tmp_path / "lib", SyntheticSpec(num_train=3, num_val=2, seed=5))
    assert _files(tmp_path / "cli") == _files(tmp_path / "lib")
