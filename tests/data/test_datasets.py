"""Dataset registration from the command line or the config."""
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lada.data import register_coco_dataset, register_coco_datasets
from lada.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=4, num_val=2))


def test_registered_dataset_loads_with_its_classes(tiny):
    register_coco_dataset("lada_test_tiny", tiny["train"], tiny["train_images"])
    register_coco_dataset("lada_test_tiny", tiny["train"], tiny["train_images"])  # no-op
    records = DatasetCatalog.get("lada_test_tiny")
    assert len(records) == 4 and all(r["file_name"].endswith(".png") for r in records)
    assert MetadataCatalog.get("lada_test_tiny").thing_classes == [
        "bar", "plate", "ring", "ell", "stroke"]


def test_same_name_with_other_files_is_refused(tiny):
    register_coco_dataset("lada_test_clash", tiny["train"], tiny["train_images"])
    with pytest.raises(ValueError, match="already registered"):
        register_coco_dataset("lada_test_clash", tiny["val"], tiny["val_images"])


def test_missing_files_are_named(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file .*nope.json does not exist"):
        register_coco_dataset("lada_test_missing", tmp_path / "nope.json", tiny["train_images"])
    with pytest.raises(FileNotFoundError, match="image folder .*nodir does not exist"):
        register_coco_dataset("lada_test_missing", tiny["train"], tmp_path / "nodir")


def test_entries_need_three_fields():
    with pytest.raises(ValueError, match=r"needs \[name, json_file, image_root\]"):
        register_coco_datasets([["only_a_name", "x.json"]])
