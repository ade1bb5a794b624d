"""The own-data recipe on a hand-made COCO dataset of 320 px images: the size,
augmentations and schedule it picks (expected values computed by hand from the rules of
the README, "Train on your own data"), the keys the user set kept, and the extra
augmentations it selects."""
import numpy as np
import pytest
import yaml
from coco_files import write_coco
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from lada.config import add_lada_config
from lada.data import ReadCheckedDatasetMapper, register_coco_dataset
from lada.data.augmentations import build_extra_augmentations
from lada.data.recipe import (COCO_ANCHOR_TO_OBJECT, anchor_keys, apply_recipe, choose_recipe,
                              dataset_stats, recipe_keys)
from lada.engine.setup import user_set_keys

OWN_DATA = REPO / "configs/quick/own_data.yaml"

# 10 images of 320 x 320 px; box sides 30 x 30, 40 x 40 or 50 x 50 -> sqrt(area) 30, 40
# or 50; counts 5, 7 and 5 boxes: the median (9th of 17) is 40 px.
IMAGES = (
    [[(1, [10, 10, 30, 30]), (2, [100, 100, 40, 40])]] * 5
    + [[(2, [50, 60, 40, 40]), (1, [200, 200, 50, 50])]] * 2
    + [[(1, [20, 250, 50, 50])]] * 3
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe320")
    json_file, image_dir = write_coco(root, IMAGES, size=320)
    register_coco_dataset("recipe320_train", json_file, image_dir)
    return json_file, image_dir


def own_data_cfg(*opts):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(OWN_DATA))
    base = cfg.clone()
    cfg.merge_from_list(["DATASETS.TRAIN", "('recipe320_train',)", *opts])
    return cfg, base


def test_own_data_config_leaves_every_recipe_key_to_the_recipe():
    assert user_set_keys(str(OWN_DATA), []) & set(recipe_keys()) == set()


def test_recipe_on_320px_images(dataset):
    cfg, base = own_data_cfg()
    recipe = apply_recipe(cfg, set(), base)
    # Size: the median object (40 px) at RECIPE.OBJECT_SIZE 32 px: 320 * 32 / 40 = 256,
    # within [RECIPE.MIN_SIZE 128, min(320, RECIPE.MAX_SIZE 512)].
    assert cfg.INPUT.MIN_SIZE_TEST == 256
    # multi_scale: 256 x (0.8, 0.9, 1.0, 1.1, 1.2) = 204.8, 230.4, 256, 281.6, 307.2, rounded;
    # square images: long side = short side.
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (205, 230, 256, 282, 307)
    assert cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "choice"
    assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TEST) == (307, 256)
    # Augmentations: all four of RECIPE.AUGMENTATIONS' default.
    assert cfg.INPUT.RANDOM_FLIP == "horizontal"
    assert list(cfg.INPUT.EXTRA_AUGMENTATIONS) == ["vertical_flip", "color_jitter"]
    # Schedule: batch 8, lr 0.02 x 8 / 16 = 0.01; RECIPE.EPOCHS 100 x 10 images / 8 = 125
    # iterations; the budget, 184e6 px / (8 x mean(205², 230², 256², 282², 307²) = 8 x
    # 66846.8 px) = 344 iterations, is not reached. Steps and warm-up at the quick config's
    # fractions: 550 / 700, 650 / 700, 100 / 700 of 125 = 98.2, 116.1, 17.9.
    assert cfg.SOLVER.IMS_PER_BATCH == 8
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.01)
    assert cfg.SOLVER.MAX_ITER == 125
    assert tuple(cfg.SOLVER.STEPS) == (98, 116)
    assert cfg.SOLVER.WARMUP_ITERS == 18
    assert cfg.MODEL.FCOS.NUM_CLASSES == 2
    text = "\n".join(recipe.lines)
    assert "10 training images, median 320 x 320 px, median object 40 px" in text
    assert "short side 256 px" in text and "one of 205, 230, 256, 282, 307" in text
    assert "horizontal_flip, vertical_flip, color_jitter, multi_scale" in text
    assert "125 iterations of 8 images" in text and "RECIPE.EPOCHS 100" in text
    assert recipe.kept == {}


