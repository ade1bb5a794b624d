"""The GT boxes of a whole batch as one set, so that a stage runs once per batch instead
of once per image: all images share the anchor points, so a (GT, point) pair of any
image is found by the same search, and a point of image i is the flat key
``i * R + point`` of the batch's (N * R) points."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..contract import BACKGROUND, MatchInputs

__all__ = ["BatchGTs", "ImagesSideBySide"]


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
        return self.image.index_select(0, gt.reshape(-1)).view(gt.shape) * self.num_points + point

    def local_gt_index(self, gt_of_key: torch.Tensor) -> torch.Tensor:
        """(N * R,) batch GT index of each flat key, or ``BACKGROUND`` -> (N, R) the GT's
        index within its image (``MatchResult.gt_index``)."""
        image_start = self.first.repeat_interleave(self.num_points)  # (N * R,)
        local = torch.where(gt_of_key >= 0, gt_of_key - image_start, gt_of_key)
        return local.view(self.num_images, self.num_points)

    def first_duplicates(self) -> torch.Tensor:
        """(M,) long: for each GT, the lowest batch index of the GTs of its image with the
        same box and class (itself when it has no duplicate). Duplicates cost exactly the
        same at every point, so a conflict between them goes to this one; a matcher lets
        it stand for them all when it compares costs across GTs, because the same cost
        evaluated at another position of a tensor may round differently (an elementwise
        transcendental's vectorised body against its scalar tail)."""
        rows = torch.cat([self.image[:, None].to(self.boxes.dtype), self.boxes,
                          self.classes[:, None].to(self.boxes.dtype)], dim=1)
        if len(rows) == 0:
            return self.image.clone()
        _, group = torch.unique(rows, dim=0, return_inverse=True)
        index = torch.arange(len(rows), device=rows.device)
        lowest = torch.full_like(index, len(rows)).scatter_reduce_(0, group, index, "amin")
        return lowest.index_select(0, group)

    def background(self) -> torch.Tensor:
        """(N, R) long, every point ``BACKGROUND``."""
        return torch.full((self.num_images, self.num_points), BACKGROUND, dtype=torch.long,
                          device=self.image.device)


@dataclass
class ImagesSideBySide:
    """The images of a batch laid side by side along x, so that one ``WindowIndex``
    holds the points (or GT centres) of every image and a window finds those of its own
    image only: image ``i`` is shifted by ``i * shift``, ``shift`` the x extent of the
    coordinates plus a gap, and a window is clamped to that extent before its shift.

    Attributes:
        low, high: (2,) float64 corners of the coordinates' bounding box.
        shift: the x offset between consecutive images.
    """

    low: torch.Tensor
    high: torch.Tensor
    shift: float

    GAP = 2.0
    """Pixels between images: more than ``pairs.widen`` grows a window."""

    @classmethod
    def around(cls, xy: torch.Tensor) -> "ImagesSideBySide":
        """For coordinates (n, 2), n >= 1, shared by (or pooled over) the images."""
        xy = xy.double()
        low, high = xy.amin(dim=0), xy.amax(dim=0)
        return cls(low=low, high=high, shift=float(high[0] - low[0]) + cls.GAP)

    def place(self, xy: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Coordinates (n, 2) of images (n,) -> (n, 2) float64, shifted."""
        placed = xy.double().clone()
        placed[:, 0] += image.double() * self.shift
        return placed

    def windows(self, windows: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """XYXY windows (n, ..., 4) of images (n,), already widened -> clamped to the
        coordinates' box and shifted, float64 (a window outside the box is inverted and
        finds nothing)."""
        windows = windows.double()
        clamped = torch.cat([torch.maximum(windows[..., :2], self.low),
                             torch.minimum(windows[..., 2:], self.high)], dim=-1)
        offset = (image.double() * self.shift).view(-1, *([1] * (windows.dim() - 1)))
        return clamped + offset * torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64,
                                               device=windows.device)
