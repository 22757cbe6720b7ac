"""``OUT/warnings.json``: every image's parse and dedupe warnings, kept in the run folder.

The CLI prints warnings to stderr as they happen; this file keeps them for later review (``visionkit
report``). It lists only images that have warnings, sorted by file name, and is rewritten on every run
(a rerun recomputes every image's warnings from its saved answer)::

    {"version": 1, "images": [{"file": "a/x.jpg", "key": "x",
                               "warnings": [{"index": 3, "field": "mask", "reason": "..."}]}]}
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..media.atomic import write_json_atomic

__all__ = ["WARNINGS_FILE", "WarningLog"]

WARNINGS_FILE = "warnings.json"


class WarningLog:
    """Collects the warnings of each image result; :meth:`write` saves them as ``warnings.json``."""

    def __init__(self) -> None:
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()

    def add(self, result: Any) -> None:
        """Record one :class:`visionkit.run.image_step.ImageResult` (anything with file, key and warnings)."""
        warnings = getattr(result, "warnings", ())
        if not warnings:
            return
        entry = {"file": result.file, "key": result.key,
                 "warnings": [{"index": w.index, "field": w.field, "reason": w.reason} for w in warnings]}
        with self._lock:
            self._entries[result.file] = entry

    def wrap(self, on_image: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """An ``on_image`` callback that records the result, then calls ``on_image`` (if any)."""
        def hook(result: Any) -> None:
            self.add(result)
            if on_image is not None:
                on_image(result)
        return hook

    def write(self, out: str | Path) -> Path:
        """Write ``out/warnings.json`` atomically; returns its path. Raises ExportError when it cannot."""
        with self._lock:
            images = [self._entries[k] for k in sorted(self._entries)]
        return write_json_atomic(Path(out) / WARNINGS_FILE, {"version": 1, "images": images}, indent=1)

    def save(self, out: str | Path, errors: list[str]) -> None:
        """:meth:`write`, but a failure (a full disk) is appended to ``errors`` instead of raised, and the
        old file is removed so it cannot mislead."""
        try:
            self.write(out)
        except ExportError as exc:
            with contextlib.suppress(OSError):
                (Path(out) / WARNINGS_FILE).unlink()
            errors.append(f"{exc} (the old {WARNINGS_FILE} was removed, so it cannot mislead)")
