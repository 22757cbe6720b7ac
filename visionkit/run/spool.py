"""The run's spool: each finished image's annotations, appended as one JSON line, read back at the end.

It is an unlinked temp file in the output folder, so memory stays flat in the number of images and nothing
is left behind, even after ``kill -9``. When the disk refuses a write (``ENOSPC``, a quota), the spool
moves to memory for the rest of the run, with what it held so far, instead of failing: the run goes on,
the caller says so once (:attr:`Spool.fallback`), and the records are still read back by offset.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

__all__ = ["Spool"]


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
