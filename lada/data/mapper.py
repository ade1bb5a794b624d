"""detectron2's ``DatasetMapper`` whose image-read errors name the file and the dataset,
and which refuses images of more than 8 bits per channel (Pillow modes ``I``, ``I;16*``,
``F``: 16-bit grayscale PNG, 32-bit or float TIFF), since detectron2's ``convert("RGB")``
clips their values to 255 and trains on a white field."""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.utils.file_io import PathManager
from PIL import Image

from ..harmless_warnings import NON_WRITABLE_ARRAY, ignoring
from .augmentations import build_extra_augmentations
from .errors import ImageReadError

__all__ = ["IMAGE_READ_POLICIES", "ReadCheckedDatasetMapper"]

logger = logging.getLogger(__name__)

IMAGE_READ_POLICIES = ("error", "skip_with_warning")


class UnsupportedImageModeError(OSError):
    """An image whose Pillow mode detectron2 cannot convert to 8-bit RGB faithfully."""


def _is_high_bit_depth(mode: str) -> bool:
    return mode in ("I", "F") or mode.startswith("I;16")

# What PIL raises for a missing, truncated or corrupt file (OSError, including
# UnidentifiedImageError; SyntaxError for broken PNG chunks) or a decompression bomb.
_READ_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


class ReadCheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same outputs; in training, detectron2's augmentations followed by
    those of ``INPUT.EXTRA_AUGMENTATIONS``, see :mod:`lada.data.augmentations`) that turns
    an unreadable image (or one of more than 8 bits per channel) into an
    :class:`ImageReadError` naming the file and its dataset,
    instead of PIL's message without a file name (e.g. "image file is truncated") at some
    iteration.

    With ``skip_unreadable`` (``DATASETS.IMAGE_READ_POLICY skip_with_warning``), a training
    mapper logs that message and returns None: detectron2's ``MapDataset`` then maps
    another image of the dataset, so a multi-day run survives a broken file. An inference
    mapper always raises (a skipped image would silently change the evaluation).
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        dataset_names: Sequence[str] = (),
        skip_unreadable: bool = False,
        **kwargs,
    ):
        """
        Args:
            is_train, kwargs: as ``DatasetMapper``.
            dataset_names: the datasets this mapper reads, to name them in errors.
            skip_unreadable: in training, skip an unreadable image with a warning.
        """
        super().__init__(is_train, **kwargs)
        self.dataset_names = tuple(dataset_names)
        self.skip_unreadable = skip_unreadable and is_train

    @classmethod
    def from_config(
        cls, cfg: CfgNode, is_train: bool = True, dataset_names: Optional[Sequence[str]] = None
    ) -> dict:
        policy = cfg.DATASETS.IMAGE_READ_POLICY
        if policy not in IMAGE_READ_POLICIES:
            raise ValueError(
                f"DATASETS.IMAGE_READ_POLICY must be one of {IMAGE_READ_POLICIES}, got '{policy}'"
            )
        ret = super().from_config(cfg, is_train)
        if is_train:
            ret["augmentations"] = list(ret["augmentations"]) + build_extra_augmentations(cfg)
        if dataset_names is None:
            dataset_names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        ret["dataset_names"] = tuple(dataset_names)
        ret["skip_unreadable"] = policy == "skip_with_warning"
        return ret

    def __call__(self, dataset_dict: dict) -> Optional[dict]:
        try:
            _check_image_mode(dataset_dict["file_name"])
            with ignoring(NON_WRITABLE_ARRAY):  # a flip of Pillow's read-only array
                return super().__call__(dataset_dict)
        except _READ_ERRORS as error:
            file_name = dataset_dict.get("file_name", "?")
            message = (
                f"cannot read image {file_name} of {self._dataset_of(str(file_name))}: "
                f"{type(error).__name__}: {error}"
            )
            if self.skip_unreadable:
                logger.warning("%s; skipped (DATASETS.IMAGE_READ_POLICY skip_with_warning)", message)
                return None
            raise ImageReadError(
                f"{message}. Replace or remove the file; in training, DATASETS.IMAGE_READ_POLICY"
                " skip_with_warning skips such images."
            ) from error

    def _dataset_of(self, file_name: str) -> str:
        """'dataset 'x'' for the dataset whose image folder holds ``file_name``."""
        holders = [
            name for name in self.dataset_names
            if _is_under(file_name, MetadataCatalog.get(name).get("image_root"))
        ]
        names = holders if len(holders) == 1 else list(self.dataset_names)
        if not names:
            return "its dataset"
        if len(names) == 1:
            return f"dataset '{names[0]}'"
        return "one of the datasets " + ", ".join(f"'{n}'" for n in names)


def _check_image_mode(file_name: str) -> None:
    """Raises :class:`UnsupportedImageModeError` for an image of more than 8 bits per
    channel; reads the file's header only."""
    with PathManager.open(file_name, "rb") as f, Image.open(f) as image:
        mode = image.mode
    if _is_high_bit_depth(mode):
        raise UnsupportedImageModeError(
            f"Pillow mode {mode} (more than 8 bits per channel, e.g. a 16-bit grayscale PNG), "
            "which detectron2's conversion to RGB clips to 255 (a white image); convert it to "
            "8 bits per channel (README, 'Data checks and failure behaviour')"
        )


def _is_under(file_name: str, folder: Optional[str]) -> bool:
    if not folder:
        return False
    folder = os.path.abspath(folder)
    return os.path.commonpath([folder, os.path.abspath(file_name)]) == folder
