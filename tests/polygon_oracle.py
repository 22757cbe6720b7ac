"""The slow, obvious oracle for :mod:`visionkit.core.polygons`: the outline code as it was before the
fast path (every step in shapely, one crop at a time), kept verbatim so the fast code can be compared
against it."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from visionkit.core.maskcrop import MaskCrop
from visionkit.core.polygons import MIN_PART_AREA


def crop_to_polygons(crop: MaskCrop, tolerance: float = 0.3, report: Counter | None = None
                     ) -> tuple[list[list[float]], bool]:
    data = crop.data
    if data.size == 0 or not data.any():
        return [], False
    padded = np.pad(data.astype(np.uint8), 1)
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    has_holes = bool((hierarchy[0][:, 3] >= 0).any())
    offset = np.array([crop.x0 - 0.5, crop.y0 - 0.5])
    shapes = []
    for contour, links in zip(contours, hierarchy[0]):
        if links[3] >= 0:
            continue
        pts = contour.reshape(-1, 2).astype(np.float64) + offset
        if len(pts) == 1:
            geom = shapely.Point(pts[0])
        elif len(pts) == 2:
            geom = shapely.LineString(pts)
        else:
            geom = Polygon(pts)
            if not geom.is_valid:
                geom = shapely.make_valid(geom)
        shapes.append(geom.buffer(0.5, join_style="mitre", cap_style="square"))
    merged = shapely.union_all(shapes) if len(shapes) > 1 else shapes[0]
    merged = merged.simplify(tolerance, preserve_topology=True)
    merged = merged.intersection(shapely.box(*crop.xyxy))
    out = []
    for poly in sorted(_polygons(merged), key=lambda p: -p.area):
        ring = np.asarray(poly.exterior.coords)[:-1]
        if len(ring) < 3 or poly.area < MIN_PART_AREA:
            if report is not None and poly.area > 0:
                report["polygon_specks_dropped"] += 1
            continue
        out.append([round(v, 2) for v in ring.reshape(-1).tolist()])
    return out, has_holes


def _polygons(geom) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
