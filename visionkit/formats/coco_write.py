"""Write a COCO file one image at a time, in memory that does not grow with the images or annotations.

:class:`CocoWriter` is what ``label`` (its ``annotations.json``), ``export --format coco`` and ``consensus``
write with. Each image's annotations are encoded as it comes
(:func:`visionkit.formats.coco.image_annotations`), or given already encoded
(:meth:`CocoWriter.add_encoded`: ``label`` keeps each annotation's JSON text in its spool and kept
results, so a rerun encodes nothing again), and appended to an unnamed temporary file in the
destination's folder; the image rows go to a second one. On :meth:`CocoWriter.close` the file is written
atomically (:func:`visionkit.media.atomic.atomic_open`): ``licenses``, ``images``, ``categories``,
``annotations`` (both copied from the temporary files), then ``info``, which carries the export report
known only at the end. Images and categories come first, so :mod:`visionkit.formats.coco_stream` reads
the head without passing the annotations.

An encoded annotation is ``(label, body)``: ``body`` is the annotation's JSON object without its label,
written by :func:`encode_annotation` and with its opening ``{`` cut off, so the ids are spliced in front of
it (``{"id": 1, "image_id": 1, "category_id": 2, <body>``), the key order of
:func:`visionkit.formats.coco.finish_annotation`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..core.detections import Detections
from ..errors import ExportError
from ..media.atomic import atomic_open
from .coco import CategoryMap, assemble, image_annotations

__all__ = ["CocoWriter", "encode_annotation"]

_encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per call as json.dumps makes


def encode_annotation(ann: Mapping) -> tuple[str, str]:
    """``(label, body)`` of an :func:`~visionkit.formats.coco.image_annotations` entry, for
    :meth:`CocoWriter.add_encoded` (see the module docstring)."""
    return ann["label"], _encode({k: v for k, v in ann.items() if k != "label"})[1:]


class CocoWriter:
    """A COCO file written image by image (see the module docstring). Use as a context manager, or call
    :meth:`close` (writes the file) or :meth:`discard`.

    Args:
        path: the COCO file to write; its folder must exist.
        cats: the categories, fitted before the first image (labels outside them are counted as unmapped).
        polygons, polygon_holes, iscrowd: as in :func:`visionkit.formats.coco.to_coco`.
        info: extra ``info`` fields.
    """

    def __init__(self, path: str | os.PathLike, cats: CategoryMap, *, polygons: bool = False,
                 polygon_holes: str = "rle", iscrowd: int = 0, info: Mapping | None = None,
                 unique_names: bool = False):
        self.path = Path(path)
        self.cats = cats
        self._options = {"polygons": polygons, "polygon_holes": polygon_holes, "iscrowd": iscrowd}
        self._info = dict(info or {})
        self._names: set[str] | None = None if unique_names else set()  # unique_names: the caller's promise
        self.images = 0
        self.report: Counter = Counter()
        self.unmapped: Counter = Counter()
        self.annotations = 0
        self._broken: str | None = None  # a spill write failed: what is spilled may hold half an image
        try:
            self._spill = tempfile.TemporaryFile(dir=self.path.parent, prefix=".coco-",  # noqa: SIM115
                                                 suffix=".tmp")
            self._rows = tempfile.TemporaryFile(dir=self.path.parent, prefix=".coco-",  # noqa: SIM115
                                                suffix=".tmp")
        except OSError as exc:
            if hasattr(self, "_spill"):
                self._spill.close()
            raise ExportError(f"cannot write {self.path}: {exc}") from exc

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None and not self._spill.closed:
            self.close()
        else:
            self.discard()

    def add(self, file_name: str, size_wh: tuple[int, int], dets: Detections) -> int:
        """Add one image and its detections; returns how many annotations were written for it.

        Raises:
            ExportError: a file name given twice, a size that differs from the detections', or text that
                cannot be written as UTF-8.
        """
        width, height = (int(v) for v in size_wh)
        if (width, height) != tuple(dets.image_wh):
            raise ExportError(f"{file_name}: size {width}x{height} differs from its detections' image_wh "
                              f"{dets.image_wh[0]}x{dets.image_wh[1]}")
        anns = image_annotations(dets, report=self.report, **self._options)
        return self.add_encoded(file_name, (width, height), [encode_annotation(a) for a in anns])

    def add_encoded(self, file_name: str, size_wh: tuple[int, int], anns: Iterable[Sequence[str]]) -> int:
        """Add one image and its annotations, already encoded (``(label, body)`` pairs, see the module
        docstring; a label outside the categories is counted as unmapped); returns how many annotations
        were written for it.

        Raises:
            ExportError: a file name given twice, or text that cannot be written as UTF-8.
        """
        if self._broken is not None:
            raise ExportError(f"cannot write {self.path}: {self._broken}")
        if self._names is not None and file_name in self._names:
            raise ExportError(f"{file_name}: appears twice; file names must be unique")
        width, height = (int(v) for v in size_wh)
        image_id = self.images + 1
        lookup, ann_id, parts, unmapped = self.cats.lookup, self.annotations, [], Counter()
        for label, body in anns:
            category_id = lookup(label)
            if category_id is None:
                unmapped[label] += 1
                continue
            ann_id += 1
            parts.append(f'{"," if ann_id > 1 else ""}{{"id": {ann_id}, "image_id": {image_id}, '
                         f'"category_id": {category_id}' + (f", {body}" if body != "}" else "}"))
        row = {"id": image_id, "file_name": str(file_name), "width": width, "height": height}
        try:
            text = "".join(parts).encode("utf-8")
            row_text = ((", " if image_id > 1 else "") + json.dumps(row, ensure_ascii=False)).encode("utf-8")
        except UnicodeEncodeError as exc:  # nothing written: the next image may still go in
            raise ExportError(f"cannot write {self.path} ({file_name}): {exc}") from exc
        try:
            self._spill.write(text)
            self._rows.write(row_text)
        except OSError as exc:  # part of this image may be spilled: the file can no longer be finished
            self._broken = f"writing {file_name} failed ({exc})"
            raise ExportError(f"cannot write {self.path} ({file_name}): {exc}") from exc
        self.unmapped.update(unmapped)
        if self._names is not None:
            self._names.add(file_name)
        self.images = image_id
        self.annotations = ann_id
        return len(parts)

    def close(self) -> dict:
        """Write the file atomically; returns its ``info`` (with the report in ``info["visionkit"]``).

        Raises:
            ExportError: the writer was closed or discarded already, or the file cannot be written.
        """
        if self._spill.closed:
            raise ExportError(f"{self.path} was written or discarded already")
        if self._broken is not None:
            self.discard()
            raise ExportError(f"cannot write {self.path}: {self._broken}")
        info = assemble([], [], self.cats, self.report, self.unmapped, self._info)["info"]
        try:
            with atomic_open(self.path, "wb") as fh:
                fh.write(b'{"licenses": [], "images": [')
                for spill in (self._rows, self._spill):
                    spill.seek(0)
                    shutil.copyfileobj(spill, fh, 1 << 20)
                    if spill is self._rows:
                        fh.write(b'], "categories": ' + json.dumps(self.cats.categories, ensure_ascii=False)
                                 .encode("utf-8") + b', "annotations": [')
                fh.write(b'], "info": ' + json.dumps(info, ensure_ascii=False).encode("utf-8") + b"}")
        except (UnicodeEncodeError, ValueError) as exc:
            raise ExportError(f"cannot write {self.path}: {exc}") from exc
        except OSError as exc:
            raise ExportError(f"cannot write {self.path}: {exc}") from exc
        finally:
            self.discard()
        return info

    def discard(self) -> None:
        """Drop what was added without writing the file."""
        self._spill.close()
        self._rows.close()
