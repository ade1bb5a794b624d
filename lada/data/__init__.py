"""Datasets: registration, checks at the dataset boundary, the names of a model's classes,
the image mapper and the embedded synthetic dataset."""
from .box_checks import (
    DatasetChecks, check_dataset, classify_boxes, install_dataset_check, install_dataset_checks,
)
from .class_names import class_fields, class_metadata
from .datasets import register_coco_dataset, register_coco_datasets
from .errors import DatasetError, ImageReadError
from .json_checks import check_test_categories
from .mapper import ReadCheckedDatasetMapper

__all__ = [
    "DatasetChecks",
    "DatasetError",
    "ImageReadError",
    "ReadCheckedDatasetMapper",
    "check_dataset",
    "class_fields",
    "class_metadata",
    "check_test_categories",
    "classify_boxes",
    "install_dataset_check",
    "install_dataset_checks",
    "register_coco_dataset",
    "register_coco_datasets",
]
