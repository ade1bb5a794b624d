"""Checks of matcher hyperparameters, shared by every method of ``methods/``.

Each check raises :class:`InvalidArgument` (a ``ValueError``) naming the argument (for
example ``topk``) and the bad value, so that a wrong value is reported where it is given
instead of corrupting an assignment later; when the matcher is built from a config,
``build_matcher`` names the config key instead (``MODEL.MATCHER.LADA.TOPK``). NaN fails
every numeric check.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Sequence, Union

__all__ = [
    "InvalidArgument",
    "require",
    "require_in_range",
    "require_nonnegative",
    "require_one_of",
    "require_positive",
    "require_positive_int",
]


class InvalidArgument(ValueError):
    """``"{name} {requirement}, got {value!r}"``: hyperparameters ``names`` (arguments, or
    config keys; several are joined by "and") whose ``value`` fails ``requirement``."""

    def __init__(self, names: Union[str, Sequence[str]], requirement: str, value: Any):
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.requirement, self.value = requirement, value
        super().__init__(f"{' and '.join(self.names)} {requirement}, got {value!r}")

    def under_node(self, node: str) -> "InvalidArgument":
        """The same failure named by config keys: the arguments upper-cased under
        ``node`` (e.g. ``MODEL.MATCHER.LADA.TOPK``)."""
        keys = " and ".join(name.upper() for name in self.names)
        return InvalidArgument(f"{node}.{keys}", self.requirement, self.value)


def require(condition: bool, key: Union[str, Sequence[str]], requirement: str, value: Any) -> None:
    """Raises ``InvalidArgument(key, requirement, value)`` unless ``condition``; ``key``
    may name several arguments that fail together."""
    if not condition:
        raise InvalidArgument(key, requirement, value)


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
