"""Which image files the inputs of a run name: folders searched recursively, files given directly.

:func:`image_names` keeps one string an image (its path relative to its input folder), so listing a
million images costs tens of megabytes, not the gigabyte of two ``Path`` objects an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import InputError

__all__ = ["IMAGE_SUFFIXES", "image_names", "iter_images"]

#: File suffixes (lower case, with the dot) treated as images when a folder is searched.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".heic", ".heif"})


def iter_images(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                prune: Callable[[Path], bool] | None = None) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(path, root)`` pairs, in a stable order.

    A folder is searched recursively for files whose suffix (any case) is in :data:`IMAGE_SUFFIXES`; its
    files are sorted by their path relative to the folder, and ``root`` is the folder. Names starting with
    ``.`` (hidden files and folders, macOS ``._*`` files) are skipped, and so is every sub-folder for which
    ``prune(folder)`` is true (the folders given as inputs are not asked). A file given directly has its
    parent as ``root``. A file reached twice is listed once, at its first position.

    Raises:
        InputError: an input does not exist, or a file given directly is not an image type.
    """
    return [(root / name, root) for root, names in image_names(inputs, prune=prune) for name in names]


def image_names(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                prune: Callable[[Path], bool] | None = None) -> list[tuple[Path, list[str]]]:
    """:func:`iter_images` as ``[(root, [name relative to root, posix, ...]), ...]``: one string an image
    instead of two paths, for runs of millions of images. A file reached twice (overlapping inputs, two
    links to one file) is listed once, at its first position."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[tuple[Path, list[str]]] = []
    seen: set[str] = set()  # real paths: os.walk does not enter linked folders, so only links resolve

    def add(names: list[str], name: str, real: str) -> None:
        if real not in seen:
            seen.add(real)
            names.append(name)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            names: list[str] = []
            real_root = os.path.realpath(path)
            for name, link in _walk(path, prune):
                add(names, name, os.path.realpath(path / name) if link else os.path.join(real_root, name))
            found.append((path, names))
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{path}: not an image file (expected one of "
                                 f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            names = []
            add(names, path.name, os.path.realpath(path))
            found.append((path.parent, names))
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def _walk(folder: Path, prune: Callable[[Path], bool] | None = None) -> list[tuple[str, bool]]:
    """``(posix path relative to folder, is a link)`` of the images under ``folder``, sorted by path."""
    files = []
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and (prune is None or not prune(Path(dirpath) / d))]
        rel = os.path.relpath(dirpath, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        with os.scandir(dirpath) as entries:
            for entry in entries:
                name = entry.name
                if (not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
                        and not entry.is_dir()):
                    files.append((prefix + name, entry.is_symlink()))
    files.sort()
    return files
