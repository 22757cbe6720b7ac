"""The run's spool: each finished image's annotations, appended as one JSON line, read back at the end.

It is an unlinked temp file in the output folder, so memory stays flat in the number of images and nothing
is left behind, even after ``kill -9``. When the disk refuses a write (``ENOSPC``, a quota), the spool
moves to memory for the rest of the run, with what it held so far, instead of failing: the run goes on,
the caller says so once (:attr:`Spool.fallback`), and the records are still read back by offset.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["Records", "Spool"]


def _write_all(fh, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = fh.write(view)
        if not written:  # pragma: no cover - a raw file that writes nothing without raising
            raise OSError("the spool accepted no bytes")
        view = view[written:]


class Spool:
    """Append-only bytes with offsets. Not thread-safe: the pipeline writes it from one thread."""

    def __init__(self, folder: Path):
        self._fh = tempfile.TemporaryFile(dir=folder, buffering=0)  # noqa: SIM115 - closed by close()
        self.fallback: str | None = None  # why the spool moved to memory, once it did

    def append(self, data: bytes) -> tuple[int, int]:
        """Append ``data``; returns ``(offset, size)`` for :meth:`read_at`."""
        start = self._fh.seek(0, os.SEEK_END)
        try:
            _write_all(self._fh, data)
        except OSError as exc:
            if self.fallback is not None:
                raise
            self._to_memory(start)
            self.fallback = f"cannot write the spool in the output folder ({exc}); keeping it in memory"
            start = self._fh.seek(0, os.SEEK_END)
            _write_all(self._fh, data)
        return start, len(data)

    def read_at(self, offset: int, size: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.read(size)

    # File-like access, for readers written against the plain temp file.
    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _to_memory(self, keep: int) -> None:
        """Move the first ``keep`` bytes (the complete records) to memory; a partial one is dropped."""
        old = self._fh
        old.seek(0)
        kept = old.read(keep) if keep else b""
        memory = io.BytesIO()
        memory.write(kept)
        self._fh = memory
        with contextlib.suppress(OSError):
            old.close()


class Records:
    """Which images have a record in the spool, where, and their sizes: compact arrays indexed by the
    image's position in the run (about 30 bytes an image, instead of a dict entry and tuple each), so
    ``annotations.json`` can list the images without reading every record twice."""

    def __init__(self, spool: Spool, names: Sequence[str]):
        self.spool = spool
        self.names = names  # each image's file_name, by index
        count = len(names)
        self._start = array("q", bytes(8 * count))
        self._size = array("q", bytes(8 * count))  # 0: no record
        self._wh = array("q", bytes(16 * count))
        self._points = array("q")  # indices of the records that hold points (rare)
        self.count = 0

    def add(self, index: int, line: bytes, width: int, height: int, points: bool) -> None:
        """Append image ``index``'s record (``line``, JSON) to the spool; ``points``: it holds points."""
        self._start[index], self._size[index] = self.spool.append(line)
        self._wh[2 * index], self._wh[2 * index + 1] = int(width), int(height)
        if points:
            self._points.append(index)
        self.count += 1

    def __bool__(self) -> bool:
        return self.count > 0

    def indices(self) -> Iterator[int]:
        """The images with a record, in input order."""
        return (i for i, size in enumerate(self._size) if size)

    def image(self, index: int) -> tuple[str, int, int]:
        """``(file_name, width, height)`` of a recorded image."""
        return self.names[index], self._wh[2 * index], self._wh[2 * index + 1]

    def line(self, index: int) -> bytes:
        return self.spool.read_at(self._start[index], self._size[index])

    def read(self, index: int) -> dict:
        return json.loads(self.line(index))

    def annotations(self, index: int) -> list:
        """The record's annotations: ``[label, JSON text]`` pairs (see :mod:`visionkit.run.results`)."""
        return self.read(index)["annotations"]

    def with_points(self) -> Iterator[dict]:
        """The records that hold points, in input order."""
        return (self.read(i) for i in sorted(self._points))
