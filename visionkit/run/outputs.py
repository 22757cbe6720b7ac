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
from ..formats.coco import CategoryMap, assemble
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
    """Stream the COCO file from the spool, images in input order, atomically.

    Never replaces a dataset with a worse one silently (see :mod:`visionkit.run.outdir`)."""
    previous = previous_counts(path)
    if not records and previous:
        summary.kept_previous = (f"no image succeeded in this run, so the previous {path.name} "
                                 f"({len(previous)} images, {sum(previous.values())} annotations) was kept")
        return
    cats.fit(labels.elements())
    unmapped: Counter = Counter()
    head = assemble([], [], cats, report, Counter(), None)
    written = array("q", bytes(8 * len(records.names)))  # annotations written, by image index
    with atomic_open(path) as fh:
        fh.write(f'{{"licenses": {json.dumps(head["licenses"])}, "images": [')
        for image_id, index in enumerate(records.indices(), start=1):
            file_name, width, height = records.image(index)
            image = {"id": image_id, "file_name": file_name, "width": width, "height": height}
            fh.write((", " if image_id > 1 else "") + json.dumps(image, ensure_ascii=False))
        fh.write(f'], "categories": {json.dumps(head["categories"], ensure_ascii=False)}, "annotations": [')
        ann_id = 0
        for image_id, index in enumerate(records.indices(), start=1):
            # [label, JSON text after "{" without the label] (visionkit.run.results): the ids go first, as
            # formats.coco.finish_annotation puts them, and the rest is written as it is, not encoded again
            for label, body in records.read(index)["annotations"]:
                category_id = cats.lookup(label)
                if category_id is None:
                    unmapped[label] += 1
                    continue
                ann_id += 1
                fh.write(f'{"," if ann_id > 1 else ""}{{"id": {ann_id}, "image_id": {image_id}, '
                         f'"category_id": {category_id}' + (f", {body}" if body != "}" else "}"))
                written[index] += 1
        # info last: it carries the report, known only once every annotation was mapped.
        info = assemble([], [], cats, report, unmapped, None)["info"]
        fh.write(f'], "info": {json.dumps(info, ensure_ascii=False)}}}')
        summary.lost_images = _lost(previous, records, written)
        if summary.lost_images:  # before the new file replaces it
            summary.previous_note = keep_previous(path, previous)
    summary.annotations = ann_id
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
    with atomic_open(path) as fh:
        fh.write('{\n "version": 1,\n "images": {')
        for n, ((image, root), name) in enumerate(zip(images, names)):
            real = roots.get(root)
            if real is None:
                real = roots[root] = str(resolved(root))
            where = str(resolved(image)) if image.is_symlink() else os.path.join(real, *name.split("/"))
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
