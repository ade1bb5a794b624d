"""Checks at the dataset boundary: box kinds, policies, messages, classes, empty datasets."""
import logging
import math

import numpy as np
import pytest
from coco_files import GOOD, write_coco
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from lada.data import (
    DatasetChecks, DatasetError, check_dataset, classify_boxes, install_dataset_checks,
    register_coco_dataset,
)
from conftest import small_cfg

DEFAULT_POLICY = {"non_finite": "error", "negative_size": "error",
                  "zero_size": "drop_with_warning", "out_of_image": "drop_with_warning"}
DROP_ALL = dict.fromkeys(DEFAULT_POLICY, "drop_with_warning")


@pytest.fixture
def warnings_of_lada():
    """Records of the 'lada' loggers (setup_logger stops them propagating to pytest)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("lada")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _checks(policy=DEFAULT_POLICY, num_classes=2, training=True, allow_unannotated=False):
    return DatasetChecks(box_policy=policy, num_classes=num_classes, training=training,
                         allow_unannotated=allow_unannotated)


def _records(boxes_per_image, size=64, mode=BoxMode.XYWH_ABS, category=0):
    return [
        {"file_name": f"/data/img{i}.png", "image_id": i + 1, "width": size, "height": size,
         "annotations": [{"id": 10 * i + j, "bbox": list(b), "bbox_mode": mode,
                          "category_id": category, "iscrowd": 0} for j, b in enumerate(boxes)]}
        for i, boxes in enumerate(boxes_per_image)
    ]


def test_each_kind_of_bad_box_by_hand():
    inf, nan = math.inf, math.nan
    boxes = np.array([
        [10, 10, 5, 5],      # good
        [nan, 10, 5, 5],     # non-finite
        [10, 10, inf, 5],    # non-finite (detectron2 would clip it to the image edge)
        [60, 60, -30, -25],  # negative size (detectron2's transforms would reflect it)
        [10, 10, 0, 5],      # zero width
        [-5, -5, -0.0, 3],   # zero width (negative zero is zero)
        [20, 20, 4, 0],      # zero height
        [64, 10, 5, 5],      # starts at the right edge: outside
        [-5, 10, 5, 5],      # ends at the left edge: outside
        [60, 60, 10, 10],    # partly outside: detectron2 clips it, fine
        [10, 70, 5, 5],      # below the image: outside
        [5, 5, 3, -1],       # negative height
        [10, -9, 5, 4],      # above the image: outside
    ], dtype=np.float64)
    sizes = np.tile([64.0, 64.0], (len(boxes), 1))
    kinds = classify_boxes(boxes, sizes)
    expected = {
        "non_finite": [1, 2], "negative_size": [3, 11], "zero_size": [4, 5, 6],
        "out_of_image": [7, 8, 10, 12],
    }
    assert {k: np.flatnonzero(m).tolist() for k, m in kinds.items()} == expected


def test_unknown_image_size_is_never_out_of_image():
    kinds = classify_boxes(np.array([[500.0, 500, 5, 5]]), np.array([[np.nan, np.nan]]))
    assert not any(mask.any() for mask in kinds.values())


def test_errors_name_dataset_kind_policy_annotation_and_image():
    dicts = _records([[[8, 8, 20, 30]], [[60, 60, -30, -25], [1, 2, 3, 4], [5, 5, 5, math.nan]]])
    with pytest.raises(DatasetError) as error:
        check_dataset("lada_test_neg", dicts, _checks())
    message = str(error.value)
    assert "dataset 'lada_test_neg'" in message
    assert ("1 box(es) with a negative width or height (DATASETS.BAD_BOX_POLICY.NEGATIVE_SIZE "
            "error), e.g. annotation id 10 in image img1.png: [60, 60, -30, -25]") in message
    assert "1 box(es) with a NaN or infinite coordinate (DATASETS.BAD_BOX_POLICY.NON_FINITE" in message
    assert "annotation id 12 in image img1.png" in message


def test_drops_are_counted_logged_and_removed(warnings_of_lada):
    dicts = _records([[[8, 8, 20, 30], [10, 10, 0, 5]],
                      [[100, 100, 5, 5], [2, 2, 9, 9], [3, 3, 0, 0], [70, 1, 3, 3]]])
    kept = check_dataset("lada_test_drop", dicts, _checks())
    assert [[a["id"] for a in r["annotations"]] for r in kept] == [[0], [11]]
    (record,) = warnings_of_lada
    message = record.getMessage()
    assert "dataset 'lada_test_drop': dropped 4 of 6 boxes" in message
    assert "2 box(es) with zero width or height (DATASETS.BAD_BOX_POLICY.ZERO_SIZE drop_with_warning)" in message
    assert "annotation id 1 in image img0.png: [10, 10, 0, 5]; annotation id 12 in image img1.png" in message
    assert "2 box(es) with no overlap with its image" in message
    assert "annotation id 10 in image img1.png: [100, 100, 5, 5]" in message


def test_policies_are_per_kind():
    boxes = [[[8, 8, 20, 30], [60, 60, -30, -25], [10, 10, 0, 5]]]
    kept = check_dataset("lada_test_p1", _records(boxes), _checks(policy=DROP_ALL))
    assert [a["id"] for a in kept[0]["annotations"]] == [0]
    zero_is_error = dict(DROP_ALL, zero_size="error")
    with pytest.raises(DatasetError, match=r"ZERO_SIZE error\), e.g. annotation id 2 ") as error:
        check_dataset("lada_test_p2", _records(boxes), _checks(policy=zero_is_error))
    assert "negative" not in str(error.value)  # dropped, not an error


def test_at_most_three_examples_per_kind():
    dicts = _records([[[1, 1, 0, 1]] * 5])
    with pytest.raises(DatasetError) as error:
        check_dataset("lada_test_many", dicts, _checks(policy=dict(DEFAULT_POLICY, zero_size="error")))
    message = str(error.value)
    assert message.startswith("dataset 'lada_test_many': bad boxes:\n  5 box(es) with zero")
    assert message.count("annotation id") == 3


def test_xyxy_boxes_are_checked_as_boxes():
    dicts = _records([[[10, 10, 30, 40], [30, 10, 10, 40], [10, 10, 10, 40]]], mode=BoxMode.XYXY_ABS)
    with pytest.raises(DatasetError, match=r"1 box\(es\) with a negative.*annotation id 1 "):
        check_dataset("lada_test_xyxy", dicts, _checks())
    dicts = _records([[[10, 10, 30, 40], [10, 10, 10, 40]]], mode=BoxMode.XYXY_ABS)
    assert len(check_dataset("lada_test_xyxy", dicts, _checks())[0]["annotations"]) == 1


def test_malformed_bbox_is_named():
    dicts = _records([[[1, 2, 3, 4]], [[1, 2, 3]]])
    with pytest.raises(DatasetError, match=r"annotation id 10 in image img1.png has bbox \[1, 2, 3\]"):
        check_dataset("lada_test_malformed", dicts, _checks())


def test_class_outside_num_classes_names_both(tmp_path):
    json_file, images = write_coco(tmp_path, [GOOD, [(3, [1, 1, 9, 9]), (3, [2, 2, 9, 9])]],
                                   categories=("a", "b", "truck"))
    register_coco_dataset("lada_test_classes", json_file, images)
    dicts = DatasetCatalog.get("lada_test_classes")
    with pytest.raises(DatasetError) as error:
        check_dataset("lada_test_classes", dicts, _checks(num_classes=2))
    message = str(error.value)
    assert f"dataset 'lada_test_classes' ({json_file})" in message
    assert "2 of class index 2 (json category id 3, 'truck')" in message
    assert "MODEL.FCOS.NUM_CLASSES is 2" in message and "the dataset has 3 categories" in message
    assert "annotation id 3 in image img1.png" in message
    assert check_dataset("lada_test_classes", dicts, _checks(num_classes=3))


def test_fewer_categories_than_num_classes_warns(warnings_of_lada):
    MetadataCatalog.get("lada_test_fewer").thing_classes = ["a"]
    check_dataset("lada_test_fewer", _records([[[1, 1, 5, 5]]]), _checks(num_classes=5))
    (record,) = warnings_of_lada
    assert record.getMessage() == ("dataset 'lada_test_fewer' has 1 categories but "
                                   "MODEL.FCOS.NUM_CLASSES is 5")


def test_training_dataset_without_annotations_is_refused_unless_allowed(warnings_of_lada):
    empty = _records([[], []])
    with pytest.raises(DatasetError, match="none of its 2 images has a .*DATASETS.ALLOW_UNANNOTATED True"):
        check_dataset("lada_test_empty", empty, _checks())
    only_bad = _records([[[1, 1, 0, 3]], []])  # every box dropped: as empty
    with pytest.raises(DatasetError, match="none of its 2 images"):
        check_dataset("lada_test_empty", only_bad, _checks())
    crowd = _records([[[1, 1, 5, 5]]])
    crowd[0]["annotations"][0]["iscrowd"] = 1
    with pytest.raises(DatasetError, match="none of its 1 images"):
        check_dataset("lada_test_empty", crowd, _checks())
    assert check_dataset("lada_test_empty", _records([[], []]), _checks(training=False))
    assert check_dataset("lada_test_empty", _records([[], []]), _checks(allow_unannotated=True))
    assert "DATASETS.ALLOW_UNANNOTATED is True" in warnings_of_lada[-1].getMessage()


def test_invalid_policy_names_the_key():
    with pytest.raises(ValueError, match="DATASETS.BAD_BOX_POLICY.ZERO_SIZE must be one of"):
        _checks(policy=dict(DEFAULT_POLICY, zero_size="ignore"))


def test_installed_checks_are_lazy_per_run_and_warn_once(tmp_path, warnings_of_lada):
    json_file, images = write_coco(tmp_path, [GOOD + [(1, [0, 0, 0, 4])]])
    register_coco_dataset("lada_test_lazy_train", json_file, images)
    register_coco_dataset("lada_test_lazy_unused", tmp_path / "missing.json", images)
    cfg = small_cfg(**{"DATASETS.TRAIN": ("lada_test_lazy_train",), "DATASETS.TEST": (),
                       "MODEL.FCOS.NUM_CLASSES": 2})
    install_dataset_checks(cfg)  # loads nothing; the unused dataset is never read
    assert len(warnings_of_lada) == 0
    assert len(DatasetCatalog.get("lada_test_lazy_train")[0]["annotations"]) == 2
    assert len(DatasetCatalog.get("lada_test_lazy_train")[0]["annotations"]) == 2
    assert len(warnings_of_lada) == 1  # the second load drops silently
    cfg.DATASETS.BAD_BOX_POLICY.ZERO_SIZE = "error"
    install_dataset_checks(cfg)  # replaces the checks, does not stack them
    with pytest.raises(DatasetError, match="ZERO_SIZE error"):
        DatasetCatalog.get("lada_test_lazy_train")
    with pytest.raises(FileNotFoundError, match="dataset 'lada_test_lazy_unused': annotation file"):
        DatasetCatalog.get("lada_test_lazy_unused")
