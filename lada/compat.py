"""Everything that differs between detectron2 v0.6 (pure-Python build) and upstream main.

Import this module before anything from ``detectron2`` (``import lada`` does).

* Without the compiled extension ``detectron2._C`` (deformable conv, rotated boxes,
  ROIAlignRotated, the fast COCO evaluator), ``detectron2.layers`` cannot be imported.
  A stand-in module is registered instead; using any op of it raises
  :class:`MissingCompiledOpError` naming the op. FCOS-family models need none of them.
* :data:`HAS_COMPILED_OPS` tells the evaluator whether the fast COCO-eval op exists.
"""
from __future__ import annotations

import importlib.util
import types

__all__ = ["HAS_COMPILED_OPS", "MissingCompiledOpError"]


class MissingCompiledOpError(RuntimeError):
    """A compiled detectron2 op was used, but this detectron2 has no ``_C`` extension."""


class _MissingCompiledOps(types.ModuleType):
    """Stand-in for ``detectron2._C`` whose attributes raise a clear error when used."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingCompiledOpError(
            f"detectron2 compiled op '{name}' is unavailable: this detectron2 was installed "
            "without its C++/CUDA extension (detectron2._C). Models of lada do not need it; "
            "to use this op, install detectron2 from source (see README, 'Installation')."
        )


def _install_compiled_ops_stand_in() -> bool:
    """Returns whether the real ``detectron2._C`` is importable."""
    try:
        if importlib.util.find_spec("detectron2._C") is not None:
            return True
    except ImportError:
        return True
    import detectron2

    # Only the package attribute is set, for `from detectron2 import _C`: a plain
    # `import detectron2._C` keeps failing, so that detectron2's environment report
    # still says the extension is missing.
    detectron2._C = _MissingCompiledOps("detectron2._C")
    return False


HAS_COMPILED_OPS: bool = _install_compiled_ops_stand_in()
