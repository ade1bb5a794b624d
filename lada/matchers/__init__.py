"""Label assignment behind one contract.

- ``contract.py``: what a matcher is (``Matcher``), receives (``MatchInputs``) and returns
  (``MatchResult``, with ``PairWeights`` for a soft matcher and an optional quality
  target), and the kinds of result (``ResultKind``).
- ``declaration.py``: how a method is declared once, on its class (``MethodSpec``, its
  hyperparameters as keyword arguments, the generic ``from_config``).
- ``registry.py``: ``MATCHER_REGISTRY``, ``register_matcher`` and ``build_matcher``
  (``MODEL.MATCHER.NAME``).
- ``base.py``: the skeletons of the batched matchers: ``BatchMatcher`` (the empty-batch
  guard) and ``CandidateDivisionMatcher``, per-GT candidates divided in one batched call
  (PAA, LADA).
- ``stages/``: the shared building blocks the methods are made of.
- ``methods/``: one file per assignment method, each registered under its config name.
- ``validation.py``: the hyperparameter checks.

Importing this package registers every method of ``methods/``; a method of your own is
one file of the same form (docs/methods/adding-a-method.md).
"""
from . import methods  # noqa: F401  (registration)
from .base import BatchMatcher, CandidateDivisionMatcher
from .contract import (
    BACKGROUND,
    MatchInputs,
    Matcher,
    MatchResult,
    PairWeights,
    ResultKind,
    check_result,
)
from .declaration import MatcherBase, MethodSpec, hyperparameters, uses_anchors
from .registry import (
    MATCHER_REGISTRY,
    build_matcher,
    matcher_class,
    register_matcher,
    registered_matchers,
)

__all__ = ["BACKGROUND", "MATCHER_REGISTRY", "BatchMatcher", "CandidateDivisionMatcher",
           "MatchInputs", "MatchResult", "Matcher", "MatcherBase", "MethodSpec", "PairWeights",
           "ResultKind", "build_matcher", "check_result", "hyperparameters", "matcher_class",
           "register_matcher", "registered_matchers", "uses_anchors"]
