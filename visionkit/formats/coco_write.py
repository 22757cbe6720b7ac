"""Write a COCO file one image at a time, in memory that does not grow with the annotations.

:class:`CocoWriter` is what ``export --format coco`` and ``consensus`` write with: each image's
annotations are encoded as it comes (:func:`visionkit.formats.coco.image_annotations`) and appended to an
unnamed temporary file in the destination's folder; only a small tuple per image stays in memory. On
:meth:`CocoWriter.close` the file is written atomically (:func:`visionkit.media.atomic.atomic_open`):
``licenses``, ``images``, ``categories``, ``annotations`` (copied from the temporary file), then ``info``,
which carries the export report known only at the end. This is the key order of ``label``'s own
``annotations.json``: images and categories first, so :mod:`visionkit.formats.coco_stream` reads the
head without passing the annotations.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ..core.detections import Detections
from ..errors import ExportError
from ..media.atomic import atomic_open
from .coco import CategoryMap, assemble, finish_annotation, image_annotations

__all__ = ["CocoWriter"]


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
                 polygon_holes: str = "rle", iscrowd: int = 0, info: Mapping | None = None):
        self.path = Path(path)
        self.cats = cats
        self._options = {"polygons": polygons, "polygon_holes": polygon_holes, "iscrowd": iscrowd}
        self._info = dict(info or {})
        self._images: list[tuple[str, int, int]] = []
        self._names: set[str] = set()
        self.report: Counter = Counter()
        self.unmapped: Counter = Counter()
        self.annotations = 0
        try:
            self._spill = tempfile.TemporaryFile(dir=self.path.parent, prefix=".coco-",  # noqa: SIM115
                                                 suffix=".tmp")
        except OSError as exc:
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
        if file_name in self._names:
            raise ExportError(f"{file_name}: appears twice; file names must be unique")
        anns = image_annotations(dets, report=self.report, **self._options)
        image_id = len(self._images) + 1
        parts = []
        for ann in anns:
            ann_id = self.annotations + len(parts) + 1
            done = finish_annotation(ann, image_id, ann_id, self.cats, self.unmapped)
            if done is not None:
                parts.append(json.dumps(done, ensure_ascii=False))
        try:
            text = "".join(("," if self.annotations + k else "") + p for k, p in enumerate(parts))
            self._spill.write(text.encode("utf-8"))
        except (UnicodeEncodeError, OSError) as exc:
            raise ExportError(f"cannot write {self.path} ({file_name}): {exc}") from exc
        self._names.add(file_name)
        self._images.append((str(file_name), width, height))
        self.annotations += len(parts)
        return len(parts)

    def close(self) -> dict:
        """Write the file atomically; returns its ``info`` (with the report in ``info["visionkit"]``).

        Raises:
            ExportError: the writer was closed or discarded already, or the file cannot be written.
        """
        if self._spill.closed:
            raise ExportError(f"{self.path} was written or discarded already")
        info = assemble([], [], self.cats, self.report, self.unmapped, self._info)["info"]
        try:
            with atomic_open(self.path, "wb") as fh:
                fh.write(b'{"licenses": [], "images": [')
                for k, (name, width, height) in enumerate(self._images):
                    fh.write(((", " if k else "") + json.dumps(
                        {"id": k + 1, "file_name": name, "width": width, "height": height},
                        ensure_ascii=False)).encode("utf-8"))
                fh.write(b'], "categories": ' + json.dumps(self.cats.categories, ensure_ascii=False)
                         .encode("utf-8") + b', "annotations": [')
                self._spill.seek(0)
                shutil.copyfileobj(self._spill, fh, 1 << 20)
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
