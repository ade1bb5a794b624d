"""Skeletons of the batched matchers: the one empty-batch guard (``BatchMatcher``), and
per-GT candidates followed by one batched division (``CandidateDivisionMatcher``)."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .contract import MatchInputs, MatchResult, ResultKind
from .declaration import MatcherBase
from .stages.batch import BatchGTs
from .stages.best_gt import assign_candidates_to_best_gt

__all__ = ["BatchMatcher", "CandidateDivisionMatcher"]


class BatchMatcher(MatcherBase, ABC):
    """A matcher that assigns all GT boxes of the batch at once: ``__call__`` gathers them
    (``BatchGTs``), gives the all-background result (``empty_result``) when the batch
    has none, and otherwise returns ``match``; without gradients."""

    @torch.no_grad()
    def __call__(self, inputs: MatchInputs) -> MatchResult:
        gts = BatchGTs.of(inputs)
        if len(gts) == 0:
            return self.empty_result(inputs, gts)
        return self.match(inputs, gts)

    def empty_result(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        """The result of a batch without GT boxes: every point background, with a quality
        target of zeros for a matcher that gives one (as its images without GT boxes get
        in a batch with some)."""
        background = gts.background()
        if type(self).METHOD.result is not ResultKind.QUALITY:
            return MatchResult(gt_index=background)
        return MatchResult(gt_index=background, quality=torch.zeros(
            background.shape, dtype=torch.float32, device=background.device))

    @abstractmethod
    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        """The result of a batch with M >= 1 GT boxes ``gts``."""


class CandidateDivisionMatcher(BatchMatcher):
    """Per-GT candidates with scores (lower is better), built for all GT boxes of the
    batch at once, then one division on them, so that a batched fit (PAA's GMM) sees
    every GT in one call (PAA, LADA).

    A point positive for several GTs goes to the one whose candidate score is lowest,
    equal scores to the lower GT index (``assign_candidates_to_best_gt``): a rule of its
    own, so that the result never depends on the order of writes on a device. PAA's and
    LADA's preliminary match gives every point at most one GT, so for them the rule never
    has to choose."""

    def match(self, inputs: MatchInputs, gts: BatchGTs) -> MatchResult:
        key, valid, scores = self.candidates(inputs, gts)  # (M, K) each
        positive = self.divide(scores, valid) & valid
        gt_of_key = assign_candidates_to_best_gt(
            key, -scores, positive, gts.num_images * gts.num_points
        )
        return MatchResult(gt_index=gts.local_gt_index(gt_of_key))

    @abstractmethod
    def candidates(
        self, inputs: MatchInputs, gts: BatchGTs
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates of the batch's M >= 1 GT boxes: flat point keys ``image * R +
        point`` (M, K), their validity (M, K) and scores (M, K), lower is better."""

    @abstractmethod
    def divide(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(M, K) scores and validity -> (M, K) bool positives."""
