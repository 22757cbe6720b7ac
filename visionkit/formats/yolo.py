"""Ultralytics YOLO labels: detect (``class cx cy w h``) and segment (``class x1 y1 x2 y2 ...``).

One text file per image (``labels/<split>/<name>.txt``, next to ``images/<split>/<name>.<ext>``), one line
per instance, every coordinate normalised to 0-1 by the image's width and height, with 6 decimals. Class
``i`` is the i-th category in id order (``data.yaml`` ``names``). An image without instances gets an
empty file (a background image).

Geometry is the COCO export's (:mod:`visionkit.formats.instances`): the box is the model's box snapped
outward to whole pixels, and a mask's pixels outside it are cut off.

Segment lines, and what a YOLO polygon cannot hold, handled honestly (each counted in the report):

* a mask with HOLES is written as its outer boundary: YOLO polygons have no holes, so the holes are
  filled (``holes_filled``);
* a mask in SEVERAL PARTS is written as one polygon: the parts are joined by zero-width "keyhole"
  bridges (each bridge is walked there and back, so it adds no area), the way Ultralytics' own COCO
  converter joins them (``parts_merged``);
* a detection WITHOUT a mask is written as its box, a 4-point polygon (``box_only``), because Ultralytics
  needs every line of a segment dataset to be a polygon.

Points have no YOLO detect/segment form; the export reports them instead of dropping them silently.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..errors import InputError
from ..media.atomic import SyncBatch
from ..media.paths import safe_join
from .instances import box_polygon, clip_crop_to_box, snap_boxes

__all__ = ["yolo_lines", "merge_parts", "data_yaml", "LabelWriter", "read_yolo_labels"]



def merge_parts(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Join ``(K, 2)`` rings into one ring with zero-width bridges between nearest points."""
    ring = np.asarray(parts[0], dtype=np.float64)
    for part in parts[1:]:
        part = np.asarray(part, dtype=np.float64)
        d = ((ring[:, None, :] - part[None, :, :]) ** 2).sum(axis=2)
        ia, ib = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = np.concatenate([part[ib:], part[:ib + 1]])  # around the part, back to where it started
        ring = np.concatenate([ring[:ia + 1], loop, ring[ia:]])
    return ring


def yolo_lines(detections: Detections, class_of: Mapping[str, int], *, segment: bool,
               report: Counter | None = None) -> list[str]:
    """The label lines of one image. ``class_of`` maps a label to its class index; labels it lacks are
    counted in ``report["unmapped"]`` (and ``report["unmapped:<label>"]``) and left out."""
    report = Counter() if report is None else report
    width, height = detections.image_wh
    scale = np.array([width, height], dtype=np.float64)
    lines = []
    kept = []  # (class, box, clipped mask crop or None) of each instance written, in order
    snapped = snap_boxes(detections.xyxy, detections.image_wh).tolist()  # all at once: one numpy call
    for i in range(len(detections)):
        x0, y0, x1, y1 = detections.xyxy[i]
        if x1 <= x0 or y1 <= y0:
            report["points_skipped"] += 1
            continue
        label = str(detections.labels[i])
        cls = class_of.get(label)
        if cls is None:
            report["unmapped"] += 1
            report[f"unmapped:{label}"] += 1
            continue
        box = tuple(snapped[i])
        if not segment:
            bx0, by0, bx1, by1 = box
            cx, cy = (bx0 + bx1) / 2 / width, (by0 + by1) / 2 / height
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {(bx1 - bx0) / width:.6f} {(by1 - by0) / height:.6f}")
            continue
        crop = detections.masks[i] if detections.has_mask(i) else None
        if crop is not None:
            crop, cut = clip_crop_to_box(crop, box)
            if cut:
                report["masks_clipped"] += 1
        kept.append((cls, box, crop))
    if not segment:
        return lines
    from ..core.polygons import crops_to_polygons

    # every mask's outline at once: shapely's vectorised calls (the same result as one crop at a time)
    outlines = iter(crops_to_polygons([c for _, _, c in kept if c is not None and c.area()], report=report))
    rings = []
    for _cls, box, crop in kept:
        polys, has_holes = next(outlines) if crop is not None and crop.area() else ([], False)
        rings.append(_instance_ring(polys, has_holes, box, report))
    if not rings:
        return lines
    text = _fixed6(np.clip(np.concatenate(rings) / scale, 0.0, 1.0).reshape(-1))  # every number of the image
    at = 0
    for (cls, _, _), ring in zip(kept, rings):
        lines.append(f"{cls} {text[at:at + 9 * ring.size - 1]}")
        at += 9 * ring.size
    return lines


def _fixed6(values: np.ndarray) -> str:
    """``" ".join(f"{v:.6f}" for v in values)`` for values in ``[0, 1]``, in numpy: every number is 8
    characters, so the digits are computed for all at once. Python rounds the exact binary value half to
    even; scaling by 10**6 can tip a value within an ulp of a half-millionth, so those few are formatted by
    Python."""
    if not len(values):
        return ""
    if np.signbit(values).any() or not ((values >= 0) & (values <= 1)).all():  # not 8 characters each
        return " ".join(map("{:.6f}".format, values.tolist()))
    scaled = values * 1e6
    rest = np.rint(scaled).astype(np.int64)
    cells = np.empty((len(values), 9), np.uint8)
    cells[:, 0] = 48 + rest // 1000000
    cells[:, 1] = 46  # "."
    for j in range(7, 1, -1):
        cells[:, j] = 48 + rest % 10
        rest //= 10
    cells[:, 8] = 32  # " "
    near = np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6)
    for k in near.tolist():
        cells[k, :8] = np.frombuffer(f"{values[k]:.6f}".encode("ascii"), np.uint8)
    return cells.tobytes()[:-1].decode("ascii")


