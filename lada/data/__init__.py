"""Datasets: registration, validation and the embedded synthetic dataset."""
from .datasets import register_coco_dataset, register_coco_datasets

__all__ = ["register_coco_dataset", "register_coco_datasets"]
