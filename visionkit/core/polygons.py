"""Binary mask crops -> COCO polygons, for tools that reject RLE.

Outer boundaries come from OpenCV contours (through the centres of the boundary pixels), grown by half a
pixel with a mitred shapely buffer so that they follow the pixel edges (COCO polygons use continuous
coordinates: ``[0, 0, 1, 0, 1, 1, 0, 1]`` covers the first pixel), then simplified with shapely
(``tolerance`` in pixels, topology preserved), and cut to the crop's pixel box. Every polygon written is
valid, has at least 3 points and lies inside the crop's box.

A mask in several parts gives several polygons, LARGEST FIRST: readers that keep only the first polygon of
an annotation (label-studio-converter's COCO import, sahi) then get the object's body, not a speck.
Parts of less than :data:`MIN_PART_AREA` square pixels (slivers that simplification and the cut to the
crop's box leave behind; a whole pixel is 1.0) are dropped and counted (``polygon_specks_dropped``).

COCO polygons of one annotation are a union, so they cannot express holes. :func:`crop_to_polygons`
returns whether the mask has holes and leaves the choice (fall back to RLE, or fill) to the caller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from .maskcrop import MaskCrop

__all__ = ["MIN_PART_AREA", "crop_to_polygons", "crops_to_polygons", "filled_area"]

#: Polygon parts smaller than this (square pixels) are dropped: less than one pixel, so no pixel's centre
#: is surely inside them.
MIN_PART_AREA = 1.0


def crop_to_polygons(crop: MaskCrop, tolerance: float = 0.3, report: Counter | None = None
                     ) -> tuple[list[list[float]], bool]:
    """Polygons ``[[x1, y1, x2, y2, ...], ...]`` in image pixels of a crop's outer boundaries, largest
    first.

    Args:
        report: a Counter to add ``polygon_specks_dropped`` to (parts under :data:`MIN_PART_AREA`).

    Returns:
        ``(polygons, has_holes)``; ``polygons`` is empty when the mask is empty.
    """
    data = crop.data
    if data.size == 0 or not data.any():
        return [], False
    padded = np.pad(data.astype(np.uint8), 1)
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    has_holes = bool((hierarchy[0][:, 3] >= 0).any())
    # -1 for the padding, +0.5 to the pixel centre, + the crop offset.
    offset = np.array([crop.x0 - 0.5, crop.y0 - 0.5])
    shapes = []
    for contour, links in zip(contours, hierarchy[0]):
        if links[3] >= 0:
            continue  # a hole
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
    # A mitred corner of a diagonal run reaches up to ~0.2 px past the pixel edges: cut the polygons to the
    # crop's own pixel box, so they never leave the annotation's bbox (which holds the crop).
    merged = merged.intersection(shapely.box(*crop.xyxy))
    return _rings(merged, report), has_holes


def crops_to_polygons(crops: Sequence[MaskCrop], tolerance: float = 0.3, report: Counter | None = None
                      ) -> list[tuple[list[list[float]], bool]]:
    """:func:`crop_to_polygons` of many crops, with the same result for each: the contours are found one
    crop at a time, but shapely's buffer, validity, simplify and intersection run once over all of them
    (its vectorised functions, the same GEOS operations with the same parameters), which saves the
    Python overhead of a dozen calls per mask: a YOLO-segment export spent half its time there."""
    results: list[tuple[list[list[float]], bool]] = [([], False)] * len(crops)
    shapes: list = []  # one per outer contour, with the crop it belongs to
    owner: list[int] = []
    rings: list[np.ndarray] = []
    ring_at: list[int] = []  # positions in ``shapes`` still to be made polygons, vectorised
    holes = [False] * len(crops)
    for i, crop in enumerate(crops):
        data = crop.data
        if data.size == 0 or not data.any():
            continue
        padded = np.pad(data.astype(np.uint8), 1)
        contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        holes[i] = bool((hierarchy[0][:, 3] >= 0).any())
        offset = np.array([crop.x0 - 0.5, crop.y0 - 0.5])
        for contour, links in zip(contours, hierarchy[0]):
            if links[3] >= 0:
                continue
            pts = contour.reshape(-1, 2).astype(np.float64) + offset
            owner.append(i)
            if len(pts) == 1:
                shapes.append(shapely.Point(pts[0]))
            elif len(pts) == 2:
                shapes.append(shapely.LineString(pts))
            else:
                ring_at.append(len(shapes))
                rings.append(pts)
                shapes.append(None)
    if not shapes:
        return results
    if rings:
        made = shapely.polygons(shapely.linearrings(np.concatenate(rings),
                                                    indices=np.repeat(np.arange(len(rings)),
                                                                      [len(r) for r in rings])))
        bad = ~shapely.is_valid(made)
        if bad.any():
            made[bad] = shapely.make_valid(made[bad])
        for at, geom in zip(ring_at, made):
            shapes[at] = geom
    grown = shapely.buffer(np.array(shapes, dtype=object), 0.5, quad_segs=16, join_style="mitre",
                           cap_style="square", mitre_limit=5.0)
    per_crop: dict[int, list] = {}
    for i, geom in zip(owner, grown):
        per_crop.setdefault(i, []).append(geom)
    order = list(per_crop)
    merged = np.array([shapely.union_all(g) if len(g) > 1 else g[0] for g in per_crop.values()], dtype=object)
    merged = shapely.simplify(merged, tolerance, preserve_topology=True)
    bounds = np.array([crops[i].xyxy for i in order], dtype=np.float64).reshape(-1, 4)
    merged = shapely.intersection(merged, shapely.box(*bounds.T))
    for i, geom in zip(order, merged):
        results[i] = (_rings(geom, report), holes[i])
    return results


def _rings(merged, report: Counter | None) -> list[list[float]]:
    """The outlines of ``merged``'s polygons, largest first; parts under :data:`MIN_PART_AREA` dropped."""
    out = []
    for poly in sorted(_polygons(merged), key=lambda p: -p.area):
        ring = np.asarray(poly.exterior.coords)[:-1]
        if len(ring) < 3 or poly.area < MIN_PART_AREA:
            if report is not None and poly.area > 0:
                report["polygon_specks_dropped"] += 1
            continue
        out.append([round(v, 2) for v in ring.reshape(-1).tolist()])  # Python floats: 5x faster
    return out


def _polygons(geom) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def filled_area(crop: MaskCrop) -> int:
    """Pixel count of the crop with its holes filled (background not connected to the crop's border)."""
    data = crop.data
    if data.size == 0:
        return 0
    padded = np.pad(data.astype(np.uint8), 1)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, mask, (0, 0), 2, flags=4)  # the outside becomes 2; holes stay 0
    return int(np.count_nonzero(padded != 2))
