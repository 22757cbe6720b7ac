"""The files a label run writes at its end, from the spool of per-image records (see
:mod:`visionkit.run.spool`):
``annotations.json`` (streamed, images in input order), ``sources.json``, ``keypoints.json`` and
``failures.json``. A writer that fails (a full disk) is reported in the :class:`LabelSummary` by
:func:`export`, not raised, so the run still ends with its summary."""

from __future__ import annotations

import contextlib
import json
import os
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..formats.coco import CategoryMap
from ..formats.coco_write import CocoWriter
from ..formats.keypoints import keypoints_dataset
from ..media.atomic import atomic_open, write_json_atomic
from ..media.filekind import resolved
from .outdir import keep_previous, previous_counts, write_index
from .spool import Records
from .summary import LabelSummary

__all__ = ["export", "write_annotations", "write_failures", "write_keypoints", "write_sources"]


def export(summary: LabelSummary, name: str, write: Callable[..., None], *args: Any) -> None:
    """Run one output writer; a failure (a full disk) is reported in the summary, not raised, so the run
    still ends with its summary and failures.json."""
    try:
        write(*args)
    except (ExportError, OSError) as exc:
        summary.export_errors.append(f"{name} could not be written: {exc}")
        summary.unwritten.append(name)


def write_failures(path: Path, summary: LabelSummary) -> None:
    """Write failures.json; when that fails, no stale copy is left claiming fewer failures."""
    summary.failures.sort(key=lambda f: f["file"])
    summary.overlay_failures.sort(key=lambda f: f["file"])
    try:
        write_json_atomic(path, summary.failures + summary.overlay_failures, indent=2)
    except ExportError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        summary.export_errors.append(f"{exc} (the old {path.name} was removed, so it cannot mislead)")


def write_annotations(path: Path, records: Records, labels: Counter, report: Counter, cats: CategoryMap,
                      summary: LabelSummary) -> None:
    """Stream the COCO file from the spool, images in input order, atomically, with the annotation texts
    the spool holds (:meth:`~visionkit.formats.coco_write.CocoWriter.add_encoded`: nothing is encoded again).

    Never replaces a dataset with a worse one silently (see :mod:`visionkit.run.outdir`)."""
    previous = previous_counts(path)
    if not records and previous:
        summary.kept_previous = (f"no image succeeded in this run, so the previous {path.name} "
                                 f"({len(previous)} images, {sum(previous.values())} annotations) was kept")
        return
    cats.fit(labels.elements())
    written = array("q", bytes(8 * len(records.names)))  # annotations written, by image index
    with CocoWriter(path, cats, unique_names=True) as writer:  # the run's file names are unique
        for index in records.indices():
            file_name, width, height = records.image(index)
            written[index] = writer.add_encoded(file_name, (width, height), records.annotations(index))
        writer.report.update(report)
        summary.lost_images = _lost(previous, records, written)
        if summary.lost_images:  # before the new file replaces it
            summary.previous_note = keep_previous(path, previous)
        info = writer.close()
    summary.annotations = writer.annotations
    summary.export_report = info["visionkit"]
    with contextlib.suppress(ExportError, OSError):  # only a shortcut for the next run: it re-parses without
        write_index(path, ((records.names[i], written[i]) for i in records.indices()))


def _lost(previous: dict[str, int] | None, records: Records, written: array) -> list[str]:
    """The images that had annotations in the previous file and have none now (sorted)."""
    if not previous:
        return []
    now = {}  # only the images the previous file annotated, so this stays small when nothing is lost
    for index, name in enumerate(records.names):
        if previous.get(name):
            now[name] = written[index]
    return sorted(f for f, n in previous.items() if n and not now.get(f))


def write_sources(path: Path, images: Sequence[tuple[Path, Path]], names: Sequence[str]) -> None:
    """Record where each input image is (``file_name`` -> absolute path), for ``visionkit export``.
    Streamed; each input folder is resolved once, not each image."""
    roots: dict[Path, str] = {}
    try:
        _write_sources(path, images, names, roots)
    except ValueError as exc:  # a file name that is not UTF-8 (a lone surrogate)
        raise ExportError(f"cannot write {path}: {exc}") from exc


def _write_sources(path: Path, images: Sequence[tuple[Path, Path]], names: Sequence[str],
                   roots: dict[Path, str]) -> None:
    links = getattr(images, "links", None)  # an ImageList knows its links from the listing: no lstat each
    with atomic_open(path) as fh:
        fh.write('{\n "version": 1,\n "images": {')
        for n, name in enumerate(names):
            if links is not None:
                root = images.roots[images.root_of[n]]
                link = name in links
            else:
                image, root = images[n]
                link = image.is_symlink()
            real = roots.get(root)
            if real is None:
                real = roots[root] = str(resolved(root))
            where = str(resolved(root / name)) if link else os.path.join(real, *name.split("/"))
            fh.write(("," if n else "") + f"\n  {json.dumps(name, ensure_ascii=False)}: "
                     f"{json.dumps(where, ensure_ascii=False)}")
        fh.write("\n }\n}" if images else "}\n}")


def write_keypoints(path: Path, records: Records, categories: list | None, summary: LabelSummary) -> None:
    """Write the points of every answer as COCO keypoints, when there are any (a stale file goes)."""
    entries = ((r["file_name"], r["width"], r["height"], r["points"]) for r in records.with_points())
    dataset = keypoints_dataset(entries, categories)
    summary.points = len(dataset["annotations"])
    if dataset["annotations"]:
        write_json_atomic(path, dataset)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def save_unsaved(source: Any, summary: LabelSummary, notify: Callable[[str], None]) -> None:
    """Retry saving the answers whose save failed during the run (they were used from memory); ``source``
    is the run's :class:`~visionkit.run.answer_source.AnswerSource`."""
    held = source.unsaved_count()
    if not held:
        return
    left, why = source.retry_unsaved()
    summary.unsaved = left
    if left:
        notify(f"{left} of {held} paid answers could not be saved ({why}); they were used for this run's "
               "annotations, but a rerun will ask for them again")
    else:
        notify(f"{held} answers could not be saved when they arrived; they were kept in memory and are now "
               "saved")
