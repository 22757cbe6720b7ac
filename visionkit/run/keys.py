"""Output keys: each input image's stable name inside an output folder (``overlays/<key>.jpg``,
``responses/<key>.json``).

A new image's key is its file stem, or, when another image known to the folder shares that stem (compared
case-insensitively, because on macOS and Windows ``A.json`` and ``a.json`` are one file), its path relative
to its input folder without the suffix, joined by ``__`` (``a/x.jpg`` -> ``a__x``); then the same with the
suffix (``a__x.jpg``); then that plus ``~2``, ``~3``, ... so every key is unique.

Keys are recorded in ``OUT/keys.json`` (``{file_name: key}``, file names relative to the input folder)
before any image is processed, and an image keeps its recorded key on every later run. So a folder can
grow: adding ``b/x.png`` beside an answered ``a/x.png`` (key ``x``) gives the new image ``b__x`` and leaves
``x`` alone, and nothing is asked twice. Entries are never removed, so an image that leaves and comes back
gets its old key, and no new image inherits a departed image's files.

Folders written before ``keys.json`` existed are migrated on their first run: the keys are assigned by the
rule above, which is the rule of those versions for a folder that did not grow, except that when images
share a stem and ``responses/<stem>.json`` was saved for one of them (its request record holds the image's
SHA-256), that image keeps the bare stem.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from ..errors import ExportError, InputError
from ..media.atomic import atomic_open
from ..media.filekind import open_regular, read_regular_text
from ..media.paths import check_name

__all__ = ["KEY_FILE", "assign_keys", "load_key_map", "record_keys", "run_keys", "save_key_map",
           "stem_owners"]

KEY_FILE = "keys.json"
_SIGNATURE = "visionkit keys"
_EXPECTED = 'the run\'s key map, a JSON file {"format": "visionkit keys", "keys": {file_name: key}}'


def load_key_map(out_dir: Path) -> dict[str, str] | None:
    """The recorded ``{file_name: key}`` of ``out_dir``, or None when the folder has none (or it is
    unreadable: the keys are then assigned afresh, which is what a folder without a map gets anyway).

    Raises:
        InputError: a key that would leave the folder as a file name (``../x``, ``/x``, ``a/b``).
    """
    path = Path(out_dir) / KEY_FILE
    try:
        data = json.loads(read_regular_text(path, expected=_EXPECTED))
    except InputError:  # a FIFO or a folder in its place: said, not a hang, and the keys not assigned anew
        raise
    except (OSError, ValueError):
        return None
    keys = data.get("keys") if isinstance(data, dict) and data.get("format") == _SIGNATURE else None
    if not isinstance(keys, dict):
        return None
    out = {str(f): k for f, k in keys.items() if isinstance(k, str) and k}
    for f, k in out.items():  # a key becomes a file name: overlays/<key>.jpg, responses/<key>.json
        check_name(k, file=path, field=f"keys[{f!r}]")
        if "/" in k or "\\" in k:
            raise InputError(f"{path}: keys[{f!r}]: {k!r} holds a path separator; "
                             "expected a plain file name (keys join folders with '__')")
    return out


def save_key_map(out: Path, keys: Mapping[str, str]) -> None:
    """Write ``out/keys.json`` atomically. Raises ExportError naming the file."""
    with atomic_open(Path(out) / KEY_FILE) as fh:
        json.dump({"format": _SIGNATURE, "version": 1, "keys": dict(sorted(keys.items()))}, fh,
                  ensure_ascii=False, indent=1)


def is_key_map(path: Path) -> bool:
    """True when ``path`` is a visionkit key map (marks a visionkit output folder)."""
    try:
        with open_regular(path, "r", encoding="utf-8-sig") as fh:
            return _SIGNATURE in fh.read(200)
    except (OSError, UnicodeDecodeError, InputError):  # a FIFO marks nothing
        return False


def _candidates(file_name: str) -> list[str]:
    rel = PurePosixPath(file_name)
    return [rel.stem, "__".join(rel.with_suffix("").parts), "__".join(rel.parts)]


def assign_keys(file_names: Sequence[str], known: Mapping[str, str] | None = None,
                owner_of: Callable[[str, list[str]], str | None] | None = None) -> list[str]:
    """The key of each of ``file_names`` (relative posix paths, unique), given the folder's recorded map.

    ``known`` files keep their keys. ``owner_of(stem, files)`` (migration only) may name which of several
    new files sharing ``stem`` keeps the bare stem. Updates nothing; the caller records the result.
    """
    known = known or {}
    if all(f in known for f in file_names):  # a rerun of the same images: nothing to assign
        return [known[f] for f in file_names]
    taken = {k.casefold() for k in known.values()}

    def everyone() -> Iterator[str]:  # the known files, then the new ones (not held as a list)
        yield from known
        yield from (f for f in file_names if f not in known)

    stems = Counter(PurePosixPath(f).stem.casefold() for f in everyone())
    bare = Counter(_candidates(f)[1].casefold() for f in everyone())
    owners: dict[str, str] = {}
    if owner_of is not None:
        groups: dict[str, list[str]] = {}
        for f in file_names:
            if f not in known and stems[PurePosixPath(f).stem.casefold()] > 1:
                groups.setdefault(PurePosixPath(f).stem, []).append(f)
        for stem, files in groups.items():
            owner = owner_of(stem, files)
            if owner is not None and stem.casefold() not in taken:
                owners[owner] = stem
    keys = []
    for f in file_names:
        if f in known:
            keys.append(known[f])
            continue
        key = owners.get(f) or _new_key(f, stems, bare, taken)
        taken.add(key.casefold())
        keys.append(key)
    return keys


def _new_key(file_name: str, stems: Counter, bare: Counter, taken: set[str]) -> str:
    stem, no_suffix, full = _candidates(file_name)
    if stems[stem.casefold()] == 1 and stem.casefold() not in taken:
        return stem
    if bare[no_suffix.casefold()] == 1 and no_suffix.casefold() not in taken:
        return no_suffix
    key, n = full, 1
    while key.casefold() in taken:
        n += 1
        key = f"{full}~{n}"
    return key


def record_keys(out: Path, file_names: Iterable[str], keys: Iterable[str],
                known: Mapping[str, str] | None) -> None:
    """Add this run's keys to ``out/keys.json`` (written only when something is new)."""
    merged = dict(known or {})
    new = {f: k for f, k in zip(file_names, keys) if merged.get(f) != k}
    if not new and known is not None:
        return
    merged.update(new)
    try:
        save_key_map(out, merged)
    except ExportError as exc:
        raise ExportError(f"cannot record the output keys: {exc}") from exc


