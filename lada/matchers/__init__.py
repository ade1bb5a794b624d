"""Label assignment: the matcher contract, its registry and the matchers.

Importing this package registers every matcher in ``MATCHER_REGISTRY``.
"""
from . import aps, atss, ciou_atss, fcos, lada, paa  # noqa: F401  (registration)
from .contract import BACKGROUND, MatchInputs, MatchResult
from .registry import MATCHER_REGISTRY, build_matcher

__all__ = ["BACKGROUND", "MATCHER_REGISTRY", "MatchInputs", "MatchResult", "build_matcher"]