def test_budget_bounds_the_iterations(dataset):
    cfg, base = own_data_cfg("RECIPE.BUDGET_MEGAPIXELS", "10.0")
    recipe = apply_recipe(cfg, set(), base)
    # 10e6 / (8 x 66846.8) = 18.7 -> 18 iterations (the 125 of 100 epochs are too many).
    assert cfg.SOLVER.MAX_ITER == 18
    # 550, 650, 100 x 18 / 700 = 14.1, 16.7, 2.6
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((14, 17), 3)
    assert "CPU budget RECIPE.BUDGET_MEGAPIXELS 10" in "\n".join(recipe.lines)


def test_selected_augmentations_only(dataset):
    cfg, base = own_data_cfg("RECIPE.AUGMENTATIONS", "['vertical_flip']")
    apply_recipe(cfg, set(), base)
    assert cfg.INPUT.RANDOM_FLIP == "none"
    assert list(cfg.INPUT.EXTRA_AUGMENTATIONS) == ["vertical_flip"]
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (256,)  # no multi_scale
    # 100 epochs: 125 iterations; one size 256 x 256.
    assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.SOLVER.MAX_ITER) == (256, 125)


def test_size_caps(dataset):
    cfg, base = own_data_cfg("RECIPE.MAX_SIZE", "200")  # below the 256 the objects need
    apply_recipe(cfg, set(), base)
    assert cfg.INPUT.MIN_SIZE_TEST == 200
    cfg, base = own_data_cfg("RECIPE.OBJECT_SIZE", "64")  # 320 x 64 / 40 = 512 > 320
    recipe = apply_recipe(cfg, set(), base)
    assert cfg.INPUT.MIN_SIZE_TEST == 512  # the images enlarged 1.6 x, up to MAX_SIZE 512
    assert "needs 512 px: the images enlarged 1.60 x (RECIPE.UPSAMPLE)" in "\n".join(recipe.lines)
    cfg, base = own_data_cfg("RECIPE.OBJECT_SIZE", "80")  # 320 x 80 / 40 = 640 > 512
    recipe = apply_recipe(cfg, set(), base)
    assert cfg.INPUT.MIN_SIZE_TEST == 512
    assert "capped at RECIPE.MAX_SIZE 512 (CPU speed)" in "\n".join(recipe.lines)
    cfg, base = own_data_cfg("RECIPE.OBJECT_SIZE", "64", "RECIPE.UPSAMPLE", "False")
    recipe = apply_recipe(cfg, set(), base)
    assert cfg.INPUT.MIN_SIZE_TEST == 320  # never above the images' median short side
    assert "capped at the images' median short side (RECIPE.UPSAMPLE False)" in "\n".join(
        recipe.lines)
    cfg, base = own_data_cfg("RECIPE.OBJECT_SIZE", "8")  # 320 x 8 / 40 = 64 < 128
    apply_recipe(cfg, set(), base)
    assert cfg.INPUT.MIN_SIZE_TEST == 128


def test_command_line_keys_win(dataset):
    opts = ["INPUT.MIN_SIZE_TEST", "192", "SOLVER.MAX_ITER", "50", "SOLVER.BASE_LR", "0.003",
            "MODEL.FCOS.NUM_CLASSES", "5"]
    cfg, base = own_data_cfg(*opts)
    user = user_set_keys(str(OWN_DATA), opts)
    assert user & set(recipe_keys()) == {"INPUT.MIN_SIZE_TEST", "SOLVER.MAX_ITER",
                                       "SOLVER.BASE_LR", "MODEL.FCOS.NUM_CLASSES"}
    recipe = apply_recipe(cfg, user, base)
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.SOLVER.MAX_ITER, cfg.SOLVER.BASE_LR) == (192, 50, 0.003)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 5
    # The rest follows them: 192 x (0.8 ... 1.2) = 153.6, 172.8, 192, 211.2, 230.4; steps
    # and warm-up at 550, 650, 100 / 700 of 50 = 39.3, 46.4, 7.1.
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (154, 173, 192, 211, 230)
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == ((39, 46), 7)
    assert recipe.kept == {"INPUT.MIN_SIZE_TEST": 192, "SOLVER.MAX_ITER": 50,
                           "SOLVER.BASE_LR": 0.003, "MODEL.FCOS.NUM_CLASSES": 5}
    assert "kept as you set them: INPUT.MIN_SIZE_TEST 192" in "\n".join(recipe.lines)


def test_batch_from_the_command_line_scales_the_lr(dataset):
    opts = ["SOLVER.IMS_PER_BATCH", "4"]
    cfg, base = own_data_cfg(*opts)
    apply_recipe(cfg, user_set_keys(str(OWN_DATA), opts), base)
    # lr 0.02 x 4 / 16; 100 epochs x 10 images / 4 = 250 iterations
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (pytest.approx(0.005), 250)


