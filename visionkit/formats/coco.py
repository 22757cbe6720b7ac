"""Detections -> a COCO dataset dict that loads in pycocotools, CVAT, FiftyOne and trainers.

Annotation fields:

* ``bbox``: ``[x, y, w, h]`` of the model's box snapped OUTWARD to whole pixels (``floor`` of the min
  edges, ``ceil`` of the max edges, clipped to the image), so it stays within 1 px of the model's box and
  holds every pixel of the mask (see :mod:`visionkit.formats.instances`). Mask pixels of a polygon mask
  that reach outside that box are cut off and counted (``mask_pixels_clipped``).
* ``area``: the mask's pixel count (with ``polygon_holes="fill"``, the count with its holes filled, which
  is what the polygons cover), or the box area when there is no mask.
* ``iscrowd``: 0 unless the caller says otherwise. Crowd is never inferred from holes or several parts:
  trainers (detectron2, mmdetection) ignore crowd instances.
* ``segmentation``, one of three choices: compressed RLE (``counts`` as str, encoded from the crop; the
  default), polygons (``polygons=True``), or polygons with holes filled (``polygons=True,
  polygon_holes="fill"``). A detection WITHOUT a mask (detect task, an undecodable or empty mask) gets
  its box as one 4-point polygon of 8 numbers, ``[[x0, y0, x1, y0, x1, y1, x0, y1]]``: pycocotools
  ``annToMask`` and ``COCOeval(..., "segm")``, torchvision, datumaro and label-studio-converter all accept
  it, where ``[]`` crashes several of them. Counted as ``box_only``.
* ``score``: when the answer gave one.

Categories: ids start at 1 and are stable across the whole dataset. Without a category list, every
distinct label (compared after :func:`normalize_label`) becomes a category, sorted by name. With a list
(or :func:`load_categories` of a file, for ids that stay the same across runs), labels are matched
case-insensitively after normalisation (whitespace, case, simple plurals, optional aliases); labels that
match nothing are counted in the report and their detections dropped.

The report (unmapped labels, point-only detections skipped, polygon fallbacks, box-only annotations) is
stored under ``info["visionkit"]`` so nothing is lost silently.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.boxes import xyxy_to_xywh
from ..core.detections import Detections
from ..core.text import normalize_label
from ..errors import ExportError, InputError
from ..media.filekind import read_regular_text
from .instances import box_polygon, clip_crop_to_box, snap_boxes

__all__ = [
    "CategoryMap",
    "load_categories",
    "image_annotations",
    "to_coco",
    "to_results",
]

class CategoryMap:
    """Label -> category id. Ids start at 1.

    Args:
        categories: None (learn from labels with :meth:`fit`), a list of names (ids follow the list
            order), or COCO category dicts with ``id`` and ``name`` (their ids are kept).
        aliases: optional ``{alias: category name}`` extra spellings.
    """

    def __init__(self, categories: Sequence[str | Mapping] | None = None,
                 aliases: Mapping[str, str] | None = None):
        self.fixed = categories is not None
        self._cats: list[dict] = []
        self._by_id: dict[int, dict] = {}   # id -> category, and normalised name -> category: the
        self._by_key: dict[str, dict] = {}  # duplicate checks, without rescanning every category
        self._index: dict[str, int] = {}    # normalised name or alias -> id
        if categories is not None:
            for pos, cat in enumerate(categories):
                if isinstance(cat, Mapping):
                    if "name" not in cat or "id" not in cat:
                        raise ExportError(f"category {pos} needs 'id' and 'name', got {dict(cat)}")
                    entry = {"id": int(cat["id"]), "name": str(cat["name"]),
                             "supercategory": str(cat.get("supercategory", "object"))}
                else:
                    entry = {"id": pos + 1, "name": str(cat), "supercategory": "object"}
                if entry["id"] < 1:
                    raise ExportError(f"category {entry['name']!r} has id {entry['id']}; ids must be >= 1 "
                                      "(0 means 'no label' to CVAT/datumaro)")
                self._add(entry)
        for alias, name in (aliases or {}).items():
            target = self._index.get(normalize_label(name))
            if target is None:
                raise ExportError(f"alias {alias!r} points to unknown category {name!r}")
            self._index[normalize_label(alias)] = target

    def _add(self, entry: dict) -> None:
        key = normalize_label(entry["name"])
        other = self._by_id.get(entry["id"])
        if other is not None:
            raise ExportError(f"duplicate category id {entry['id']} ({other['name']!r} and "
                              f"{entry['name']!r})")
        other = self._by_key.get(key)
        if other is not None:
            raise ExportError(f"duplicate category {entry['name']!r}: it matches {other['name']!r} once "
                              "case, spaces and plurals are ignored; keep one of them")
        self._cats.append(entry)
        self._by_id[entry["id"]] = self._by_key[key] = entry
        self._index[key] = entry["id"]

    def fit(self, labels: Iterable[str]) -> CategoryMap:
        """Learn categories from labels when none were given: one per normalised label, sorted by name.

        A category's name is its most frequent spelling. Does nothing for a fixed category list.
        """
        if self.fixed:
            return self
        spellings: dict[str, Counter] = {}
        seen: dict[str, Counter] = {}  # label -> its spellings' Counter: each distinct label normalised once
        for label in labels:
            counter = seen.get(label)
            if counter is None:
                counter = seen[label] = spellings.setdefault(normalize_label(label), Counter())
            counter[str(label).strip()] += 1
        names = sorted(min(c, key=lambda s: (-c[s], s)) for c in spellings.values())
        start = max((c["id"] for c in self._cats), default=0)
        for offset, name in enumerate(n for n in names if normalize_label(n) not in self._index):
            self._add({"id": start + offset + 1, "name": name, "supercategory": "object"})
        return self

    def lookup(self, label: str) -> int | None:
        """Category id of ``label``, or None when it maps to no category."""
        return self._index.get(normalize_label(label))

    @property
    def categories(self) -> list[dict]:
        """COCO ``categories`` entries, sorted by id."""
        return sorted((dict(c) for c in self._cats), key=lambda c: c["id"])


def image_annotations(detections: Detections, *, polygons: bool = False, iscrowd: int = 0,
                      polygon_holes: str = "rle", report: Counter | None = None) -> list[dict]:
    """Annotations of one image without ids: each has ``label`` instead of ``category_id``.

    Args:
        polygons: write polygons instead of RLE (see :mod:`visionkit.core.polygons`).
        polygon_holes: with ``polygons``, what to do with a mask that has holes, which COCO polygons
            cannot express: ``"rle"`` keeps that annotation as RLE, ``"fill"`` writes the outer polygons
            (holes filled). Both are counted in ``report``.
        report: a Counter to add ``points_skipped`` / ``polygon_rle_fallback`` / ``holes_filled`` /
            ``box_only`` / ``empty_masks`` / ``masks_clipped`` / ``mask_pixels_clipped`` to.
    """
    check_polygon_holes(polygon_holes)
    report = Counter() if report is None else report
    image_wh = detections.image_wh
    xywh = xyxy_to_xywh(detections.xyxy)
    report["dedupe_merged"] += sum(w.field == "dedupe" for w in detections.warnings)  # quality.dedupe
    out = []
    boxes = snap_boxes(detections.xyxy, image_wh).tolist()
    point_only = ((xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)).tolist()
    labels = detections.labels.tolist()
    masks = detections.masks if detections.masks is not None else (None,) * len(boxes)
    scores = None if detections.scores is None else detections.scores.tolist()
    for i, box in enumerate(boxes):
        if point_only[i]:
            report["points_skipped"] += 1  # point-only: not a COCO instance (see formats.keypoints)
            continue
        bx0, by0, bx1, by1 = box
        ann: dict[str, Any] = {"label": str(labels[i]),
                               "bbox": [float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)],
                               "iscrowd": int(iscrowd)}
        crop = masks[i]
        if crop is not None:
            crop, cut = clip_crop_to_box(crop, box)
            if cut:
                report["masks_clipped"] += 1
                report["mask_pixels_clipped"] += cut
            area = crop.area()
            if area == 0:
                report["empty_masks"] += 1
                crop = None
        if crop is None:
            report["box_only"] += 1
            ann["area"] = float((bx1 - bx0) * (by1 - by0))
            ann["segmentation"] = [box_polygon(box)]
        else:
            ann["area"] = float(area)
            ann["segmentation"] = _segment(crop, image_wh, polygons, polygon_holes, report)
            if polygons and polygon_holes == "fill" and isinstance(ann["segmentation"], list):
                from ..core.polygons import filled_area

                ann["area"] = float(filled_area(crop))  # the area of what is written: holes filled
        if scores is not None and not math.isnan(scores[i]):
            ann["score"] = round(scores[i], 4)
        out.append(ann)
    return out


def check_polygon_holes(polygon_holes: str) -> None:
    """Raise ExportError unless ``polygon_holes`` is ``"rle"`` or ``"fill"``."""
    if polygon_holes not in ("rle", "fill"):
        raise ExportError(f"polygon_holes must be 'rle' or 'fill', got {polygon_holes!r}")


def _segment(crop, image_wh: tuple[int, int], polygons: bool, polygon_holes: str, report: Counter) -> Any:
    """The segmentation of a non-empty crop: RLE, or polygons (with the hole policy)."""
    if polygons:
        from ..core.polygons import crop_to_polygons  # shapely is imported only when polygons are asked

        polys, has_holes = crop_to_polygons(crop, report=report)
        if polys and not (has_holes and polygon_holes == "rle"):
            if has_holes:
                report["holes_filled"] += 1
            return polys
        # holes kept honest, or too small to draw as a valid polygon: RLE
        report["polygon_rle_fallback"] += 1
    from ..core.rle import crop_to_rle

    return crop_to_rle(crop, image_wh)


def load_categories(path: str | os.PathLike) -> list[str | dict]:
    """Read a category list from a file, for ids that stay the same across runs.

    Accepted: a ``.json`` file holding a COCO dataset (its ``categories`` are used), a list of COCO
    category dicts (``id``, ``name``; ids kept), or a list of names (ids 1, 2, ... in order); any other
    file is a names file, one name per line (blank lines and lines starting with ``#`` ignored), as in
    YOLO's ``classes.txt``.

    Raises:
        ExportError: the file is missing, unreadable or holds no categories; the message names it.
    """
    path = Path(path)
    try:
        text = read_regular_text(path, expected="a categories file", encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, InputError) as exc:
        raise ExportError(f"cannot read categories file {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(f"categories file {path} is not valid JSON ({exc})") from exc
        if isinstance(data, Mapping):
            data = data.get("categories")
        if not isinstance(data, list) or not all(isinstance(c, (str, Mapping)) for c in data):
            raise ExportError(f"categories file {path}: expected a COCO file with 'categories', a list of "
                              "{'id', 'name'} dicts or a list of names")
        cats = list(data)
    else:
        lines = (line.strip() for line in text.splitlines())
        cats = [line for line in lines if line and not line.startswith("#")]
    if not cats:
        raise ExportError(f"categories file {path} holds no categories")
    CategoryMap(cats)  # duplicates and bad ids fail here, naming the category
    return cats


def to_coco(items: Iterable[tuple[str, tuple[int, int], Detections]],
            categories: Sequence[str | Mapping] | None = None, *, aliases: Mapping[str, str] | None = None,
            polygons: bool = False, polygon_holes: str = "rle", iscrowd: int = 0,
            info: Mapping | None = None) -> dict:
    """Build a COCO dataset dict from ``(file_name, (width, height), Detections)`` items.

    Image ids follow the item order from 1. See the module docstring for the fields and categories.

    Raises:
        ExportError: inconsistent input (size mismatch, duplicate file name, bad categories).
    """
    report: Counter = Counter()
    images, per_image = [], []
    seen: set[str] = set()
    for image_id, entry in enumerate(items, start=1):
        try:
            file_name, size_wh, dets = entry
        except (TypeError, ValueError) as exc:
            raise ExportError(f"item {image_id - 1} must be (file_name, (width, height), Detections)"
                              ) from exc
        width, height = (int(v) for v in size_wh)
        if (width, height) != tuple(dets.image_wh):
            raise ExportError(f"{file_name}: size {width}x{height} differs from its detections' "
                              f"image_wh {dets.image_wh[0]}x{dets.image_wh[1]}")
        if file_name in seen:
            raise ExportError(f"{file_name}: appears twice; file names must be unique")
        seen.add(file_name)
        images.append({"id": image_id, "file_name": str(file_name), "width": width, "height": height})
        per_image.append(image_annotations(dets, polygons=polygons, iscrowd=iscrowd,
                                           polygon_holes=polygon_holes, report=report))
    cats = CategoryMap(categories, aliases)
    cats.fit(a["label"] for anns in per_image for a in anns)
    annotations = []
    unmapped: Counter = Counter()
    for image, anns in zip(images, per_image):
        for ann in anns:
            done = finish_annotation(ann, image["id"], len(annotations) + 1, cats, unmapped)
            if done is not None:
                annotations.append(done)
    return assemble(images, annotations, cats, report, unmapped, info)


def finish_annotation(ann: dict, image_id: int, ann_id: int, cats: CategoryMap, unmapped: Counter
                      ) -> dict | None:
    """Turn an :func:`image_annotations` entry into a COCO annotation, or None (counted) if unmapped."""
    category_id = cats.lookup(ann["label"])
    if category_id is None:
        unmapped[ann["label"]] += 1
        return None
    out = {"id": ann_id, "image_id": image_id, "category_id": category_id, **ann}
    del out["label"]
    return out


def assemble(images: list[dict], annotations: list[dict], cats: CategoryMap, report: Counter,
             unmapped: Counter, info: Mapping | None = None) -> dict:
    """The dataset dict, with ``info["visionkit"]`` holding the export report."""
    summary = {k: v for k, v in report.items() if v}
    if unmapped:
        summary["unmapped_labels"] = dict(sorted(unmapped.items()))
        summary["unmapped_detections"] = sum(unmapped.values())
    base_info = {"description": "Annotations made by visionkit from Gemini answers",
                 "version": "1.0",
                 "date_created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    base_info.update(info or {})
    base_info["visionkit"] = summary
    return {"info": base_info, "licenses": [], "images": images, "categories": cats.categories,
            "annotations": annotations}


def to_results(dataset: Mapping, kind: str = "segm", default_score: float = 1.0) -> list[dict]:
    """COCO *results* (for ``COCO.loadRes``/COCOeval) from a COCO dataset: "use my labels as predictions".

    Every annotation is kept. For ``"segm"`` each segmentation (RLE, polygons, or a box-only polygon) is
    given as compressed RLE, the only form ``loadRes`` accepts for masks, and ``bbox`` is left out
    (pycocotools would otherwise take the box area as the mask area). ``score`` is the annotation's score,
    or ``default_score`` where the answer had none.

    Raises:
        ExportError: unknown ``kind``, or an annotation whose image or segmentation is missing.
    """
    if kind not in ("segm", "bbox"):
        raise ExportError(f"kind must be 'segm' or 'bbox', got {kind!r}")
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in dataset.get("images", [])}
    out = []
    for ann in dataset["annotations"]:
        row = {"image_id": ann["image_id"], "category_id": ann["category_id"],
               "score": ann.get("score", default_score)}
        if kind == "bbox":
            row["bbox"] = ann["bbox"]
        else:
            if ann["image_id"] not in sizes:
                raise ExportError(f"annotation {ann.get('id')}: image {ann['image_id']} is not in 'images'")
            row["segmentation"] = _as_rle(ann, *sizes[ann["image_id"]])
        out.append(row)
    return out


def _as_rle(ann: Mapping, height: int, width: int) -> dict:
    """An annotation's segmentation as compressed RLE with str counts."""
    from .coco_read import segmentation_rle

    rle = segmentation_rle(ann, height, width)
    if rle is None:
        raise ExportError(f"annotation {ann.get('id')} has no segmentation; expected RLE or polygons")
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
