"""Pointing answers (``"point": [y, x]``) as COCO keypoints: one category per label, one keypoint each.

A point has no extent, so it is not a COCO *instance* (an instances file needs a box or a mask, and a
zero-size box breaks importers and COCOeval). Points go to their own COCO keypoints file instead, the
format of COCO's ``person_keypoints_*.json``:

* every category has ``"keypoints": ["point"]`` and ``"skeleton": []``;
* every annotation has ``"keypoints": [x, y, 2]`` (pixel position, 2 = labelled and visible),
  ``"num_keypoints": 1``, ``"bbox": [x, y, 0, 0]``, ``"area": 0`` and ``"iscrowd": 0``, and no
  ``segmentation``; ``score`` where the answer gave one.

Every detection whose ``points`` row is finite is written (a detection with a box and a point is also in
the instances file). Pure: no IO except :func:`write_keypoints`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.detections import Detections

__all__ = ["KEYPOINT_NAME", "point_annotations", "keypoints_dataset"]

#: The one keypoint of every point category.
KEYPOINT_NAME = "point"


def point_annotations(detections: Detections) -> list[dict]:
    """Keypoint annotations of one image without ids: each has ``label`` instead of ``category_id``."""
    if detections.points is None:
        return []
    out = []
    for i in np.flatnonzero(np.isfinite(detections.points).all(axis=1)):
        x, y = (round(float(v), 2) for v in detections.points[i])
        ann: dict[str, Any] = {"label": str(detections.labels[i]), "keypoints": [x, y, 2],
                               "num_keypoints": 1, "bbox": [x, y, 0.0, 0.0], "area": 0.0, "iscrowd": 0}
        if detections.scores is not None and not np.isnan(detections.scores[i]):
            ann["score"] = round(float(detections.scores[i]), 4)
        out.append(ann)
    return out


def keypoints_dataset(images: Iterable[tuple[str, int, int, Sequence[Mapping]]],
                      categories: Sequence[str | Mapping] | None = None) -> dict:
    """A COCO keypoints dataset from ``(file_name, width, height, point_annotations)`` entries.

    Image ids follow the entry order from 1 (only images with at least one point are listed).
    Categories work as in :func:`visionkit.formats.coco.to_coco`; unmapped labels are reported in
    ``info["visionkit"]``.
    """
    from .coco import CategoryMap, assemble

    entries = [(f, int(w), int(h), list(anns)) for f, w, h, anns in images if anns]
    cats = CategoryMap(categories).fit(a["label"] for *_, anns in entries for a in anns)
    imgs, annotations, unmapped = [], [], Counter()
    for image_id, (file_name, width, height, anns) in enumerate(entries, start=1):
        imgs.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for ann in anns:
            cat = cats.lookup(ann["label"])
            if cat is None:
                unmapped[ann["label"]] += 1
                continue
            row = {"id": len(annotations) + 1, "image_id": image_id, "category_id": cat}
            row.update((k, v) for k, v in ann.items() if k != "label")
            annotations.append(row)
    ds = assemble(imgs, annotations, cats, Counter({"points": len(annotations)}), unmapped,
                  {"description": "Points (pointing answers) made by visionkit, as COCO keypoints"})
    for cat in ds["categories"]:
        cat["keypoints"] = [KEYPOINT_NAME]
        cat["skeleton"] = []
    return ds


def write_keypoints(path: str | os.PathLike, dataset: dict) -> None:
    """Write a keypoints dataset atomically."""
    from ..media.atomic import write_json_atomic

    write_json_atomic(path, dataset)
