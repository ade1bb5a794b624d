"""Your own modules, imported before a config is built (``CUSTOM_IMPORTS``), so that a
matcher (or any component) they register is there without editing the package, as
mmdetection's ``custom_imports`` (docs/methods/adding-a-method.md).

An entry is a Python file (``path/to/my_matcher.py``, relative to the working directory)
or an importable module name (``my_package.matchers``). Importing registers what the
module registers (``@register_matcher``); ``add_lada_config`` then adds its keys.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable, List, Sequence

from detectron2.config import CfgNode

__all__ = ["import_custom", "imports_named_by"]

KEY = "CUSTOM_IMPORTS"
"""The top-level config key listing the modules."""


def import_custom(entries: Iterable[str]) -> List[str]:
    """Imports each entry once (a file under the module name of its stem, a module by
    name) and returns the entries as a config records them: files as absolute paths, so
    that a saved run config imports them from any folder."""
    recorded = []
    for entry in entries:
        entry = str(entry)
        if entry.endswith(".py"):
            path = Path(entry).resolve()
            _import_file(path, entry)
            entry = str(path)
        else:
            try:
                importlib.import_module(entry)
            except ImportError as error:
                raise ImportError(f"{KEY}: cannot import module '{entry}' ({error}); give a "
                                  "module on the Python path or a path ending in .py") from error
        if entry not in recorded:
            recorded.append(entry)
    return recorded


def _import_file(path: Path, entry: str) -> None:
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return
        raise ImportError(f"{KEY}: '{entry}' would be imported as module '{name}', which is "
                          f"already {getattr(loaded, '__file__', 'a built-in module')}; rename the file")
    if not path.is_file():
        raise FileNotFoundError(f"{KEY}: no file '{entry}' (from {Path.cwd()})")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def imports_named_by(config_file: str, opts: Sequence[str] = ()) -> List[str]:
    """The ``CUSTOM_IMPORTS`` of a yaml config (with its ``_BASE_`` files, as yacs merges
    them) and of the command line's ``KEY VALUE`` pairs, which wins as it does in yacs;
    read before the config is merged, since the modules may register the keys the
    config sets."""
    entries = CfgNode.load_yaml_with_base(config_file).get(KEY) if config_file else None
    opts = list(opts)
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == KEY:
            entries = CfgNode._decode_cfg_value(value)  # as merge_from_list reads it
    if isinstance(entries, str):
        return [entries]
    return list(entries or ())
