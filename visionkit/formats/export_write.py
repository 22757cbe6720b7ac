"""The writing side of ``visionkit export``: one label writer per split, fed one image at a time.

:class:`SplitWriters` opens a split's writer at the split's first image, so a split no image was written
to has no file and no folder, and every writer streams: COCO through
:class:`~visionkit.formats.coco_write.CocoWriter`, YOLO one label file per image, Label Studio's
``tasks_<split>.json`` task by task (:class:`~visionkit.formats.label_studio.TasksWriter`), Hugging Face's
``metadata.jsonl`` line by line (:class:`~visionkit.formats.hf.MetadataWriter`). What stays in memory per
image is what the COCO writer keeps (a small tuple) and, for COCO, the image's point answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..core.detections import Detections

__all__ = ["SplitWriters"]


class _Coco:
    """``annotations/instances_<split>.json`` and, when the split's images have points,
    ``annotations/keypoints_<split>.json``."""

    def __init__(self, folder: Path, part: str, cats, kp_cats, *, polygons: bool, polygon_holes: str,
                 report: Counter) -> None:
        from .coco_write import CocoWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.part, self.kp_cats, self.report = folder, part, kp_cats, report
        self.points: list[tuple[str, int, int, list]] = []
        self.points_written = 0
        self.writer = CocoWriter(folder / f"instances_{part}.json", cats, polygons=polygons,
                                 polygon_holes=polygon_holes,
                                 info={"description": f"visionkit export, split {part}"})

    def add(self, name: str, wh: tuple[int, int], dets: Detections, points: list | None = None) -> int:
        written = self.writer.add(name, wh, dets)
        if points:
            self.points.append((name, int(wh[0]), int(wh[1]), points))
        return written

    def close(self) -> None:
        from ..media.atomic import write_json_atomic
        from .keypoints import keypoints_dataset

        info = self.writer.close()["visionkit"]
        self.report.update({k: v for k, v in info.items() if isinstance(v, int)})
        self.report.update({f"unmapped:{k}": n for k, n in info.get("unmapped_labels", {}).items()})
        if self.points:
            kp = keypoints_dataset(self.points, self.kp_cats)
            write_json_atomic(self.folder / f"keypoints_{self.part}.json", kp)
            self.points_written = len(kp["annotations"])
            self.report.update({f"unmapped:{k}": n
                                for k, n in kp["info"]["visionkit"].get("unmapped_labels", {}).items()})

    def discard(self) -> None:
        self.writer.discard()


class SplitWriters:
    """The label writers of every split of one export into ``work`` (the staging folder), opened lazily.

    Args:
        format: a resolved format (``coco``, ``yolo-detect``, ``yolo-segment``, ``label-studio``, ``hf``).
        cats: the :class:`~visionkit.formats.coco.CategoryMap` of the instances.
        kp_cats: COCO: the point categories (one list for every split, so ids agree between the files).
        sources: how YOLO errors name where the file names come from.
        ls_root, final: Label Studio's document root and where ``work``'s contents end up.
    """

    def __init__(self, format: str, work: Path, cats, *, kp_cats: Sequence | None = None,
                 polygons: bool = False, polygon_holes: str = "rle", ls_root: Path | None = None,
                 final: Path | None = None, sources: str = "the annotations") -> None:
        self.format, self.work, self.cats, self.kp_cats = format, work, cats, kp_cats
        self.polygons, self.polygon_holes, self.ls_root, self.final = polygons, polygon_holes, ls_root, final
        self.sources = sources
        self.report: Counter = Counter()  # holes_filled, ..., unmapped:<label>
        self.written: Counter = Counter()  # split -> images
        self.annotations = 0
        self.points_written = 0
        self._open: dict[str, object] = {}

    def _writer(self, part: str):
        writer = self._open.get(part)
        if writer is not None:
            return writer
        fmt = self.format
        if fmt == "coco":
            writer = _Coco(self.work / "annotations", part, self.cats, self.kp_cats, polygons=self.polygons,
                           polygon_holes=self.polygon_holes, report=self.report)
        elif fmt == "hf":
            from .hf import MetadataWriter

            writer = MetadataWriter(self.work / part, self.cats, self.report)
        elif fmt == "label-studio":
            from .label_studio import TasksWriter

            writer = TasksWriter(self.work, part, self.cats, self.report, polygons=self.polygons,
                                 root=self.ls_root, final=self.final)
        else:
            from .yolo import LabelWriter  # shapely is imported only for YOLO exports

            writer = LabelWriter(self.work / "labels" / part, self.cats, segment=fmt == "yolo-segment",
                                 report=self.report, source=self.sources)
        self._open[part] = writer
        return writer

    def add(self, part: str, name: str, wh: tuple[int, int], dets: Detections, points: list | None = None
            ) -> int:
        """Write one image's labels into split ``part``; returns the instances written."""
        writer = self._writer(part)
        n = writer.add(name, wh, dets, points) if self.format == "coco" else writer.add(name, wh, dets)
        self.written[part] += 1
        self.annotations += n
        return n

    def close(self) -> None:
        """Finish every split's files (in the order their first image came)."""
        try:
            for writer in self._open.values():
                writer.close()
                self.points_written += getattr(writer, "points_written", 0)
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop every file not finished yet."""
        for writer in self._open.values():
            writer.discard()
        self._open.clear()