def test_keys_of_your_own_config_file_win(dataset, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({
        "_BASE_": str(OWN_DATA), "INPUT": {"MIN_SIZE_TRAIN": [288], "RANDOM_FLIP": "vertical"},
    }))
    user = user_set_keys(str(mine), [])
    assert user & set(recipe_keys()) == {"INPUT.MIN_SIZE_TRAIN", "INPUT.RANDOM_FLIP"}
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(mine))
    cfg.DATASETS.TRAIN = ("recipe320_train",)
    apply_recipe(cfg, user, cfg.clone())
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (288,) and cfg.INPUT.RANDOM_FLIP == "vertical"
    # the long side follows your size: 288 x aspect 1
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TRAIN) == (256, 288)


def test_bad_recipe_keys_are_named(dataset):
    cfg, base = own_data_cfg("RECIPE.AUGMENTATIONS", "['rotate']")
    with pytest.raises(ValueError, match=r"RECIPE.AUGMENTATIONS: unknown \['rotate'\]"):
        apply_recipe(cfg, set(), base)
    cfg, base = own_data_cfg("RECIPE.BUDGET_MEGAPIXELS", "0.0")
    with pytest.raises(ValueError, match="RECIPE.BUDGET_MEGAPIXELS must be positive"):
        apply_recipe(cfg, set(), base)


def test_extra_augmentations_are_detectron2_transforms():
    cfg = add_lada_config(get_cfg())
    cfg.INPUT.EXTRA_AUGMENTATIONS = ["color_jitter", "vertical_flip"]
    cfg.INPUT.COLOR_JITTER = 0.1
    vflip, brightness, contrast, saturation = build_extra_augmentations(cfg)
    assert isinstance(vflip, T.RandomFlip) and (vflip.vertical, vflip.horizontal, vflip.prob) == (True, False, 0.5)
    for aug, kind in ((brightness, T.RandomBrightness), (contrast, T.RandomContrast),
                      (saturation, T.RandomSaturation)):
        assert isinstance(aug, kind)
        assert (aug.intensity_min, aug.intensity_max) == pytest.approx((0.9, 1.1))
    cfg.INPUT.EXTRA_AUGMENTATIONS = ["mosaic"]
    with pytest.raises(ValueError, match=r"INPUT.EXTRA_AUGMENTATIONS: unknown \['mosaic'\]"):
        build_extra_augmentations(cfg)


def test_mapper_adds_them_in_training_only():
    cfg = add_lada_config(get_cfg())
    cfg.INPUT.EXTRA_AUGMENTATIONS = ["vertical_flip"]
    train = ReadCheckedDatasetMapper(cfg, True, dataset_names=())
    test = ReadCheckedDatasetMapper(cfg, False, dataset_names=())
    train_kinds = [type(a) for a in train.augmentations.augs]
    assert train_kinds == [T.ResizeShortestEdge, T.RandomFlip, T.RandomFlip]
    assert [type(a) for a in test.augmentations.augs] == [T.ResizeShortestEdge]


def test_vertical_flip_moves_the_boxes():
    """With p = 0.5 a seeded draw flips some images: every flipped box is the reflection
    y -> H - y of the original (H = 64), the others unchanged."""
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_list(["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
                         "INPUT.RANDOM_FLIP", "none", "INPUT.EXTRA_AUGMENTATIONS", "['vertical_flip']"])
    image = np.zeros((64, 64, 3), np.uint8)
    seen = set()
    np.random.seed(0)
    for _ in range(20):
        inputs = T.AugInput(image, boxes=np.array([[10.0, 5.0, 30.0, 20.0]]))
        T.AugmentationList(ReadCheckedDatasetMapper(cfg, True).augmentations.augs)(inputs)
        box = tuple(inputs.boxes[0])
        assert box in {(10.0, 5.0, 30.0, 20.0), (10.0, 44.0, 30.0, 59.0)}
        seen.add(box)
    assert len(seen) == 2


def test_registered_320px_dataset_is_intact(dataset):
    """The fixture's dataset as the recipe read it (guards the hand computations above)."""
    dicts = DatasetCatalog.get("recipe320_train")
    assert len(dicts) == 10 and {(d["height"], d["width"]) for d in dicts} == {(320, 320)}
    assert MetadataCatalog.get("recipe320_train").thing_classes == ["a", "b"]


