"""Library warnings (``warnings.warn``) shown as one plain line each, not as a source-file traceback."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TextIO

__all__ = ["plain_warnings"]


@contextlib.contextmanager
def plain_warnings(stream: TextIO) -> Iterator[None]:
    """While active, visionkit's warnings print as ``visionkit: warning: MESSAGE`` on ``stream``; others as
    Python prints them. Each distinct message is shown once per run (Python's default filter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if category.__module__.startswith("visionkit"):
                stream.write(f"visionkit: warning: {message}\n")
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
