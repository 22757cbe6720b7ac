"""The files a label run writes at its end, from the spool of per-image records (see
:mod:`visionkit.run.spool`):
``annotations.json`` (streamed, images in input order), ``sources.json``, ``keypoints.json`` and
``failures.json``. A writer that fails (a full disk) is reported in the :class:`LabelSummary` by
:func:`export`, not raised, so the run still ends with its summary."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..formats.coco import CategoryMap, assemble, finish_annotation
from ..formats.keypoints import keypoints_dataset
from ..media.atomic import atomic_open, write_json_atomic
from ..media.filekind import resolved
from .outdir import keep_previous, previous_counts, write_index
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


def _records(spool, offsets: dict[int, tuple[int, int]]) -> Iterator[dict]:
    """The spooled image records (``offsets``: image index -> (start, size)), in input order."""
    for index in sorted(offsets):
        start, size = offsets[index]
        spool.seek(start)
        yield json.loads(spool.read(size))


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


def write_annotations(path: Path, spool, offsets: dict[int, tuple[int, int]], labels: Counter,
                      report: Counter, cats: CategoryMap, summary: LabelSummary) -> None:
    """Stream the COCO file from the spool, images in input order, atomically.

    Never replaces a dataset with a worse one silently (see :mod:`visionkit.run.outdir`)."""
    previous = previous_counts(path)
    if not offsets and previous:
        summary.kept_previous = (f"no image succeeded in this run, so the previous {path.name} "
                                 f"({len(previous)} images, {sum(previous.values())} annotations) was kept")
        return
    cats.fit(labels.elements())
    unmapped: Counter = Counter()
    images = []
    for image_id, record in enumerate(_records(spool, offsets), start=1):
        images.append({"id": image_id, "file_name": record["file_name"], "width": record["width"],
                       "height": record["height"]})
    head = assemble(images, [], cats, report, Counter(), None)
    written: Counter = Counter()
    with atomic_open(path) as fh:
        fh.write("{")
        for key in ("licenses", "images", "categories"):
            fh.write(f"{json.dumps(key)}: {json.dumps(head[key], ensure_ascii=False)}, ")
        fh.write('"annotations": [')
        ann_id = 0
        for image_id, record in enumerate(_records(spool, offsets), start=1):
            for ann in record["annotations"]:
                done = finish_annotation(ann, image_id, ann_id + 1, cats, unmapped)
                if done is None:
                    continue
                fh.write(("," if ann_id else "") + json.dumps(done, ensure_ascii=False))
                written[record["file_name"]] += 1
                ann_id += 1
        # info last: it carries the report, known only once every annotation was mapped.
        info = assemble([], [], cats, report, unmapped, None)["info"]
        fh.write(f'], "info": {json.dumps(info, ensure_ascii=False)}}}')
        summary.lost_images = sorted(f for f, n in (previous or {}).items() if n and not written[f])
        if summary.lost_images:  # before the new file replaces it
            summary.previous_note = keep_previous(path, previous)
    summary.annotations = ann_id
    summary.export_report = info["visionkit"]
    with contextlib.suppress(ExportError, OSError):  # only a shortcut for the next run: it re-parses without
        write_index(path, {img["file_name"]: written[img["file_name"]] for img in images})


def write_sources(path: Path, images: list[tuple[Path, Path]]) -> None:
    """Record where each input image is (``file_name`` -> absolute path), for ``visionkit export``."""
    write_json_atomic(path, {"version": 1, "images": {
        p.relative_to(root).as_posix(): str(resolved(p)) for p, root in images}}, indent=1)


def write_keypoints(path: Path, spool, offsets: dict[int, tuple[int, int]], categories: list | None,
                    summary: LabelSummary) -> None:
    """Write the points of every answer as COCO keypoints, when there are any (a stale file goes)."""
    entries = ((r["file_name"], r["width"], r["height"], r["points"])
               for r in _records(spool, offsets) if r.get("points"))
    dataset = keypoints_dataset(entries, categories)
    summary.points = len(dataset["annotations"])
    if dataset["annotations"]:
        write_json_atomic(path, dataset)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
