"""Errors raised at the dataset boundary; each message names the dataset and the file."""

__all__ = ["DatasetError", "ImageReadError"]


class DatasetError(ValueError):
    """A dataset cannot be used as it is: a file is unreadable, an annotation is invalid or
    does not fit the model's config."""


class ImageReadError(OSError):
    """An image file of a dataset cannot be read (missing, truncated, not an image)."""