def _instance_ring(polys: list, has_holes: bool, box: tuple[int, int, int, int], report: Counter
                   ) -> np.ndarray:
    """``(K, 2)`` pixel polygon of an instance: its mask's outline (``polys``, largest part first), or its
    box."""
    if polys and has_holes:
        report["holes_filled"] += 1
    if not polys:
        report["box_only"] += 1
        return np.asarray(box_polygon(box)).reshape(-1, 2)
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polys]
    if len(rings) > 1:
        report["parts_merged"] += 1
        return merge_parts(rings)  # largest part first (crop_to_polygons' order): bridges start from the body
    return rings[0]


def data_yaml(names: Sequence[str], splits: Sequence[str], empty: Sequence[str] = ()) -> str:
    """Ultralytics / FiftyOne ``dataset.yaml`` text. ``path`` is left out, so Ultralytics and FiftyOne take
    the folder holding this file: the dataset can be moved. Without a ``val`` split, or when a split is
    ``empty`` (no image fell into it), it points at the train images: an empty folder stops Ultralytics
    ("No images found"), and FiftyOne's importer reads the ``val`` split by default."""
    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar

    lines = ["# Ultralytics YOLO dataset written by visionkit export", ]
    for split in splits:
        if split in empty:
            lines.append(f"{split}: {q('images/train')}  # no image fell into {split}")
        else:
            lines.append(f"{split}: {q(f'images/{split}')}")
    if "val" not in splits:
        lines.append(f"val: {q('images/train')}  # no val split was asked for (--split val=0.2 makes one)")
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines.extend(f"  {i}: {q(name)}" for i, name in enumerate(names))
    return "\n".join(lines) + "\n"


class LabelWriter:
    """``folder/<stem>.txt`` per image (an empty file for an image without instances), made durable together
    on :meth:`close` (one ``syncfs``, see :class:`~visionkit.media.atomic.SyncBatch`). Class ``i`` is
    ``cats.categories[i]`` (a :class:`~visionkit.formats.coco.CategoryMap`).

    Raises (from :meth:`add`):
        InputError: naming ``source`` (where the file names come from), when a name would write outside
            ``folder`` (see :func:`visionkit.media.paths.safe_join`).
    """

    def __init__(self, folder: Path, cats, *, segment: bool, report: Counter, source: str) -> None:
        self.folder, self.cats, self.segment, self.report, self.source = folder, cats, segment, report, source
        self._index = {c["id"]: i for i, c in enumerate(cats.categories)}
        self._synced = SyncBatch()
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, wh: tuple[int, int], dets: Detections) -> int:
        """Write one image's label file; returns the lines written."""
        class_of = {lbl: self._index[self.cats.lookup(lbl)] for lbl in set(dets.labels.tolist())
                    if self.cats.lookup(lbl) is not None}
        lines = yolo_lines(dets, class_of, segment=self.segment, report=self.report)
        target = safe_join(self.folder, Path(name).with_suffix(".txt").as_posix(), file=self.source,
                           field="file_name")
        self._synced.write_bytes(target, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
        return len(lines)

    def close(self) -> None:
        self._synced.sync()

    def discard(self) -> None:
        pass


def read_yolo_labels(text: str, image_wh: tuple[int, int], names: Sequence[str], *,
                     source: str = "labels") -> Detections:
    """Parse one YOLO label file back into Detections (boxes in pixels; segment lines become masks).

    A segment line's box is its polygon's bounds; its mask is the polygon rasterised (pixel centres
    inside, :func:`visionkit.core.masks.polygon_to_crop`). ``source`` (the file's path) names the file in
    errors.

    Raises:
        InputError: naming ``source`` and the line, when a class is not an integer in
            ``0 .. len(names) - 1`` (a negative index would silently pick the last class), a
            coordinate is not a finite number, or the line has the wrong number of values.
    """
    from ..core.masks import polygon_to_crop

    width, height = image_wh
    scale = np.array([width, height], dtype=np.float64)
    xyxy, labels, masks = [], [], []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source} line {n}"
        try:
            cls = int(parts[0])
        except ValueError:
            raise InputError(f"{where}: class {parts[0]!r} is not an integer") from None
        if not 0 <= cls < len(names):
            raise InputError(f"{where}: class {cls} is out of range; expected 0 to {len(names) - 1} "
                             f"({len(names)} names)")
        try:
            values = np.asarray(parts[1:], dtype=np.float64)
        except ValueError:
            raise InputError(f"{where}: coordinates must be numbers, got {' '.join(parts[1:])!r}") from None
        if not np.isfinite(values).all():
            raise InputError(f"{where}: coordinates must be finite numbers")
        labels.append(names[cls])
        if len(values) == 4:
            cx, cy, w, h = values * [width, height, width, height]
            xyxy.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            masks.append(None)
        elif len(values) >= 6 and len(values) % 2 == 0:
            pts = values.reshape(-1, 2) * scale
            xyxy.append([*pts.min(axis=0), *pts.max(axis=0)])
            masks.append(polygon_to_crop([pts], image_wh))
        else:
            raise InputError(f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...'")
    boxes = np.clip(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), 0, [width, height] * 2)
    return Detections(boxes, labels, image_wh,
                      masks=tuple(masks) if any(m is not None for m in masks) else None)
