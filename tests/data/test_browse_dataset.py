"""tools/browse_dataset.py: a dataset's images drawn with their GT boxes and class names, as
annotated (boxes where the json puts them) and after the training augmentation (the
own-data recipe's sizes)."""
import importlib.util

import numpy as np
import pytest
from coco_files import write_coco
from conftest import REPO
from PIL import Image

# 160 px images, 20-px objects: the recipe's size is min(160 x 32 / 20, 160) = 160 px
BOXES = [(1, [20, 30, 40, 20]), (2, [100, 90, 20, 30])]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool(monkeypatch):
    """The tool, with the labels of every Visualizer.overlay_instances call recorded."""
    module = load_tool("browse_dataset")
    module.labels_drawn = []
    original = module.Visualizer.overlay_instances

    def overlay_instances(self, *args, **kwargs):
        module.labels_drawn.append(list(kwargs.get("labels") or []))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(module.Visualizer, "overlay_instances", overlay_instances)
    return module


def test_images_as_annotated_show_the_json_boxes(tmp_path, tool):
    json_file, images = write_coco(tmp_path / "data", [BOXES] * 3, size=160,
                                   categories=("pine", "oak"))
    for path in images.iterdir():  # flat grey: what is drawn stands out
        Image.new("RGB", (160, 160), (128, 128, 128)).save(path)
    name = f"browse_{tmp_path.name}"
    done = tool.browse(["--dataset", name, str(json_file), str(images), "--num", "2",
                        "--output", str(tmp_path / "out")])
    assert done == {"dataset": name, "images": 2, "boxes": 4, "sizes": []}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png"]
    assert tool.labels_drawn == [["pine", "oak"], ["pine", "oak"]]

    drawn = np.asarray(Image.open(tmp_path / "out/img0.png").convert("RGB")).astype(int)
    assert drawn.shape == (160, 160, 3)
    changed = np.abs(drawn - 128).sum(axis=2) > 30
    # the first box's edges (x 20-60, y 30-50): its left side at x = 20, rows 40-48 (below
    # the label), is drawn; a region far from both boxes, (130-155, 5-25), is not
    assert changed[40:48, 19:22].any(axis=1).all()
    assert not changed[5:25, 130:155].any()


def test_images_after_the_training_augmentation_at_the_recipes_sizes(tmp_path, tool):
    json_file, images = write_coco(tmp_path / "data", [BOXES] * 4, size=160)
    name = f"browse_aug_{tmp_path.name}"
    done = tool.browse(["--dataset", name, str(json_file), str(images), "--augment",
                        "--output", str(tmp_path / "out")])
    # own_data.yaml's recipe: the median object, sqrt of 20 x 30 and 40 x 20 px (24.5 and
    # 28.3; median 26.4), at 32 px needs the 160-px images enlarged to 194 px; training
    # short sides 194 x (0.8, 0.9, 1.0, 1.1, 1.2), rounded; square images
    recipe_sides = {155, 175, 194, 213, 233}
    assert done["images"] == 4 and done["boxes"] == 8
    assert done["sizes"] and all(h == w and h in recipe_sides for h, w in done["sizes"])
    for index in range(4):
        with Image.open(tmp_path / "out" / f"img{index}.png") as drawing:
            assert drawing.size[0] in recipe_sides
    assert tool.labels_drawn == [["a", "b"]] * 4


def test_an_unregistered_name_is_refused(tmp_path, tool):
    with pytest.raises(SystemExit, match="dataset 'nowhere' is not registered"):
        tool.browse(["--config-file", str(REPO / "configs/quick/lada.yaml"), "--name", "nowhere",
                     "--output", str(tmp_path / "out")])
