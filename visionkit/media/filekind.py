"""What an input path is, before anything opens it: only regular files are read.

Opening a FIFO (named pipe) for reading waits for a writer, for ever; a character device such as
``/dev/zero`` never ends; a socket cannot be opened. A symbolic link that leads back to itself makes
``open`` fail with ``ELOOP`` and ``Path.resolve`` raise ``RuntimeError`` (Python 3.10-3.12). So every image
path is checked with one ``os.stat`` (:func:`check_regular`) before it is opened, and resolved with
:func:`resolved`, which never raises: such a file is one failed image with a reason, never a hang or an
aborted run.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..errors import InputError

__all__ = ["IMAGE_SUFFIXES", "OTHER_IMAGE_SUFFIXES", "check_regular", "image_names", "iter_images",
           "open_regular", "read_regular_bytes", "read_regular_text", "resolved"]

#: File suffixes (lower case, with the dot) treated as images when a folder is searched.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic",
                            ".heif"})

#: Suffixes of image formats visionkit does not read: counted when a folder is searched, so a run can say
#: how many such files it skipped.
OTHER_IMAGE_SUFFIXES = frozenset({".avif", ".jxl", ".jp2", ".j2k", ".svg", ".psd", ".ico", ".tga", ".exr",
                                  ".hdr", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raw",
                                  ".ppm", ".pgm", ".pbm", ".pnm"})


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_regular(path: str | os.PathLike, expected: str = "an image file") -> os.stat_result:
    """``os.stat(path)`` when ``path`` is (a link to) a regular file; else an :class:`InputError` naming
    the file and what it is: missing, a broken link, a link loop, a folder, a FIFO, a socket or a device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            try:
                target = f" {os.readlink(path)!r}"
            except OSError:
                target = ""
            raise InputError(f"{path}: a broken symbolic link (its target{target} does not exist); "
                             f"expected {expected}") from None
        raise InputError(f"{path}: file not found (expected {expected})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: a symbolic link loop (following it leads back to a link already "
                             f"followed), not {expected}") from None
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); expected {expected}") from None
    if stat.S_ISREG(st.st_mode):
        return st
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, not an image file")
    raise InputError(f"{path}: is {_kind(st.st_mode)}, not a regular file; only regular files are read "
                     f"(reading this one could wait for ever); expected {expected}")


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: str | os.PathLike, mode: str = "rb", *, expected: str = "a regular file",
                 encoding: str | None = None) -> IO:
    """``open(path, mode)`` (a read mode) of a file that must be a regular file, such as a file a run wrote
    (``keys.json``, ``annotations.json``, ...). A FIFO, device, socket or folder in its place raises an
    :class:`InputError` naming the file, what it is and ``expected``, instead of waiting for ever. The file
    is opened with ``O_NONBLOCK`` and then checked with ``fstat``, so a FIFO put in place between a check and
    the open cannot block either (a FIFO opened that way for reading returns at once: see
    https://man7.org/linux/man-pages/man7/fifo.7.html). A missing file raises ``FileNotFoundError`` as
    ``open`` does; other ``OSError`` too.
    """
    if any(c in mode for c in "wax+"):
        raise ValueError(f"open_regular reads only, got mode {mode!r}")
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
            why = "" if stat.S_ISDIR(st.st_mode) else " (reading it could wait for ever, so it is not read)"
            raise InputError(f"{path}: is {what}, not a regular file; expected {expected}{why}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, mode, encoding=encoding)  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise


def read_regular_text(path: str | os.PathLike, *, expected: str = "a regular file",
                      encoding: str = "utf-8-sig") -> str:
    """``Path(path).read_text(encoding)`` through :func:`open_regular`."""
    with open_regular(path, "r", expected=expected, encoding=encoding) as fh:
        return fh.read()


def read_regular_bytes(path: str | os.PathLike, *, expected: str = "a regular file") -> bytes:
    """``Path(path).read_bytes()`` through :func:`open_regular`."""
    with open_regular(path, "rb", expected=expected) as fh:
        return fh.read()


def resolved(path: str | os.PathLike) -> Path:
    """``Path(path).resolve()``, or the absolute path as it is when it cannot be resolved (a symbolic link
    loop raises ``RuntimeError`` on Python 3.10-3.12): the file then fails where it is opened, alone."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def iter_images(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                prune: Callable[[Path], bool] | None = None,
                skipped: Counter | None = None) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(path, root)`` pairs, in a stable order.

    A folder is searched recursively for files whose suffix (any case) is in :data:`IMAGE_SUFFIXES`; its
    files are sorted by their path relative to the folder, and ``root`` is the folder. Names starting with
    ``.`` (hidden files and folders, macOS ``._*`` files) are skipped, and so is every sub-folder for which
    ``prune(folder)`` is true (the folders given as inputs are not asked). A file given directly has its
    parent as ``root``. A file reached twice is listed once, at its first position. Entries are listed by
    name, not opened: a FIFO, a device or a symbolic link loop with an image suffix is listed, and fails
    alone when it is read (:func:`check_regular`).

    ``skipped``, when given, counts the files found in folders whose suffix names an image format that is
    not supported (:data:`OTHER_IMAGE_SUFFIXES`, e.g. ``{".avif": 2}``), so the caller can say so once.

    Raises:
        InputError: an input does not exist, or a file given directly is not an image type.
    """
    return [(root / name, root) for root, names in image_names(inputs, prune=prune, skipped=skipped)
            for name in names]


def image_names(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                prune: Callable[[Path], bool] | None = None, skipped: Counter | None = None,
                links: set[tuple[int, str]] | None = None) -> list[tuple[Path, list[str]]]:
    """:func:`iter_images` as ``[(root, [name relative to root, posix, ...]), ...]``: one string an image
    instead of two paths, so listing a million images costs tens of MB, not a GB. A file is told apart
    from one reached before by its resolved path; ``os.walk`` does not enter linked folders, so only a
    file that is itself a link is resolved (a ``realpath`` of every file cost a stat per path component).
    ``links``, when given, gets ``(index of the root in the result, name)`` of each listed file that is a
    symbolic link, so a caller need not ``lstat`` every image again to find them."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[tuple[Path, list[str]]] = []
    seen: set[str] = set()

    def add(names: list[str], name: str, real: str) -> None:
        if real not in seen:
            seen.add(real)
            names.append(name)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            names: list[str] = []
            real_root = str(resolved(path))
            for name, link in _walk(path, prune, skipped):
                if link and links is not None and str(resolved(path / name)) not in seen:
                    links.add((len(found), name))
                add(names, name, str(resolved(path / name)) if link
                    else os.path.join(real_root, *name.split("/")))
            found.append((path, names))
        elif os.path.lexists(path):  # a file, or a FIFO, device, broken link or link loop: fails when read
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{path}: not an image file (expected one of "
                                 f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            names = []
            if links is not None and path.is_symlink() and str(resolved(path)) not in seen:
                links.add((len(found), path.name))
            add(names, path.name, str(resolved(path)))
            found.append((path.parent, names))
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def _walk(folder: Path, prune: Callable[[Path], bool] | None = None,
          skipped: Counter | None = None) -> list[tuple[str, bool]]:
    """``(posix path relative to folder, is a symbolic link)`` of the images under ``folder``, sorted.

    What ``os.walk(folder)`` lists, with the link flag of each file from its ``scandir`` entry, which
    knows it without a system call on Linux and macOS (``d_type``): no ``lstat`` per image. As ``os.walk``
    does, linked folders are not entered and folders that cannot be listed are left out."""
    files = []
    stack = [(os.fspath(folder), "")]
    while stack:
        dirpath, prefix = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if (prune is None or not prune(Path(dirpath) / name)) and not entry.is_symlink():
                    stack.append((entry.path, prefix + name + "/"))
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                files.append((prefix + name, entry.is_symlink()))
            elif skipped is not None and suffix in OTHER_IMAGE_SUFFIXES:
                skipped[suffix] += 1
    files.sort()
    return files
