"""Skeletons of the hard matchers: the one empty-batch guard (``BatchMatcher``), and
per-GT candidates followed by one batched division (``CandidateDivisionMatcher``)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from .contract import BACKGROUND, MatchInputs, MatchResult
from .stages.batch import BatchGTs

__all__ = ["BatchMatcher", "CandidateDivisionMatcher"]


class BatchMatcher(ABC):
    """A hard matcher (``SOFT = False``) that assigns all GT boxes of the batch at once:
    ``__call__`` gathers them (``BatchGTs``), gives the all-background result when the
    batch has none, and otherwise returns ``match``; without gradients."""

    SOFT: ClassVar[bool] = False

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        gts = BatchGTs.of(inputs)
        if len(gts) == 0:
            return MatchResult(gt_index=gts.background())
        return self.match(inputs, gts)

    @abstractmethod
    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        """The result of a batch with M >= 1 GT boxes ``gts``."""


class CandidateDivisionMatcher(BatchMatcher):
    """Matchers whose preliminary match gives every point at most one GT (PAA, LADA):
    per-GT candidates with scores (lower is better) are built for all GT boxes of the
    batch at once, then one division runs on them, so that a batched fit (PAA's GMM)
    sees every GT in one call."""

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        key, valid, scores = self.candidates(inputs, gts)  # (M, K) each
        positive = self.divide(scores, valid) & valid
        rows, slots = positive.nonzero(as_tuple=True)
        gt_of_key = torch.full((gts.num_images * gts.num_points,), BACKGROUND, dtype=torch.long,
                               device=key.device)
        gt_of_key[key[rows, slots]] = rows
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key))

    @abstractmethod
    def candidates(
        self, inputs: MatchInputs, gts: BatchGTs
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates of the batch's M >= 1 GT boxes: flat point keys ``image * R +
        point`` (M, K), their validity (M, K) and scores (M, K)."""

    @abstractmethod
    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(M, K) scores and validity -> (M, K) bool positives."""