def run_keys(images: Sequence[tuple[Path, Path]], out: Path,
             saved_owner: Callable[[str, dict[str, Path]], str | None] | None = None
             ) -> tuple[list[str], dict[str, str] | None]:
    """The key of each ``(path, root)`` image of a run into ``out``, and the folder's recorded map (None
    when it has none). ``saved_owner(key, {file_name: path})`` names the image a response saved under
    ``key`` belongs to; it is asked only to migrate a folder written before ``keys.json`` existed."""
    names = getattr(images, "names", None) or [path.relative_to(root).as_posix() for path, root in images]
    known = load_key_map(out)
    owner_of = None
    if known is None and saved_owner is not None:
        where: dict[str, int] = {}  # file_name -> position, made on the first shared stem only

        def owner_of(stem: str, files: list[str]) -> str | None:
            if not where:
                where.update((n, i) for i, n in enumerate(names))
            return saved_owner(stem, {f: images[where[f]][0] for f in files})
    return assign_keys(names, known, owner_of), known


def _stem(file_name: str) -> str:
    """``PurePosixPath(file_name).stem``, without making a path (a million of them add up)."""
    name = file_name.rpartition("/")[2]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def stem_owners(images: Sequence[tuple[Path, Path]], keys: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """``{stem.casefold(): [(file_name, key), ...]}``: which images a bare-stem replay answer could mean.
    Only stems that several images share are listed (an absent stem has at most one image)."""
    names = getattr(images, "names", None) or [path.relative_to(root).as_posix() for path, root in images]
    counts = Counter(_stem(n).casefold() for n in names)
    owners: dict[str, list[tuple[str, str]]] = {}
    for name, key in zip(names, keys):
        stem = _stem(name).casefold()
        if counts[stem] > 1:
            owners.setdefault(stem, []).append((name, key))
    return owners
