"""Evaluation: detectron2's COCO evaluator with the slender-object (aspect-ratio band) AP."""
from .evaluator import SlenderCOCOEvaluator
from .slender import (
    BAND_METRICS,
    AspectRatioBand,
    AspectRatioCOCOeval,
    aspect_ratio,
    aspect_ratio_bands,
    evaluate_aspect_ratio_bands,
)

__all__ = [
    "BAND_METRICS",
    "AspectRatioBand",
    "AspectRatioCOCOeval",
    "SlenderCOCOEvaluator",
    "aspect_ratio",
    "aspect_ratio_bands",
    "evaluate_aspect_ratio_bands",
]
