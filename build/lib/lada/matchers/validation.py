"""Checks of matcher hyperparameters, shared by every method of ``methods/``.

Each check raises ``ValueError`` naming the config key (for example
``MODEL.MATCHER.LADA.TOPK``) and the bad value, so that a wrong yaml entry is reported
where it is read instead of corrupting an assignment later. NaN fails every numeric
check.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Sequence

__all__ = [
    "require",
    "require_in_range",
    "require_nonnegative",
    "require_one_of",
    "require_positive",
    "require_positive_int",
]


def require(condition: bool, key: str, requirement: str, value: Any) -> None:
    """Raises ``ValueError("{key} {requirement}, got {value!r}")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{key} {requirement}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


def require_positive(key: str, value: Any) -> None:
    """``value > 0``."""
    require(_is_number(value) and value > 0, key, "must be > 0", value)


def require_nonnegative(key: str, value: Any) -> None:
    """``value >= 0``."""
    require(_is_number(value) and value >= 0, key, "must be >= 0", value)


def require_positive_int(key: str, value: Any) -> None:
    """An integer ``>= 1`` (an integral float such as ``9.0`` counts)."""
    integral = _is_number(value) and math.isfinite(value) and int(value) == value
    require(integral and value >= 1, key, "must be a positive integer", value)


def require_in_range(key: str, value: Any, low: float, high: float) -> None:
    """``low <= value <= high``."""
    require(_is_number(value) and low <= value <= high, key, f"must be in [{low}, {high}]", value)


def require_one_of(key: str, value: Any, choices: Sequence[Any]) -> None:
    """``value`` is one of ``choices``."""
    require(value in tuple(choices), key, f"must be one of {tuple(choices)}", value)
