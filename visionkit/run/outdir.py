"""The output folder's housekeeping: one run at a time (a lock), no stale temp files, and never a worse
dataset silently.

A rerun never replaces a dataset with a worse one silently (see :func:`visionkit.label`):

* when no image succeeds and the previous ``annotations.json`` has images, it is kept unchanged and the
  summary says so (``LabelSummary.kept_previous``);
* otherwise the new file is written, and when images that had annotations in the previous file have none
  now (they failed, or were not in this run), they are listed (``LabelSummary.lost_images``) and the
  previous file is kept as ``annotations.previous.json``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import ConfigError, ExportError, InputError
from ..media.atomic import atomic_open
from ..media.filekind import open_regular, read_regular_text
from .spool import Spool

__all__ = ["INDEX_NAME", "LOCK_NAME", "PREVIOUS_NAME", "clean_stale_temps", "keep_copy", "keep_previous",
           "lock_output", "prepare_output", "previous_counts", "write_index"]

PREVIOUS_NAME = "annotations.previous.json"


INDEX_NAME = ".annotations.index.json"


def write_index(path: Path, counts: Iterable[tuple[str, int]]) -> None:
    """Record ``{file_name: annotation count}`` (``counts``: the pairs, streamed) of the COCO file just
    written at ``path``, with its size and mtime, so the next run reads the counts without parsing the
    whole file."""
    stat = path.stat()
    with atomic_open(path.with_name(INDEX_NAME)) as fh:
        fh.write(f'{{"size": {stat.st_size}, "mtime_ns": {stat.st_mtime_ns}, "counts": {{')
        for n, (name, count) in enumerate(counts):
            fh.write(f'{", " if n else ""}{json.dumps(name, ensure_ascii=False)}: {int(count)}')
        fh.write("}}")


def _indexed_counts(path: Path) -> dict[str, int] | None:
    try:
        stat = path.stat()
        index = json.loads(read_regular_text(path.with_name(INDEX_NAME)))
        if (index["size"], index["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return {str(k): int(v) for k, v in index["counts"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InputError):
        pass
    return None


def previous_counts(path: Path) -> dict[str, int] | None:
    """``{file_name: annotation count}`` of the COCO file at ``path``, or None when there is none (or it
    cannot be read as COCO: nothing worth protecting then). From the index the run wrote beside it when
    that still matches the file; otherwise the file is parsed, each annotation reduced to its image id as
    it is read."""
    indexed = _indexed_counts(path)
    if indexed is not None:
        return indexed

    def reduce(obj: dict):
        if "image_id" in obj:  # an annotation
            return obj["image_id"]
        if "file_name" in obj and "id" in obj:  # an image
            return obj["id"], str(obj["file_name"])
        return obj if ("images" in obj or "annotations" in obj) else None  # the top level; drop the rest

    try:
        with open_regular(path, "r", encoding="utf-8-sig") as fh:  # a FIFO: not a hang; BOM: an editor's
            data = json.load(fh, object_hook=reduce)
        names = dict(data["images"])
        counts = dict.fromkeys(names.values(), 0)
        for image_id in data["annotations"]:
            name = names.get(image_id)
            if name is not None:
                counts[name] += 1
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return None
    return counts


def keep_copy(path: Path, dest: Path) -> None:
    """Make ``dest`` a copy of ``path`` atomically (a hard link when the file system allows it)."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")  # the atomic.py naming
    try:
        os.link(path, tmp)
        os.replace(tmp, dest)
        return
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    with open(path, "rb") as src, atomic_open(dest, "wb") as out:
        shutil.copyfileobj(src, out)


def keep_previous(path: Path, counts: dict[str, int]) -> str | None:
    """Keep the COCO file at ``path`` (``counts``: its annotations per image) as ``annotations.previous.json``
    before a lossier file replaces it, unless the copy already there annotates more images: a second lossy
    rerun must not replace the best copy with a worse one. Returns a note when the older copy was kept."""
    dest = path.with_name(PREVIOUS_NAME)
    older = previous_counts(dest) if dest.is_file() else None
    have = sum(1 for n in counts.values() if n)
    if older is not None and (kept := sum(1 for n in older.values() if n)) > have:
        return (f"{dest.name} was left as it was: it annotates {kept} images, more than the {have} of the "
                f"{path.name} this run replaced")
    keep_copy(path, dest)
    return None


# -- stale temp files ------------------------------------------------------------------------------------

#: The temp names of visionkit.media.atomic: ``.<target name>.<12 hex digits>.tmp``.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
_TEMP_FOLDERS = (".", "overlays", "responses", "responses/.request", "batch")


def clean_stale_temps(out: Path) -> int:
    """Remove the temp files that an interrupted atomic write (``kill -9``, power loss) left in ``out``
    and its visionkit sub-folders. Only names of :mod:`visionkit.media.atomic`'s pattern are touched, and only
    while the folder is locked (:func:`lock_output`), so no live write is removed. Returns the count."""
    removed = 0
    for sub in _TEMP_FOLDERS:
        try:
            entries = list(os.scandir(out / sub))
        except OSError:
            continue
        for entry in entries:
            if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


# -- the output folder lock -------------------------------------------------------------------------------

LOCK_NAME = ".visionkit.lock"


@contextlib.contextmanager
def lock_output(out: Path) -> Iterator[bool]:
    """Hold an advisory lock on ``out`` for the duration of a run; yields True once it is held.

    ``flock`` on Linux and macOS, ``msvcrt.locking`` on Windows; the lock goes with the process, so a
    killed run never leaves a stale lock. The lock file records who holds it, so a second run fails at
    once with :class:`ConfigError` naming the other process instead of sending the same requests again.
    On a file system without locks (some network mounts) it yields False and the run goes on unlocked.
    """
    path = Path(out) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {out}: {exc}") from exc
    try:
        state = _try_lock(fd)
        if state == "held":
            raise ConfigError(f"another visionkit run is writing to {out} ({_holder(fd)}); wait for it to "
                              "finish or choose another --out")
        if state == "locked":
            _write_holder(fd)
        yield state == "locked"
    finally:
        os.close(fd)  # releases the lock


#: flock/msvcrt errors that mean "another process holds it" (others mean the file system has no locks).
_HELD = {errno.EAGAIN, errno.EACCES, getattr(errno, "EWOULDBLOCK", errno.EAGAIN),
         getattr(errno, "EDEADLK", -1)}


def _try_lock(fd: int) -> str:
    """"locked", "held" (another process has it) or "unsupported" (the file system has no locks)."""
    try:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return "held" if exc.errno in _HELD else "unsupported"
    return "locked"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its process id could not be read"


def _write_holder(fd: int) -> None:
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode("utf-8")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, info)


def prepare_output(out: Path, cleanup: contextlib.ExitStack, notify: Callable[[str], None], *, overlays: bool,
                   online: bool) -> Spool:
    """Create a run's output folders, lock them for the run (released by ``cleanup``), remove stale temp
    files; returns the run's spool. ``notify`` hears what the user should know."""
    try:
        for sub in (["overlays"] if overlays else []) + (["responses"] if online else []):
            (out / sub).mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {out}: {exc}") from exc
    if cleanup.enter_context(lock_output(out)):
        removed = clean_stale_temps(out)  # safe only under the lock: no other run is writing here
        if removed:
            notify(f"removed {removed} temp files left in {out} by an interrupted run")
    else:
        notify(f"the file system of {out} has no file locks: this run is not protected from another one "
               "writing there at the same time")
    try:
        return cleanup.enter_context(Spool(out))
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {out}: {exc}") from exc
