"""What ``visionkit label`` shows on stderr while it runs: per-image lines and a one-line progress bar."""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import TextIO

from ..run.pipeline import ImageResult, Progress

__all__ = ["Reporter", "format_bar"]

_SEP = " \u00b7 "  # a middle dot between the fields


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


def format_bar(p: Progress, retries: int, width: int) -> str:
    """One progress line of at most ``width - 1`` characters, every number labelled:
    ``[####....] 3/8 images · 3 ok · 0 failed · 1 cached · 0 retries · 2 in flight · ETA 00:04``.

    When the terminal is narrow, the least useful fields go first (the bar, then in flight, retries,
    cached), and what still does not fit is cut."""
    finished = p.done + p.failed
    fields = [f"{finished}/{p.total} images", f"{p.done} ok", f"{p.failed} failed", f"{p.cached} cached",
              f"{retries} retries", f"{p.in_flight} in flight", f"ETA {_clock(p.eta)}"]
    droppable = [5, 4, 3]  # in flight, retries, cached
    limit = max(width - 1, 10)
    bar_width = 20

    def line(items: list[str], bar: bool) -> str:
        text = _SEP.join(items)
        if not bar:
            return text
        filled = int(bar_width * finished / max(p.total, 1))
        return f"[{'#' * filled}{'.' * (bar_width - filled)}] " + text

    items, bar = list(fields), True
    while len(line(items, bar)) > limit:
        if bar:
            bar = False
        elif droppable:
            items.pop(droppable.pop(0))
        else:
            return line(items, bar)[:limit]
    return line(items, bar)


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns  # $COLUMNS, else 80


class Reporter:
    """Per-image lines and a one-line progress bar on stderr (the bar only on a terminal)."""

    def __init__(self, stream: TextIO, quiet: bool, offline: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.offline = offline  # replaying: Ctrl-C waits for images in progress, not for paid requests
        self.bar = not quiet and stream.isatty()
        self._bar_shown = False
        self._last = 0.0
        self._lock = threading.Lock()
        self.live_retries = 0

    def retry(self, attempt: int, delay: float, reason: str) -> None:
        """Client hook (worker threads): count retries as they happen, for the bar."""
        with self._lock:
            self.live_retries += 1

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False

    def interrupt(self, in_flight: int) -> None:
        """First Ctrl-C: say at once what the run is waiting for."""
        self._clear()
        if self.offline:
            self.stream.write(f"interrupted: finishing the {in_flight} images in progress (press Ctrl-C "
                              "again to stop at once)\n")
        else:
            self.stream.write(f"interrupted: {in_flight} requests in flight; waiting for their answers so "
                              "they are saved (press Ctrl-C again to abort them)\n")
        self.stream.flush()

    def notice(self, text: str) -> None:
        self._clear()
        self.stream.write(f"note: {text}\n")

    def image(self, result: ImageResult) -> None:
        if result.overlay_error:
            self._clear()
            self.stream.write(f"OVERLAY NOT WRITTEN {result.file} (annotations kept): "
                              f"{result.overlay_error}\n")
        if not result.ok:
            self._clear()
            self.stream.write(f"FAILED {result.file} [{result.stage}] {result.error}: {result.reason}\n")
        elif result.warnings and not self.quiet:
            self._clear()
            for w in result.warnings:
                self.stream.write(f"warning {result.file}: {w}\n")

    def progress(self, p: Progress) -> None:
        if not self.bar:
            return
        now = time.monotonic()
        finished = p.done + p.failed
        if finished < p.total and now - self._last < 0.1:
            return
        self._last = now
        retries = max(p.retries, self.live_retries)
        self.stream.write("\r" + format_bar(p, retries, _width(self.stream)) + "\033[K")
        self.stream.flush()
        self._bar_shown = True

    def finish(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False


