"""Where ``visionkit export`` writes: ``dest`` claimed (empty, OS litter aside, or what an interrupted
export of ours left), the dataset built in a staging folder inside it and moved into place at the end.

An export interrupted at any point leaves ``dest`` in a state the rerun recognises and redoes: only the
staging folder :data:`PARTIAL`; or, when interrupted among the final moves, the staging folder holding
:data:`MOVING` (the names being moved) plus some of those names already in ``dest``. Nothing else in
``dest`` is ever removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ExportError
from ..media.atomic import write_json_atomic

__all__ = ["MOVING", "OS_LITTER", "PARTIAL", "claim_dest", "move_into_place"]


#: The staging folder inside ``dest`` an export is built in; its entries are moved into ``dest`` only at
#: the end, so an interrupted export leaves only this folder, which a rerun removes and redoes.
PARTIAL = ".visionkit-partial"

#: In :data:`PARTIAL`, written before the final moves: the names of the entries being moved into ``dest``,
#: so a rerun after an interruption among the moves knows which entries of ``dest`` are ours.
MOVING = ".visionkit-moving"

#: Files an OS leaves in folders (Finder, Explorer): a ``dest`` holding only these counts as empty.
OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "ehthumbs.db", "desktop.ini", "Desktop.ini"})


def claim_dest(dest: Path, work: Path) -> None:
    """Check that ``dest`` is absent, empty (OS litter aside), or holds what an interrupted export of ours
    left, and remove the latter. Raises ExportError naming what is in the way."""
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not an empty folder; choose a new --to folder")
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise ExportError(f"{work} is not a folder visionkit left; remove it or choose a new --to folder")
    ours = _moving(work)
    entries = [p for p in dest.iterdir() if p.name not in OS_LITTER and p != work] if dest.is_dir() else []
    if any(p.name not in ours for p in entries):
        raise ExportError(f"{dest} exists and is not an empty folder; choose a new --to folder")
    try:
        for entry in entries:  # moved into place by an export interrupted among its moves: redone
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if work.is_dir():
            shutil.rmtree(work)  # our own partial output from an interrupted export: redo it
    except OSError as exc:
        raise ExportError(f"cannot clear the interrupted export in {dest}: {exc}") from exc


def _moving(work: Path) -> set[str]:
    """The entry names :data:`MOVING` lists (empty when there is no such list, or it is not ours)."""
    try:
        names = json.loads((work / MOVING).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and "\\" not in n
                                              and n not in (".", "..", PARTIAL) for n in names):
        return set()
    return set(names)


def move_into_place(work: Path, dest: Path) -> None:
    """Move every top-level entry of the finished staging folder into ``dest``, then remove it; the names
    are listed in :data:`MOVING` first, so an interruption among the moves is recognised by the rerun."""
    try:
        entries = sorted(p for p in work.iterdir() if p.name != MOVING)
        write_json_atomic(work / MOVING, [p.name for p in entries])
        for entry in entries:
            os.replace(entry, dest / entry.name)
        (work / MOVING).unlink()
        work.rmdir()
    except OSError as exc:
        raise ExportError(f"cannot move the finished export from {work} into {dest}: {exc}") from exc
