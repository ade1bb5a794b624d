"""Dataset registration from the command line or the config."""
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lada.data import DatasetError, register_coco_dataset, register_coco_datasets
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


def test_registration_is_lazy_and_missing_files_are_named_at_load(tiny, tmp_path):
    register_coco_dataset("lada_test_missing_json", tmp_path / "nope.json", tiny["train_images"])
    register_coco_dataset("lada_test_missing_dir", tiny["train"], tmp_path / "nodir")
    with pytest.raises(FileNotFoundError,
                       match="dataset 'lada_test_missing_json': annotation file .*nope.json does not exist"):
        DatasetCatalog.get("lada_test_missing_json")
    with pytest.raises(FileNotFoundError,
                       match="dataset 'lada_test_missing_dir': image folder .*nodir does not exist"):
        DatasetCatalog.get("lada_test_missing_dir")


def test_load_errors_name_dataset_and_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    register_coco_dataset("lada_test_broken", broken, tmp_path)
    with pytest.raises(DatasetError, match=r"dataset 'lada_test_broken': cannot load .*broken.json: JSONDecodeError"):
        DatasetCatalog.get("lada_test_broken")


def test_annotation_ids_are_kept(tiny):
    register_coco_dataset("lada_test_ids", tiny["train"], tiny["train_images"])
    ids = [a["id"] for r in DatasetCatalog.get("lada_test_ids") for a in r["annotations"]]
    assert ids == list(range(1, len(ids) + 1))  # the generator numbers them from 1


def test_entries_need_three_fields():
    with pytest.raises(ValueError, match=r"needs \[name, json_file, image_root\]"):
        register_coco_datasets([["only_a_name", "x.json"]])
