"""Image-read errors name the file and the dataset; in training they may be skipped."""
import logging

import pytest
from coco_files import GOOD, write_coco
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader

from lada.data import ImageReadError, ReadCheckedDatasetMapper, register_coco_dataset
from conftest import small_cfg


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Dataset of three images: img1.png truncated, img2.png not an image at all."""
    root = tmp_path_factory.mktemp("broken")
    json_file, images = write_coco(root, [GOOD, GOOD, GOOD])
    data = (images / "img1.png").read_bytes()
    (images / "img1.png").write_bytes(data[: len(data) // 2])
    (images / "img2.png").write_bytes(b"not an image")
    register_coco_dataset("lada_test_broken_images", json_file, images)
    return DatasetCatalog.get("lada_test_broken_images")


def _cfg(policy="error"):
    return small_cfg(**{"DATASETS.TRAIN": ("lada_test_broken_images",),
                        "DATASETS.TEST": ("lada_test_broken_images",),
                        "DATASETS.IMAGE_READ_POLICY": policy, "MODEL.FCOS.NUM_CLASSES": 2,
                        "INPUT.MIN_SIZE_TRAIN": (64,), "INPUT.MAX_SIZE_TRAIN": 64,
                        "DATALOADER.NUM_WORKERS": 0, "SOLVER.IMS_PER_BATCH": 2})


def test_readable_image_maps_as_detectron2(broken):
    mapped = ReadCheckedDatasetMapper(_cfg(), True)(broken[0])
    assert tuple(mapped["image"].shape) == (3, 64, 64) and len(mapped["instances"]) == 2


@pytest.mark.parametrize("index, reason", [(1, "OSError: image file is truncated"),
                                           (2, "UnidentifiedImageError: cannot identify")])
def test_read_error_names_file_and_dataset(broken, index, reason):
    with pytest.raises(ImageReadError) as error:
        ReadCheckedDatasetMapper(_cfg(), True)(broken[index])
    message = str(error.value)
    assert f"cannot read image {broken[index]['file_name']} of dataset 'lada_test_broken_images'" in message
    assert reason in message and "DATASETS.IMAGE_READ_POLICY skip_with_warning" in message


def test_skip_policy_trains_on_the_readable_images(broken):
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("lada").addHandler(handler)
    try:
        loader = build_detection_train_loader(
            _cfg("skip_with_warning"), mapper=ReadCheckedDatasetMapper(_cfg("skip_with_warning"), True))
        batches = [batch for batch, _ in zip(loader, range(4))]
    finally:
        logging.getLogger("lada").removeHandler(handler)
    names = {d["file_name"] for batch in batches for d in batch}
    assert names == {broken[0]["file_name"]}  # the only readable image
    skipped = {r.getMessage().split(" of dataset")[0] for r in records}
    assert skipped == {f"cannot read image {broken[i]['file_name']}" for i in (1, 2)}
    assert all("skipped (DATASETS.IMAGE_READ_POLICY skip_with_warning)" in r.getMessage() for r in records)


def test_inference_never_skips(broken):
    cfg = _cfg("skip_with_warning")
    mapper = ReadCheckedDatasetMapper(cfg, False, dataset_names=("lada_test_broken_images",))
    loader = build_detection_test_loader(cfg, "lada_test_broken_images", mapper=mapper)
    with pytest.raises(ImageReadError, match="img1.png of dataset 'lada_test_broken_images'"):
        list(loader)


def test_invalid_policy_names_the_key():
    with pytest.raises(ValueError, match="DATASETS.IMAGE_READ_POLICY must be one of"):
        ReadCheckedDatasetMapper(_cfg("ignore"), True)
