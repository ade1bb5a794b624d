"""Registry of label-assignment methods, built by name from the config."""
from __future__ import annotations

from typing import List

from detectron2.config import CfgNode
from fvcore.common.registry import Registry

from .declaration import MethodSpec, hyperparameters
from .validation import InvalidArgument

__all__ = ["MATCHER_REGISTRY", "build_matcher", "matcher_class", "register_matcher",
           "registered_matchers"]

MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = """
Label-assignment methods (``contract.Matcher``), registered under their
``METHOD.name``. A registered class is built as ``cls(cfg)`` (detectron2's
``@configurable``) and called with a ``MatchInputs``, returning a ``MatchResult``.
"""


def register_matcher(cls: type) -> type:
    """Class decorator registering a matcher under ``cls.METHOD.name``, the value users give
    to ``MODEL.MATCHER.NAME``. The class must declare ``METHOD`` (a ``MethodSpec``) and
    take its hyperparameters as keyword-only arguments with defaults; its config node
    must not be another method's."""
    spec = cls.__dict__.get("METHOD")
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"matcher class {cls.__name__} must declare METHOD = MethodSpec(name=...) "
                        "(lada.matchers.MethodSpec) in its own body")
    hyperparameters(cls)
    taken = {other.METHOD.config_node: name for name, other in MATCHER_REGISTRY}
    if spec.name in MATCHER_REGISTRY:
        raise ValueError(f"matcher '{spec.name}' ({cls.__qualname__}) is already registered "
                         f"by {MATCHER_REGISTRY.get(spec.name).__qualname__}")
    if spec.config_node in taken:
        raise ValueError(f"matcher '{spec.name}': config node MODEL.MATCHER.{spec.config_node} "
                         f"is already the node of '{taken[spec.config_node]}'")
    MATCHER_REGISTRY._do_register(spec.name, cls)
    return cls


def registered_matchers() -> List[str]:
    """The registered names, sorted."""
    return sorted(name for name, _ in MATCHER_REGISTRY)


def matcher_class(name: str) -> type:
    """The class registered under ``name`` (a ``MODEL.MATCHER.NAME`` value)."""
    if name not in MATCHER_REGISTRY:
        known = ", ".join(registered_matchers())
        raise KeyError(f"MODEL.MATCHER.NAME: unknown matcher '{name}'; registered: {known} "
                       "(a matcher of your own: CUSTOM_IMPORTS or --import, docs/methods/"
                       "adding-a-method.md)")
    return MATCHER_REGISTRY.get(name)


def build_matcher(cfg: CfgNode):
    """Builds the matcher named by ``cfg.MODEL.MATCHER.NAME``; an invalid hyperparameter is
    reported by its config key."""
    cls = matcher_class(cfg.MODEL.MATCHER.NAME)
    try:
        return cls(cfg)
    except InvalidArgument as error:
        if not set(error.names) <= set(hyperparameters(cls)):
            raise
        raise error.under_node(f"MODEL.MATCHER.{cls.METHOD.config_node}") from None
