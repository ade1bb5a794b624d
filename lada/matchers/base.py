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


class CandidateDivisionMatcher(ABC):
    """Matchers whose preliminary match gives every point at most one GT (PAA, LADA):
    each image yields per-GT candidates with scores (lower is better), then one
    division runs on the candidates of all GT boxes of the batch at once, so that a
    batched fit (PAA's GMM) sees every GT in one call."""

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        gt_index = inputs.points.new_full(
            (inputs.num_images, inputs.num_points), BACKGROUND, dtype=torch.long
        )
        per_image = {
            image: self.image_candidates(inputs, image)
            for image in range(inputs.num_images)
            if len(inputs.gt_boxes[image])
        }
        if not per_image:
            return MatchResult(gt_index=gt_index)
        width = next(iter(per_image.values()))[0].shape[1]
        empty = _empty_candidates(width, inputs.points.device)
        index, valid, scores = (
            torch.cat(parts)  # (ΣG, K)
            for parts in zip(*(per_image.get(i, empty) for i in range(inputs.num_images)))
        )
        positive = self.divide(scores, valid) & valid
        device = index.device
        image_of_row = torch.cat(
            [torch.full((len(b),), i, device=device) for i, b in enumerate(inputs.gt_boxes)]
        )
        gt_of_row = torch.cat([torch.arange(len(b), device=device) for b in inputs.gt_boxes])
        rows, slots = positive.nonzero(as_tuple=True)
        gt_index[image_of_row[rows], index[rows, slots]] = gt_of_row[rows]
        return MatchResult(gt_index=gt_index)

    @abstractmethod
    def image_candidates(
        self, inputs: MatchInputs, image: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidate point indices (G, K), their validity (G, K) and scores (G, K) of the
        G >= 1 GT boxes of image ``image``; K is the same for every image."""

    @abstractmethod
    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(ΣG, K) scores and validity -> (ΣG, K) bool positives."""


def _empty_candidates(width: int, device: torch.device):
    """The candidates of an image without GT boxes: three (0, width) tensors."""
    return (
        torch.zeros((0, width), dtype=torch.long, device=device),
        torch.zeros((0, width), dtype=torch.bool, device=device),
        torch.zeros((0, width), device=device),
    )
