"""Counting work instead of timing it: the Python lines executed inside visionkit while a call runs.

A deterministic measure of how the work grows with the input, so tests can assert linear scaling
without a clock: run the same call on an input n and 4n long, and compare the counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PACKAGE = str(Path(__file__).resolve().parents[1] / "visionkit")


def visionkit_lines(fn: Callable[[], Any]) -> tuple[int, Any]:
    """``(lines executed in visionkit's own modules, fn's result)``, counted in this thread only."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def global_(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(_PACKAGE) else None

    old = sys.gettrace()
    sys.settrace(global_)
    try:
        result = fn()
    finally:
        sys.settrace(old)
    return count, result


def growth(make: Callable[[int], Callable[[], Any]], n: int, factor: int = 4) -> float:
    """How many times more lines ``make(n * factor)()`` runs than ``make(n)()``: about ``factor`` for
    linear work, ``factor ** 2`` for quadratic."""
    small, _ = visionkit_lines(make(n))
    large, _ = visionkit_lines(make(n * factor))
    return large / max(small, 1)
