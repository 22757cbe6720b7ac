"""The output folder's housekeeping: what the previous ``annotations.json`` held, and keeping it.

A rerun never replaces a dataset with a worse one silently (see :func:`visionkit.label`):

* when no image succeeds and the previous ``annotations.json`` has images, it is kept unchanged and the
  summary says so (``LabelSummary.kept_previous``);
* otherwise the new file is written, and when images that had annotations in the previous file have none
  now (they failed, or were not in this run), they are listed (``LabelSummary.lost_images``) and the
  previous file is kept as ``annotations.previous.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

from .atomic import atomic_open

__all__ = ["PREVIOUS_NAME", "keep_copy", "previous_counts"]

PREVIOUS_NAME = "annotations.previous.json"


def previous_counts(path: Path) -> dict[str, int] | None:
    """``{file_name: annotation count}`` of the COCO file at ``path``, or None when there is none (or it
    cannot be read as COCO: nothing worth protecting then)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        names = {img["id"]: str(img["file_name"]) for img in data["images"]}
        counts = dict.fromkeys(names.values(), 0)
        for ann in data["annotations"]:
            name = names.get(ann["image_id"])
            if name is not None:
                counts[name] += 1
    except (OSError, ValueError, KeyError, TypeError):
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
