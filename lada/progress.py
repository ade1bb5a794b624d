"""Progress bars that read well in a terminal and in a log file.

tqdm redraws its bar in place with carriage returns. In a terminal that is one line; in a
log file or a pipe (``python -m lada.study ... > study.log 2>&1``, a batch job) every
redraw lands on the same physical line, which grows to megabytes over a long study.
:func:`progress_bar` is tqdm's bar on a terminal, and elsewhere one plain line per redraw,
at most one every ``LOG_INTERVAL_SECONDS``.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_SECONDS", "progress_bar"]

LOG_INTERVAL_SECONDS = 30.0
"""Least time between two progress lines written to a file or a pipe."""


class _LineStream:
    """Writes each of tqdm's redraws (``"\\r" + bar``) to ``stream`` as its own line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        for redraw in text.split("\r"):
            redraw = redraw.rstrip()
            if redraw:
                self.stream.write(redraw + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Optional[Iterable] = None, *, file: Optional[TextIO] = None,
                 **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` writing to ``file`` (default standard error): the bar as
    tqdm draws it on a terminal; one line per redraw, at most one every
    ``LOG_INTERVAL_SECONDS`` (and at the end), anywhere else."""
    stream = sys.stderr if file is None else file
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs.setdefault("mininterval", LOG_INTERVAL_SECONDS)
    kwargs.setdefault("maxinterval", max(kwargs["mininterval"], 10.0))
    return tqdm(iterable, file=_LineStream(stream), ascii=True, **kwargs)
