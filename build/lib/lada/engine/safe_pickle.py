"""A restricted unpickler for model-zoo weight files (``.pkl``).

``pickle.load`` calls whatever a file names (``os.system``, ``open``, ...): a crafted
``.pkl`` runs code before anything can look at its content. detectron2's and Detectron's
(Caffe2) model-zoo files hold only dicts of numpy arrays, strings and numbers, which need
five globals: numpy's array and scalar reconstructors, ``numpy.dtype``, ``numpy.ndarray``,
and, in protocol-2 files written by Python 3, ``_codecs.encode`` for bytes. This unpickler
resolves those (plus ``collections.OrderedDict`` and the builtin container types) and
refuses every other global, before calling anything. Object arrays are refused too (their
elements could be anything).
"""
from __future__ import annotations

import builtins
import codecs
import collections
import pickle
from typing import Any, BinaryIO, Callable

import numpy as np

__all__ = ["UnsafePickleError", "load_weights_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that weight files do not need."""


def _plain_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError(f"refused numpy dtype {dtype}: object arrays are not weights")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol 2 stores bytes as _codecs.encode(str, "latin1") for Python 2 readers.
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"refused _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


# (module, name) as written in the file -> what it resolves to. numpy 2 renamed
# numpy.core to numpy._core; Python 2 files write __builtin__ for builtins.
_NUMPY = {
    "multiarray": ("_reconstruct", "scalar"),
    "numeric": ("_frombuffer",),
}
_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{(module, name): getattr(builtins, name)
       for module in ("builtins", "__builtin__")
       for name in ("set", "frozenset", "bytearray")},
}


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        package, _, submodule = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and name in _NUMPY.get(submodule, ()):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refused to load global '{module}.{name}' (weight files need only numpy arrays "
            "and plain types; loading it would let the file run code)"
        )


def load_weights_pickle(file: BinaryIO) -> Any:
    """Unpickles ``file`` (latin1 for Python 2 strings, as detectron2) allowing only the
    globals of numpy arrays and plain types; raises :class:`UnsafePickleError` on any
    other global, before it is called."""
    return _WeightsUnpickler(file, encoding="latin1").load()
