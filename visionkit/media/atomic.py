"""Atomic file writes: write a temp file in the target's folder, fsync, rename over the target, then
fsync the folder (POSIX), so the new name itself survives a power loss.

A reader sees the old file or the new one, never half of one, even after ``kill -9``. The temp file is
created with mode ``0o666`` and the kernel applies the umask, so the new file gets the usual permissions,
not ``mkstemp``'s private ``0o600`` (and the process umask is never changed, which would race with other
threads creating files).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ExportError

__all__ = ["AtomicFile", "FolderSync", "StreamWriter", "SyncBatch", "atomic_open", "write_bytes_atomic",
           "write_json_atomic"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new, uniquely named file beside ``path``; return its descriptor and path."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temp file name beside {path}")


def _sync_folder(folder: Path) -> None:
    """fsync ``folder``, so the rename in it survives a power loss (POSIX; elsewhere a folder cannot be
    opened for it, and the rename is left to the file system)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. no read permission on the folder: the file itself is synced and complete
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder (EINVAL)
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = True,
                folders: FolderSync | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (UTF-8 text) or ``"wb"``. On an exception the temp file is removed and ``path`` is
    left as it was. OS errors become :class:`ExportError` naming the path. ``durable=False`` skips the
    fsyncs (file and folder): readers still never see half a file, but after a power loss the new file
    may be lost; only for files that can be made again (overlays), where the fsync cost more wall time
    than drawing them. ``folders``: the file is fsynced, but the fsync of its folder (which makes the
    rename itself survive a power loss) is left to ``folders``, which does it for many files at once.
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from exc
    replaced = False
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        replaced = True
        if durable and folders is not None:
            folders.written(path.parent)
        elif durable:
            _sync_folder(path.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from exc
    finally:
        if not replaced:
            with contextlib.suppress(OSError):  # keep the error that brought us here
                os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True,
                       folders: FolderSync | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (``durable``, ``folders``: as :func:`atomic_open`)."""
    with atomic_open(path, "wb", durable=durable, folders=folders) as fh:
        fh.write(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None,
                      folders: FolderSync | None = None) -> Path:
    """Write JSON to ``path`` atomically: a temp file in the same folder, fsync, then ``os.replace``
    (``folders``: as :func:`atomic_open`).

    Raises:
        ExportError: naming the path, when ``obj`` is not JSON: a value of another type, a string that is
            not UTF-8 (a lone surrogate), NaN or an infinity (``json`` would write the non-JSON tokens
            ``NaN``/``Infinity``, which strict readers refuse: RFC 8259 section 6), or nesting deeper than
            the encoder can follow. Nothing is written then, not even a temp file.
    """
    try:
        # encoded here, before any file is opened, so nothing half-written is ever left behind
        data = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError; so is allow_nan's
        raise ExportError(f"cannot write {path}: {exc}") from exc
    except RecursionError:
        raise ExportError(f"cannot write {path}: the data is nested too deeply to encode as JSON") from None
    with atomic_open(path, "wb", folders=folders) as fh:
        fh.write(data)
    return Path(path)


class StreamWriter:
    """A writer used as a ``with`` block: :meth:`close` on a clean exit, :meth:`discard` on an exception."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


class AtomicFile(StreamWriter):
    """A file written piece by piece, in memory that does not grow with it, and put in place atomically by
    :meth:`close` (as :func:`atomic_open`, ``"wb"``); :meth:`discard` (or an exception inside a ``with``)
    removes the temp file and leaves ``path`` as it was."""

    def __init__(self, path: str | os.PathLike, *, durable: bool = True) -> None:
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        self._fh = self._stack.enter_context(atomic_open(self.path, "wb", durable=durable))
        self._broken: str | None = None  # a write failed: the temp file may end in half a piece

    def write(self, data: bytes) -> None:
        if self._broken is not None:
            raise ExportError(f"cannot write {self.path}: an earlier write failed ({self._broken})")
        try:
            self._fh.write(data)
        except OSError as exc:
            self._broken = str(exc)
            raise ExportError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        """Put the file in place (a no-op once closed or discarded).

        Raises:
            ExportError: a write failed earlier (the file is discarded: it could hold half a piece).
        """
        if self._broken is not None:
            self.discard()
            raise ExportError(f"cannot write {self.path}: an earlier write failed ({self._broken})")
        self._stack.close()

    def discard(self) -> None:
        """Drop what was written (a no-op once closed or discarded)."""
        gone = _Discarded()
        self._stack.__exit__(_Discarded, gone, None)


class _Discarded(Exception):
    """Thrown into :func:`atomic_open` by :meth:`AtomicFile.discard`: unwinds it without replacing."""


class FolderSync:
    """The folder half of many durable atomic writes, done together: each file is fsynced before its
    rename (its data is on disk), and the folders it was renamed in are fsynced (its NAME is on disk) at
    most ``interval`` seconds later, on a timer thread, instead of once per file: the two folder fsyncs of
    a saved answer cost about as much CPU and wall time as the rest of saving it (docs/performance.md).

    A ``kill -9`` loses nothing (a rename is done once ``os.replace`` returns); a power loss loses at most
    the names of the files renamed in the last ``interval`` seconds, plus the time one sync takes. After
    :meth:`close` (which syncs what is pending), every write syncs its folder at once, as before. Safe to
    use from many threads."""

    def __init__(self, interval: float = 1.0):
        self.interval = float(interval)
        self._dirty: set[Path] = set()
        self._lock = threading.Lock()
        self._syncing = threading.Lock()  # one sync at a time; a write never waits for one
        self._timer: threading.Timer | None = None
        self._closed = False

    def written(self, folder: Path) -> None:
        """A durable file was just renamed in ``folder``: its rename is made durable by the next sync."""
        with self._lock:
            if not self._closed:
                self._dirty.add(folder)
                if self._timer is None:
                    self._timer = threading.Timer(self.interval, self.sync)
                    self._timer.daemon = True
                    self._timer.start()
                return
        _sync_folder(folder)

    def sync(self) -> None:
        """fsync every folder written in since the last sync."""
        with self._syncing:
            with self._lock:
                folders, self._dirty, self._timer = self._dirty, set(), None
            for folder in sorted(folders):
                _sync_folder(folder)

    def close(self) -> None:
        """Sync what is pending; from now on every write syncs its folder at once."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.sync()


class SyncBatch:
    """Many atomic writes made durable together: each file is written and renamed into place at once (a
    reader never sees half a file), and :meth:`sync` flushes them all with ONE ``syncfs`` per file system
    (Linux) instead of an fsync of each file and its folder, which cost more than writing 10,000 small
    label files. Where ``syncfs`` is missing, each write is durable on its own, as
    :func:`write_bytes_atomic`. ``syncfs``: https://man7.org/linux/man-pages/man2/sync.2.html
    """

    def __init__(self) -> None:
        self._syncfs = _syncfs()
        self._folders: dict[int, Path] = {}  # st_dev -> one folder written on that file system

    def write_bytes(self, path: str | os.PathLike, data: bytes) -> Path:
        path = Path(path)
        write_bytes_atomic(path, data, durable=self._syncfs is None)
        if self._syncfs is not None and len(self._folders) < 8:  # one folder per file system suffices
            with contextlib.suppress(OSError):
                self._folders.setdefault(os.stat(path.parent).st_dev, path.parent)
        return path

    def sync(self) -> None:
        """Make every file written so far durable. Raises ExportError when the file system reports an
        error writing them back."""
        for folder in self._folders.values():
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                if self._syncfs(fd) != 0:
                    import ctypes

                    err = ctypes.get_errno()
                    raise ExportError(f"cannot write the files in {folder}: {os.strerror(err)}")
            finally:
                os.close(fd)
        self._folders.clear()


def _syncfs() -> Any:
    """libc's ``syncfs``, or None (not Linux, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
