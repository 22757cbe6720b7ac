"""Which files a labeling run reads: the images under the inputs, minus output folders and filtered.

Output folders are never read as input: the run's own ``--out`` (so ``label photos --out photos/labels``
run twice does not label its own overlays, or pay for them online), and any other visionkit output folder
found while searching an input folder (one holding a visionkit ``keys.json``, or ``annotations.json``
beside ``failures.json``, as every version writes). A file or folder named directly as an input is used
unless it lies under ``--out``. Each run that skips something says so once, in a notice.

Filters, in this order: ``glob`` keeps the files that match any of its patterns, ``exclude`` drops those
that match any of its patterns, and ``limit`` keeps the first N (inputs are in a stable order). A pattern is
an ``fnmatch`` pattern, matched case-insensitively against the path relative to the input folder (``*``
also matches ``/``) and against the file name, so ``*.jpg`` matches ``a/b.JPG``.

An image is named by its path relative to its input folder (``file_name`` in every output), so two images
from different inputs with the same relative name (compared case-insensitively, as ``keys.json`` keys are)
would become one image. Such inputs are refused before anything is written, naming both files; the same
name twice under one input folder cannot happen, and ``a/x.jpg`` beside ``b/x.jpg`` is two names.
"""

from __future__ import annotations

import fnmatch
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError
from ..media import imageio
from ..media.filekind import resolved
from .keys import KEY_FILE, is_key_map

__all__ = ["ImageList", "Inputs", "find_inputs", "is_output_folder", "no_images_error"]


class ImageList(Sequence):
    """The ``(path, root)`` pairs of a run, held as one name string an image (its ``file_name``) plus the
    index of its input folder, and made into paths when asked for: a million images fit in tens of MB."""

    def __init__(self, roots: Sequence[Path], root_of: array, names: list[str],
                 links: frozenset[str] | None = None):
        self.roots = list(roots)
        self.root_of = root_of  # index into roots, by image
        self.names = names  # path relative to its root, posix: the image's file_name
        self.links = links  # the file_names that are symbolic links (None: not known, ask the disk)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ImageList(self.roots, self.root_of[index], self.names[index], self.links)
        root = self.roots[self.root_of[index]]
        return root / self.names[index], root


@dataclass
class Inputs:
    """The images a run reads, as ``(path, root)`` pairs, and what was left out."""

    images: ImageList
    notices: list[str] = field(default_factory=list)
    found: int = 0  # images found before the filters
    searched: list[str] = field(default_factory=list)  # the inputs, as given


def no_images_error(found: Inputs) -> InputError:
    """The error of a run whose inputs hold no image: it names the inputs, what was looked for, and why
    files were left out."""
    where = ", ".join(found.searched) or "(no inputs given)"
    looked = ", ".join(sorted(imageio.IMAGE_SUFFIXES))
    return InputError(f"no images found in {where} (looked for {looked})"
                      + "".join(f"; {n}" for n in found.notices))


def is_output_folder(folder: Path) -> bool:
    """True when ``folder`` holds a visionkit run's output."""
    return is_key_map(folder / KEY_FILE) or (
        (folder / "annotations.json").is_file() and (folder / "failures.json").is_file())


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def find_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike | None = None,
                *, glob: Sequence[str] = (), exclude: Sequence[str] = (), limit: int | None = None) -> Inputs:
    """The images of ``inputs`` (see :func:`visionkit.media.imageio.iter_images`) that a run into ``out``
    reads.

    Raises:
        InputError: an input does not exist, a file given directly is not an image, or two images from
            different inputs have the same name relative to their input folders.
        ConfigError: ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out_dir = None if out is None else Path(out).resolve()
    pruned: list[Path] = []

    def prune(folder: Path) -> bool:
        real = resolved(folder)
        if (out_dir is not None and real == out_dir) or is_output_folder(folder):
            pruned.append(folder)
            return True
        return False

    named, under_out = [], []
    for item in inputs:
        if out_dir is not None and _inside(resolved(item), out_dir):
            under_out.append(Path(item))
        else:
            named.append(item)
    skipped: Counter = Counter()
    roots, root_of, names, found = [], array("I"), [], 0
    links: set[tuple[int, str]] = set()
    listing = imageio.image_names(named, prune=prune, skipped=skipped, links=links) if named else []
    for root, listed in listing:
        found += len(listed)
        kept = [n for n in listed if _keep(n, glob, exclude)] if glob or exclude else listed
        if not roots or roots[-1] != root:  # files given one by one share their folder
            roots.append(root)
        root_of.extend([len(roots) - 1] * len(kept))
        names.extend(kept)
    images = ImageList(roots, root_of, names, frozenset(name for _, name in links))
    _refuse_same_names(images)
    if limit is not None:
        images = images[:limit]
    notices = []
    if pruned or under_out:
        where = ", ".join(str(p) for p in [*under_out, *pruned])
        notices.append(f"skipped visionkit output folders (the --out folder and earlier runs' outputs are "
                       f"never read as input): {where}")
    if skipped:
        kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(skipped.items()))
        total = sum(skipped.values())
        notices.append(f"skipped {total} file{'s' if total != 1 else ''} in image formats visionkit does not "
                       f"read ({kinds}); it reads {', '.join(sorted(imageio.IMAGE_SUFFIXES))}: convert them "
                       "to one of these to label them")
    if len(images) < found:
        notices.append(f"using {len(images)} of the {found} images found"
                       + (f" (--glob {' '.join(glob)})" if glob else "")
                       + (f" (--exclude {' '.join(exclude)})" if exclude else "")
                       + (f" (--limit {limit})" if limit is not None else ""))
    return Inputs(images, notices, found, [str(p) for p in inputs])


def _refuse_same_names(images: ImageList) -> None:
    """Raise InputError when two images from different input roots share a relative name (casefolded)."""
    real_roots = [resolved(root) for root in images.roots]
    if len(set(real_roots)) < 2:
        return  # one input folder: its names are unique
    first: dict[str, int] = {}  # casefolded name -> the first image with it
    for index, rel in enumerate(images.names):
        other = first.setdefault(rel.casefold(), index)
        if real_roots[images.root_of[other]] == real_roots[images.root_of[index]]:
            continue
        a, b = resolved(images[other][0]), resolved(images[index][0])
        try:
            common = f" ({os.path.commonpath([a, b])})"
        except ValueError:  # different drives on Windows
            common = ""
        raise InputError(
            f"two inputs have an image named {rel!r} relative to their input folders: {a} and {b}. Each "
            f"image is named by its path relative to its input folder, so these would become one image. "
            f"Label them into different output folders (--out), or pass their common parent folder{common} "
            f"as the input so their names differ")


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    rel, name = rel.casefold(), rel.rsplit("/", 1)[-1].casefold()
    return any(fnmatch.fnmatchcase(rel, p.casefold()) or fnmatch.fnmatchcase(name, p.casefold())
               for p in patterns)


def _keep(rel: str, glob: Sequence[str], exclude: Sequence[str]) -> bool:
    return (not glob or _matches(rel, glob)) and not (exclude and _matches(rel, exclude))
