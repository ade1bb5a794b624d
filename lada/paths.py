"""Where the repository's own files are: its root, which holds ``configs/``, ``README.md``
and ``train_net.py`` (the package is used from a clone, installed in editable mode)."""
from pathlib import Path

__all__ = ["REPO"]

REPO = Path(__file__).resolve().parents[1]
