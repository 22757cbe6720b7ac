"""The reading side of ``visionkit export``: run folders opened through the one reader
(:class:`visionkit.formats.coco_stream.CocoFile`), their images streamed one at a time.

Each run's ``annotations.json`` is checked on opening; what stays in memory per image is its
:class:`~visionkit.formats.coco_stream.ImageEntry`, its source path and its split, so an export holds
about the same small amount per image whatever the number of objects.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError, InputError
from ..media.filekind import read_regular_text
from ..media.paths import safe_join
from .coco_stream import CocoFile, ImageEntry, ImageRecord

__all__ = ["Run", "open_runs"]


@dataclass
class Run:
    """One run folder, checked: its COCO file, where its images are, and its point answers."""

    folder: Path
    coco: CocoFile
    sources: Mapping | None                          # file_name -> input path (sources.json)
    images_root: Path | None
    points: dict = field(default_factory=dict)       # file_name -> point rows (formats.keypoints)
    shared: dict = field(default_factory=dict)       # file_name -> why it is left out (in another run too)

    def source(self, image: ImageEntry) -> Path:
        """Where the input image of ``image`` is.

        Raises:
            InputError: ``sources.json`` has no entry for it (naming both files, the image and the field).
        """
        if self.images_root is not None:
            return safe_join(self.images_root, image.file_name, file=self.coco.name,
                             field=f"images[{image.pos}].file_name")
        where = self.sources.get(image.file_name)
        if where is None:
            raise InputError(f"{self.folder / 'sources.json'}: images[{image.file_name!r}]: missing; "
                             f"expected the input path of {self.coco.name} images[{image.pos}].file_name "
                             f"{image.file_name!r} (or pass the input folder the run was given: --images)")
        return Path(where)

    def labels(self) -> Counter:
        """Label -> annotations, over the whole run (from the check, nothing decoded)."""
        return Counter({self.coco.names[c]: n for c, n in self.coco.counts.items()})

    def records(self, only: set[int] | None = None) -> Iterator[ImageRecord]:
        return self.coco.records(only)


def _read_json(path: Path, hint: str) -> object:
    try:
        # a BOM (Windows editors) is not an error; a FIFO is said, not waited on
        return json.loads(read_regular_text(path, expected="a JSON file written by visionkit label",
                                            encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise ExportError(f"{path} not found{'; ' + hint if hint else ''}") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _sources(folder: Path) -> Mapping:
    path = folder / "sources.json"
    data = _read_json(path, "pass the input folder the run was given (--images)")
    sources = data.get("images") if isinstance(data, Mapping) else None
    if not isinstance(sources, Mapping):
        raise InputError(f"{path}: images: expected {{file_name: path}}")
    for name, where in sources.items():
        if not isinstance(where, str) or not where:
            raise InputError(f"{path}: images[{name!r}]: expected a path (a string), got {where!r}")
    return sources


def _points(folder: Path) -> dict[str, list]:
    path = folder / "keypoints.json"
    if not path.exists():
        return {}
    kp = CocoFile(path, what="keypoints file")
    points: dict[str, list] = {}
    for record in kp.records(keypoints=True):
        rows = points.setdefault(record.image.file_name, [])
        for ann in record.annotations:
            row = {k: v for k, v in ann.items() if k not in ("id", "image_id", "category_id")}
            row["label"] = kp.names[ann["category_id"]]
            rows.append(row)
    return points


def open_runs(runs: Sequence[str | os.PathLike], images_root: str | os.PathLike | None = None
              ) -> tuple[list[Run], list[str]]:
    """Open and check run folders (``annotations.json``, ``sources.json``, ``keypoints.json``); returns the
    runs and notes for the user.

    * The same folder given twice (by any path to it) is read once, with a note.
    * An image whose file name is in two runs is left out of both (listed in each run's ``shared``, which
      the export reports as that image's failure): the runs' labels of it may disagree, and keeping both
      under new names could put one picture in train and in val. The other images are exported.

    Raises:
        ExportError: a run folder lacks ``annotations.json``, or the images cannot be located (no
            ``sources.json`` and no ``images_root``).
        InputError: a malformed file, naming the file, the index and the field.
    """
    out: list[Run] = []
    notes: list[str] = []
    seen: dict[str, int] = {}
    folders: dict[Path, Path] = {}
    root = Path(images_root) if images_root is not None else None
    for folder in map(Path, runs):
        key = folder.resolve()
        if key in folders:
            notes.append(f"{folder} was given twice (as {folders[key]} too); it is exported once")
            continue
        folders[key] = folder
        path = folder / "annotations.json"
        if not path.exists():  # a FIFO or a folder there is said by CocoFile, naming what it is
            raise ExportError(f"{path} not found; is it a `visionkit label` output folder?")
        coco = CocoFile(path, what="run")
        run = Run(folder, coco, _sources(folder) if root is None else None, root, _points(folder))
        for image in coco.images:
            first = seen.setdefault(image.file_name, len(out))
            if first != len(out):
                why = (f"{image.file_name} is in two runs ({out[first].folder} and {folder}); it is left out "
                       "of both (their labels may disagree, and two copies could land in two splits): "
                       "export the runs separately, or keep the image in one run only")
                out[first].shared[image.file_name] = run.shared[image.file_name] = why
        out.append(run)
    return out, notes