def _square_boxes(side: float, image: int = 128, count: int = 3) -> list:
    """Detectron2 dataset dicts: ``count`` images of ``image`` x ``image`` px, each with
    one ``side`` x ``side`` box (XYWH_ABS)."""
    return [{"height": image, "width": image, "annotations": [
        {"bbox": [4.0, 4.0, side, side], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}]}
        for _ in range(count)]


@pytest.mark.parametrize("side, upsample, size, scale", [
    # 128-px images, RECIPE.OBJECT_SIZE 32, MIN_SIZE 128: 16-px objects need 256 px (the
    # images enlarged 2 x; without RECIPE.UPSAMPLE 128), 32-px ones 128, 64-px ones 64
    # (raised to 128); so the objects are 32 (16 without upsampling), 32, 64 px and the P3
    # anchor 0.9 x that: 28.8 (14.4), 28.8, 57.6 px = 3.6 (1.8), 3.6, 7.2 strides of 8 px.
    (16, True, 256, 3.6), (16, False, 128, 1.8), (32, True, 128, 3.6), (64, True, 128, 7.2),
])
def test_anchor_scale_from_the_objects(side, upsample, size, scale):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(OWN_DATA))
    cfg.RECIPE.UPSAMPLE = upsample
    recipe = choose_recipe(cfg, dataset_stats(_square_boxes(side), num_classes=1))
    assert recipe.values["INPUT.MIN_SIZE_TEST"] == size
    assert {key: recipe.values[key] for key in anchor_keys().values()} == {
        f"MODEL.MATCHER.{name}.ANCHOR_SCALE": pytest.approx(scale)
        for name in ("ATSS", "CIOU_ATSS", "PAA", "LADA", "TAL")}  # tal: its ATSS warm-up
    assert (f"ANCHOR_SCALE atss {scale:g}, ciou_atss {scale:g}, lada {scale:g}, paa {scale:g}, "
            f"tal {scale:g}") in "\n".join(recipe.lines)


def test_anchor_scale_after_resizing(dataset):
    # 320-px images, median object 40 px: size 256, where the object is 32 px; anchor
    # 0.9 x 32 = 28.8 px = 3.6 strides. A ratio of 0.5: 16 px = 2 strides.
    cfg, base = own_data_cfg()
    recipe = apply_recipe(cfg, set(), base)
    assert cfg.MODEL.MATCHER.LADA.ANCHOR_SCALE == pytest.approx(3.6)
    assert cfg.MODEL.MATCHER.PAA.ANCHOR_SCALE == pytest.approx(3.6)
    assert "in use: lada" in "\n".join(recipe.lines)
    cfg, base = own_data_cfg("RECIPE.ANCHOR_TO_OBJECT", "0.5")
    apply_recipe(cfg, set(), base)
    assert cfg.MODEL.MATCHER.ATSS.ANCHOR_SCALE == pytest.approx(2.0)


def test_your_anchor_scale_wins(dataset):
    opts = ["MODEL.MATCHER.PAA.ANCHOR_SCALE", "8.0", "MODEL.MATCHER.NAME", "paa"]
    cfg, base = own_data_cfg(*opts)
    recipe = apply_recipe(cfg, user_set_keys(str(OWN_DATA), opts), base)
    assert cfg.MODEL.MATCHER.PAA.ANCHOR_SCALE == 8.0
    assert cfg.MODEL.MATCHER.ATSS.ANCHOR_SCALE == pytest.approx(3.6)
    assert recipe.kept == {"MODEL.MATCHER.PAA.ANCHOR_SCALE": 8.0}
    assert "paa 8 (yours)" in "\n".join(recipe.lines)


def test_without_boxes_the_anchors_stay():
    cfg = add_lada_config(get_cfg())
    dicts = [{"height": 128, "width": 128, "annotations": []}]
    recipe = choose_recipe(cfg, dataset_stats(dicts))
    assert not set(anchor_keys().values()) & set(recipe.values)


def test_every_anchor_matcher_is_sized():
    """Every matcher config with an ANCHOR_SCALE key is one the recipe sizes, and the
    config's default ratio is the module's COCO ratio."""
    cfg = add_lada_config(get_cfg())
    with_anchors = {f"MODEL.MATCHER.{name}.ANCHOR_SCALE" for name, node in cfg.MODEL.MATCHER.items()
                    if isinstance(node, dict) and "ANCHOR_SCALE" in node}
    assert with_anchors == set(anchor_keys().values())
    assert cfg.RECIPE.ANCHOR_TO_OBJECT == COCO_ANCHOR_TO_OBJECT
