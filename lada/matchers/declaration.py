"""How a method is declared: once, on its class (docs/methods/adding-a-method.md).

A matcher class carries ``METHOD``, a :class:`MethodSpec`: its name (the value of
``MODEL.MATCHER.NAME``), the kind of result it returns and its detector preset. Its
hyperparameters are the keyword-only arguments of its ``__init__`` with their defaults:
each is the key ``MODEL.MATCHER.<NODE>.<ARGUMENT>`` (upper case) with that default,
which ``add_lada_config`` adds and :meth:`MatcherBase.from_config` reads, so a key is
written once, as an argument. A method whose anchor boxes have a side of
``anchor_scale`` strides names that argument ``anchor_scale``: that is what "uses
anchors" means to the own-data recipe, which sizes it, and to the untrained-box advice.

Everything else the project knows about a method (``presets.py``, the recipe, the
hooks, the registry-driven tests, the methods table of the docs) reads these.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Dict, Mapping, Optional

from detectron2.config import CfgNode

from .contract import ResultKind

__all__ = [
    "ANCHOR_ARGUMENT",
    "MatcherBase",
    "MethodSpec",
    "config_key",
    "config_node",
    "hyperparameters",
    "uses_anchors",
]

ANCHOR_ARGUMENT = "anchor_scale"
"""The argument of a method with anchor boxes: their side, in strides of the point's
level."""

_KEY_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class MethodSpec:
    """What the project needs to know about a method besides its algorithm.

    Attributes:
        name: the registered name, the value of ``MODEL.MATCHER.NAME``; lower case.
        result: the kind of ``MatchResult`` it returns (``ResultKind``); the loss that
            consumes it is chosen from this.
        detector: the ``MODEL.FCOS`` settings its paper trains it with, where they differ
            from the defaults of ``add_lada_config`` (detectron2's FCOS), e.g.
            ``{"AUX_BRANCH": "iou"}``. The start-up warning names a config whose detector
            differs (``lada/modeling/presets.py``, ``DETECTOR_KEYS``); ``{}`` is
            detectron2's FCOS. None: no preset, no warning.
        node: the config node ``MODEL.MATCHER.<node>`` of its hyperparameters; empty for
            ``name.upper()``.
    """

    name: str
    result: ResultKind = ResultKind.HARD
    detector: Optional[Mapping[str, Any]] = None
    node: str = ""

    def __post_init__(self) -> None:
        if self.detector is not None:
            object.__setattr__(self, "detector", MappingProxyType(dict(self.detector)))
        if not (self.name.isidentifier() and self.name == self.name.lower()):
            raise ValueError(f"MethodSpec.name must be a lower-case identifier, got '{self.name}'")
        if not isinstance(self.result, ResultKind):
            raise TypeError(f"MethodSpec.result must be a ResultKind, got {self.result!r}")
        node = self.config_node
        if not (node.isidentifier() and node == node.upper()) or node == "NAME":
            raise ValueError(f"MethodSpec.node must be an upper-case identifier other than "
                             f"NAME, got '{node}'")

    @property
    def config_node(self) -> str:
        """``MODEL.MATCHER.<config_node>`` holds the method's keys."""
        return self.node or self.name.upper()


def hyperparameters(cls: type) -> Dict[str, Any]:
    """The keyword-only arguments of ``cls.__init__`` and their defaults, in order: the
    method's hyperparameters. A ``TypeError`` names an argument without a default, a
    positional one, or a default that a yacs key cannot hold (bool, int, float, str, or a
    list / tuple of those)."""
    found = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (inspect.Parameter.VAR_POSITIONAL,
                                                 inspect.Parameter.VAR_KEYWORD):
            continue  # object.__init__'s: a method without hyperparameters
        default = parameter.default
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or default is inspect.Parameter.empty:
            raise TypeError(f"{cls.__name__}.__init__: argument '{name}' must be keyword-only "
                            "with a default (the default of its config key)")
        items = default if isinstance(default, (list, tuple)) else (default,)
        if not all(isinstance(item, _KEY_TYPES) for item in items):
            raise TypeError(f"{cls.__name__}.__init__: the default of '{name}' ({default!r}) "
                            "must be a bool, int, float, str or a list of those, as a config key")
        found[name] = default
    return found


def config_key(cls: type, argument: str) -> str:
    """The full config key of ``argument`` of matcher class ``cls``."""
    return f"MODEL.MATCHER.{cls.METHOD.config_node}.{argument.upper()}"


def config_node(cls: type) -> CfgNode:
    """The ``MODEL.MATCHER.<NODE>`` node of matcher class ``cls``, holding its defaults."""
    return CfgNode({name.upper(): default for name, default in hyperparameters(cls).items()})


def uses_anchors(cls: type) -> bool:
    """Whether matcher class ``cls`` has anchor boxes (an ``anchor_scale`` argument)."""
    return ANCHOR_ARGUMENT in hyperparameters(cls)


class MatcherBase:
    """Base of the matchers: the declaration ``METHOD`` and the generic ``from_config``
    (detectron2's ``@configurable`` calls it), which reads each keyword argument of
    ``__init__`` from ``MODEL.MATCHER.<NODE>.<ARGUMENT>``. A method may override it."""

    METHOD: ClassVar[MethodSpec]

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        node = cfg.MODEL.MATCHER[cls.METHOD.config_node]
        return {name: node[name.upper()] for name in hyperparameters(cls)}
