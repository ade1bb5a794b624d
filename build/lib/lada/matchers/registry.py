"""Registry of label-assignment methods, built by name from the config."""
from __future__ import annotations

from detectron2.config import CfgNode
from fvcore.common.registry import Registry

from .contract import declared_soft

__all__ = ["MATCHER_REGISTRY", "build_matcher", "gives_soft_results", "matcher_class",
           "register_matcher"]

MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = """
Label-assignment methods (``contract.Matcher``). A registered class is built as
``cls(cfg)`` (detectron2's ``@configurable``) and called with a ``MatchInputs``, returning a
``MatchResult``. Its class attribute ``SOFT`` (a bool) declares whether those results
carry ``PairWeights``.
"""


def register_matcher(name: str):
    """Class decorator registering a matcher under ``name``, the value users give to
    ``MODEL.MATCHER.NAME`` (fvcore's ``register()`` would use the class name). The class
    must declare ``SOFT``, the kind of result it gives."""

    def register(cls):
        declared_soft(cls)
        MATCHER_REGISTRY._do_register(name, cls)
        return cls

    return register


def matcher_class(name: str) -> type:
    """The class registered under ``name`` (a ``MODEL.MATCHER.NAME`` value)."""
    if name not in MATCHER_REGISTRY:
        known = ", ".join(sorted(k for k, _ in MATCHER_REGISTRY))
        raise KeyError(f"MODEL.MATCHER.NAME: unknown matcher '{name}'; registered: {known}")
    return MATCHER_REGISTRY.get(name)


def gives_soft_results(name: str) -> bool:
    """Whether matcher ``name`` returns soft ``MatchResult``s (``PairWeights``, DW): its
    class's ``SOFT``."""
    return declared_soft(matcher_class(name))


def build_matcher(cfg: CfgNode):
    """Builds the matcher named by ``cfg.MODEL.MATCHER.NAME``."""
    return matcher_class(cfg.MODEL.MATCHER.NAME)(cfg)
