"""Label assignment behind one contract.

- ``contract.py``: what a matcher receives (``MatchInputs``) and returns (``MatchResult``).
- ``registry.py``: ``MATCHER_REGISTRY`` and ``build_matcher`` (``MODEL.MATCHER.NAME``).
- ``base.py``: the skeleton of matchers that build per-GT candidates, then divide them in
  one batched call (PAA, LADA).
- ``stages/``: the shared building blocks the methods are made of.
- ``methods/``: one file per assignment method, each registered under its config name.

Importing this package registers every method.
"""
from . import methods  # noqa: F401  (registration)
from .contract import BACKGROUND, MatchInputs, MatchResult
from .registry import MATCHER_REGISTRY, build_matcher

__all__ = ["BACKGROUND", "MATCHER_REGISTRY", "MatchInputs", "MatchResult", "build_matcher"]
