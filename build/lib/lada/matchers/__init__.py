"""Label assignment behind one contract.

- ``contract.py``: what a matcher is (``Matcher``), receives (``MatchInputs``) and returns
  (``MatchResult``, with ``PairWeights`` for a soft matcher).
- ``registry.py``: ``MATCHER_REGISTRY`` and ``build_matcher`` (``MODEL.MATCHER.NAME``).
- ``base.py``: the skeletons of the hard matchers: ``BatchMatcher`` (the empty-batch
  guard) and ``CandidateDivisionMatcher``, per-GT candidates divided in one batched call
  (PAA, LADA).
- ``stages/``: the shared building blocks the methods are made of.
- ``methods/``: one file per assignment method, each registered under its config name.

Importing this package registers every method.
"""
from . import methods  # noqa: F401  (registration)
from .contract import (
    BACKGROUND,
    MatchInputs,
    Matcher,
    MatchResult,
    PairWeights,
    check_result_kind,
    declared_soft,
)
from .registry import MATCHER_REGISTRY, build_matcher

__all__ = ["BACKGROUND", "MATCHER_REGISTRY", "MatchInputs", "MatchResult", "Matcher",
           "PairWeights", "build_matcher", "check_result_kind", "declared_soft"]
