"""Registry of label-assignment methods, built by name from the config."""
from __future__ import annotations

from detectron2.config import CfgNode
from fvcore.common.registry import Registry

__all__ = ["MATCHER_REGISTRY", "build_matcher", "register_matcher"]

MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = """
Label-assignment methods. A registered class is built as ``cls(cfg)`` (detectron2's
``@configurable``) and called with a ``MatchInputs``, returning a ``MatchResult``.
"""


def register_matcher(name: str):
    """Class decorator registering a matcher under ``name``, the value users give to
    ``MODEL.MATCHER.NAME`` (fvcore's ``register()`` would use the class name)."""

    def register(cls):
        MATCHER_REGISTRY._do_register(name, cls)
        return cls

    return register


def build_matcher(cfg: CfgNode):
    """Builds the matcher named by ``cfg.MODEL.MATCHER.NAME``."""
    name = cfg.MODEL.MATCHER.NAME
    if name not in MATCHER_REGISTRY:
        known = ", ".join(sorted(k for k, _ in MATCHER_REGISTRY))
        raise KeyError(f"MODEL.MATCHER.NAME: unknown matcher '{name}'; registered: {known}")
    return MATCHER_REGISTRY.get(name)(cfg)
