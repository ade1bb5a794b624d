"""lada-det: pluggable label assignment for FCOS-style detectors on detectron2.

Importing ``lada`` prepares detectron2 (``lada.compat``) and registers the
meta-architecture, the backbone builder and every matcher.
"""
from . import compat  # noqa: F401  (must precede every detectron2 import)
from . import matchers, modeling  # noqa: F401  (registration)
from .config import add_lada_config

__all__ = ["add_lada_config"]
