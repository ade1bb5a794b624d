"""The GT boxes of a whole batch as one set, so that a stage runs once per batch instead
of once per image: all images share the anchor points, so a (GT, point) pair of any
image is found by the same search, and a point of image i is the flat key
``i * R + point`` of the batch's (N * R) points."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..contract import BACKGROUND, MatchInputs

__all__ = ["BatchGTs"]


@dataclass
class BatchGTs:
    """The batch's M GT boxes, images concatenated in order.

    Attributes:
        boxes: (M, 4) XYXY boxes; classes: (M,) class ids.
        image: (M,) the image of each GT.
        first: (N,) the batch index of each image's first GT.
        num_points: R, the points of one image.
    """

    boxes: torch.Tensor
    classes: torch.Tensor
    image: torch.Tensor
    first: torch.Tensor
    num_points: int

    @classmethod
    def of(cls, inputs: MatchInputs) -> "BatchGTs":
        device = inputs.points.device
        counts = torch.tensor([len(b) for b in inputs.gt_boxes], device=device)
        return cls(
            boxes=torch.cat(list(inputs.gt_boxes)),
            classes=torch.cat(list(inputs.gt_classes)),
            image=torch.repeat_interleave(torch.arange(len(counts), device=device), counts),
            first=counts.cumsum(0) - counts,
            num_points=inputs.num_points,
        )

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_images(self) -> int:
        return len(self.first)

    def keys(self, gt: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        """Flat keys (image * R + point) of (GT, point) pairs, any equal shapes."""
        return self.image[gt] * self.num_points + point

    def local_gt_index(self, gt_of_key: torch.Tensor) -> torch.Tensor:
        """(N * R,) batch GT index of each flat key, or ``BACKGROUND`` -> (N, R) the GT's
        index within its image (``MatchResult.gt_index``)."""
        image_start = self.first.repeat_interleave(self.num_points)  # (N * R,)
        local = torch.where(gt_of_key >= 0, gt_of_key - image_start, gt_of_key)
        return local.view(self.num_images, self.num_points)

    def background(self) -> torch.Tensor:
        """(N, R) long, every point ``BACKGROUND``."""
        return torch.full((self.num_images, self.num_points), BACKGROUND, dtype=torch.long,
                          device=self.image.device)
