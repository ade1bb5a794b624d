"""lada.data.class_metadata / class_fields: the names (and dataset category ids) of a
model's classes, from the dataset a tool runs on, else from the config's datasets that
load with the model's number of categories, else none (tools/predict.py and
tools/export_model.py both take them from here)."""
import logging

from coco_files import write_coco
from conftest import small_cfg
from detectron2.data import DatasetCatalog, Metadata

from lada.data import class_fields, class_metadata, register_coco_dataset

NAMES = ("bar", "plate", "ring", "ell", "stroke")  # the quick model's 5 classes
IDS = (3, 5, 8, 13, 21)  # not 1..5: the dataset's ids differ from the model's indexes


def dataset(tmp_path, name, categories=NAMES, category_ids=IDS):
    """[name, json, images] of a one-image COCO dataset with these categories."""
    json_file, images = write_coco(tmp_path / name, [[(category_ids[0], [4, 4, 20, 20])]],
                                   categories=categories, category_ids=category_ids)
    return [name, str(json_file), str(images)]


def test_names_come_from_the_first_config_dataset_with_the_models_classes(tmp_path, caplog):
    two_classes = dataset(tmp_path, "names_two", ("a", "b"), (1, 2))
    five_classes = dataset(tmp_path, "names_five")
    cfg = small_cfg()
    # registered by the lookup itself (tools/export_model.py registers nothing)
    cfg.DATASETS.REGISTER_COCO = [two_classes, five_classes]
    cfg.DATASETS.TEST = ("names_unregistered", "names_two")
    cfg.DATASETS.TRAIN = ("names_five",)
    assert "names_five" not in DatasetCatalog.list()
    with caplog.at_level(logging.WARNING, logger="lada"):
        metadata = class_metadata(cfg)
    assert metadata.name == "names_five" and metadata.thing_classes == list(NAMES)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("lada")]
    assert warnings == [
        "class names: cannot load dataset 'names_unregistered': not registered (not in "
        "DATASETS.REGISTER_COCO)",
        "class names: dataset 'names_two' has 2 categories, the model 5 classes",
    ]
    assert class_fields(metadata) == {"thing_classes": list(NAMES), "category_ids": list(IDS)}


def test_the_given_dataset_comes_first(tmp_path):
    register_coco_dataset(*dataset(tmp_path, "names_input", tuple("vwxyz"), (1, 2, 3, 4, 5)))
    cfg = small_cfg()
    cfg.DATASETS.REGISTER_COCO = [dataset(tmp_path, "names_config")]
    cfg.DATASETS.TEST, cfg.DATASETS.TRAIN = ("names_config",), ()
    assert class_metadata(cfg, "names_input").thing_classes == list("vwxyz")
    assert class_metadata(cfg).thing_classes == list(NAMES)
    # the given dataset with other classes than the model's: the config's names
    register_coco_dataset(*dataset(tmp_path, "names_input_two", ("a", "b"), (1, 2)))
    assert class_metadata(cfg, "names_input_two").thing_classes == list(NAMES)


def test_no_loadable_dataset_gives_no_names(tmp_path, caplog):
    cfg = small_cfg()
    missing = dataset(tmp_path, "names_missing")
    missing[1] = str(tmp_path / "no_such.json")
    cfg.DATASETS.REGISTER_COCO = [missing]
    cfg.DATASETS.TEST, cfg.DATASETS.TRAIN = ("names_missing",), ()
    with caplog.at_level(logging.WARNING, logger="lada"):
        assert class_metadata(cfg) is None
    assert "class names: cannot load dataset 'names_missing': " in caplog.text
    assert "no_such.json does not exist" in caplog.text
    assert class_fields(None) == {"thing_classes": None, "category_ids": None}


def test_class_fields_without_a_category_id_map():
    # metadata naming classes without detectron2's id map (set by hand): names only
    assert class_fields(Metadata(name="hand", thing_classes=["a", "b"])) == {
        "thing_classes": ["a", "b"], "category_ids": None}
