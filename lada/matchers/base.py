"""Base class of matchers that assign each image independently."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .contract import BACKGROUND, MatchInputs, MatchResult

__all__ = ["PerImageMatcher"]


class PerImageMatcher(ABC):
    """Runs :meth:`match_image` on every image that has GT boxes; images without GT
    boxes are all background. Subclasses implement one image, vectorised over its GTs."""

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        gt_index = [
            self.match_image(inputs, image)
            if len(inputs.gt_boxes[image])
            else inputs.points.new_full((inputs.num_points,), BACKGROUND, dtype=torch.long)
            for image in range(inputs.num_images)
        ]
        return MatchResult(gt_index=torch.stack(gt_index))

    @abstractmethod
    def match_image(self, inputs: MatchInputs, image: int) -> torch.Tensor:
        """(R,) long: GT index of each point of image ``image`` (which has at least one
        GT box), or ``BACKGROUND``."""
