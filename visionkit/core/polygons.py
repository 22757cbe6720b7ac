"""Binary mask crops -> COCO polygons, for tools that reject RLE.

Outer boundaries come from OpenCV contours (through the centres of the boundary pixels), grown by half a
pixel with a mitred shapely buffer so that they follow the pixel edges (COCO polygons use continuous
coordinates: ``[0, 0, 1, 0, 1, 1, 0, 1]`` covers the first pixel), then simplified with shapely
(``tolerance`` in pixels, topology preserved), and cut to the crop's pixel box. Every polygon written is
valid, has at least 3 points and lies inside the crop's box. A mask in one part with a simple outline gets
the same buffer computed in numpy (:func:`_grow`, the same doubles as GEOS's), see docs/performance.md.

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
    return crops_to_polygons([crop], tolerance, report)[0]


def crops_to_polygons(crops: Sequence[MaskCrop], tolerance: float = 0.3, report: Counter | None = None
                      ) -> list[tuple[list[list[float]], bool]]:
    """:func:`crop_to_polygons` of many crops. The contours are found one crop at a time; shapely's
    validity, simplify and intersection run once over all of them (its vectorised functions).

    The common case, a crop whose mask is one part with a simple outline, takes a fast path
    (:func:`_grow`): the half-pixel mitred buffer is computed in numpy, with GEOS's own formula, and the
    cut to the crop's box is skipped when nothing reaches past it. Parts, holes, self-touching outlines
    and outlines whose buffer would fold onto itself go through shapely's ``buffer`` and ``union_all``."""
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
        padded = cv2.copyMakeBorder(data.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
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
    parts = np.bincount(owner)
    fast: dict[int, object] = {}  # crop -> its grown outline, from the fast path
    if rings:
        made = shapely.polygons(shapely.linearrings(np.concatenate(rings),
                                                    indices=np.repeat(np.arange(len(rings)),
                                                                      [len(r) for r in rings])))
        valid = shapely.is_valid(made)
        if not valid.all():
            made[~valid] = shapely.make_valid(made[~valid])
        single = [k for k, at in enumerate(ring_at) if valid[k] and parts[owner[at]] == 1]
        if single:
            boxes = [crops[owner[ring_at[k]]].xyxy for k in single]
            grown, ok, inside = _grow([rings[k] for k in single], boxes)
            for k, geom, good, within in zip(single, grown, ok, inside):
                if good:
                    fast[owner[ring_at[k]]] = (geom, within)
        for at, geom in zip(ring_at, made):
            shapes[at] = geom
    slow = [k for k, i in enumerate(owner) if i not in fast]
    per_crop: dict[int, list] = {}
    if slow:
        grown = shapely.buffer(np.array([shapes[k] for k in slow], dtype=object), 0.5, quad_segs=16,
                               join_style="mitre", cap_style="square", mitre_limit=5.0)
        for k, geom in zip(slow, grown):
            per_crop.setdefault(owner[k], []).append(geom)
    order = list(fast) + list(per_crop)
    merged = np.array([g for g, _ in fast.values()]
                      + [shapely.union_all(g) if len(g) > 1 else g[0] for g in per_crop.values()],
                      dtype=object)
    merged = shapely.simplify(merged, tolerance, preserve_topology=True)
    # A mitred corner of a diagonal run reaches up to ~0.2 px past the pixel edges: cut the polygons to the
    # crop's own pixel box, so they never leave the annotation's bbox (which holds the crop). A fast-path
    # outline with every vertex inside the box is not cut: the cut would return it unchanged, starting at
    # its second vertex (GEOS's overlay output), which _outlines reproduces.
    inside = np.zeros(len(order), bool)
    inside[:len(fast)] = [within for _, within in fast.values()]
    if not inside.all():
        bounds = np.array([crops[i].xyxy for i in order], dtype=np.float64)[~inside]
        merged[~inside] = shapely.intersection(merged[~inside], shapely.box(*bounds.T))
    for i, polys in zip(order, _outlines(merged, inside, report)):
        results[i] = (polys, holes[i])
    return results


def _grow(rings: list[np.ndarray], boxes: list[tuple[int, int, int, int]], r: float = 0.5,
          mitre_limit: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``shapely.buffer(Polygon(ring), r, join_style="mitre", mitre_limit=5)`` of simple rings, in numpy.

    GEOS offsets each edge by ``r`` (``OffsetSegmentGenerator::computeOffsetSegment``) and puts each
    vertex at the crossing of its two offset edges; when the offset ring is simple, that ring is the
    buffer, starting at the same vertex. The crossing is computed in extended precision, as GEOS does
    (``CGAlgorithmsDD::intersection``, double-double), so the vertices are the same doubles; where numpy's
    ``longdouble`` is plain double (e.g. macOS on ARM) a vertex can differ in its last bit, and
    simplification can then keep a different vertex (polygons then still overlap with IoU > 0.99).

    Returns ``(polygons, ok, inside)``: ``ok`` is False where this shortcut does not hold (a turn that is
    straight, a spike, a mitre over the limit, an inner corner whose offset edges miss each other, an
    offset ring that is not simple): those rings must go through shapely's buffer. ``inside``: every
    vertex lies inside the ring's box (``x0, y0, x1, y1``).
    """
    n = np.array([len(q) for q in rings])
    pts = np.concatenate(rings)
    first = np.repeat(np.cumsum(n) - n, n)
    size = np.repeat(n, n)
    pos = np.arange(len(pts))
    nxt = np.where(pos + 1 == first + size, first, pos + 1)
    prv = np.where(pos == first, first + size - 1, pos - 1)
    d = pts[nxt] - pts  # edge k runs from vertex k to vertex nxt[k]
    twice_area = np.add.reduceat(pts[:, 0] * pts[nxt, 1] - pts[nxt, 0] * pts[:, 1], np.cumsum(n) - n)
    side = np.repeat(np.where(twice_area > 0, -r, r), n)  # counter-clockwise: offset to the right
    length = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    ux, uy = side * d[:, 0] / length, side * d[:, 1] / length
    a0 = np.stack([pts[:, 0] - uy, pts[:, 1] + ux], axis=1)  # offset edge k: a0[k] -> a1[k]
    a1 = np.stack([pts[nxt, 0] - uy, pts[nxt, 1] + ux], axis=1)
    # vertex k: the crossing of offset edges prv[k] (p) and k (q)
    start = a0.astype(np.longdouble)
    step = a1.astype(np.longdouble) - start  # exact: the two are doubles of the same magnitude
    p1, pd, qd = start[prv], step[prv], step
    w = start - p1
    denom = pd[:, 0] * qd[:, 1] - pd[:, 1] * qd[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac_p = (w[:, 0] * qd[:, 1] - w[:, 1] * qd[:, 0]) / denom
        out = (p1 + pd * frac_p[:, None]).astype(np.float64)
        # where the crossing lies on offset edge k (only checked against a margin: doubles will do)
        frac_q = ((w[:, 0] * pd[:, 1] - w[:, 1] * pd[:, 0]) / denom).astype(np.float64)
        frac_p = frac_p.astype(np.float64)
    turn = d[prv, 0] * d[:, 1] - d[prv, 1] * d[:, 0]
    inner = side * turn > 0  # the offset side is inside this turn (GEOS: addInsideTurn)
    eps = 1e-9
    good = (turn != 0) & np.isfinite(out).all(axis=1)
    good &= np.hypot(*(out - pts).T) <= mitre_limit * r
    good &= ~inner | ((frac_p > eps) & (frac_p < 1 - eps) & (frac_q > eps) & (frac_q < 1 - eps))
    ring_of = np.repeat(np.arange(len(rings)), n)
    polys = shapely.polygons(shapely.linearrings(out, indices=ring_of))
    ok = np.logical_and.reduceat(good, np.cumsum(n) - n) & shapely.is_valid(polys)
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[ring_of]
    within = (out >= box[:, :2]).all(axis=1) & (out <= box[:, 2:]).all(axis=1)
    return polys, ok, np.logical_and.reduceat(within, np.cumsum(n) - n)


def _outlines(merged: np.ndarray, rotate: np.ndarray, report: Counter | None) -> list[list[list[float]]]:
    """The outlines of each of ``merged``'s geometries' polygons, largest first (ties in order); parts
    under :data:`MIN_PART_AREA` dropped and counted. ``rotate``: start each outline at its second
    vertex."""
    out: list[list[list[float]]] = [[] for _ in merged]
    parts, owner = shapely.get_parts(merged, return_index=True)
    polygon = shapely.get_type_id(parts) == 3  # lines and points that the cut leaves are no outlines
    parts, owner = parts[polygon], owner[polygon]
    if not len(parts):
        return out
    area = shapely.area(parts)
    coords, at = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    count = np.bincount(at, minlength=len(parts))
    start = np.cumsum(count) - count
    rounded = _round2(coords)
    for k in np.lexsort((-area, owner)).tolist():
        size = int(count[k]) - 1  # without the closing point
        if size < 3 or area[k] < MIN_PART_AREA:
            if report is not None and area[k] > 0:
                report["polygon_specks_dropped"] += 1
            continue
        flat = rounded[start[k]:start[k] + size].reshape(-1).tolist()
        out[owner[k]].append(flat[2:] + flat[:2] if rotate[owner[k]] else flat)
    return out


def _round2(values: np.ndarray) -> np.ndarray:
    """``round(v, 2)`` of every value, as Python rounds (correctly, half to even on the exact binary
    value). numpy's ``round`` scales by 100 first, which can tip a value that sits within an ulp of a
    half-cent: those few are rounded by Python."""
    fast = np.round(values, 2)
    scaled = values * 100
    near = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    if near.any():
        fast[near] = [round(v, 2) for v in values[near].tolist()]
    return fast


def filled_area(crop: MaskCrop) -> int:
    """Pixel count of the crop with its holes filled (background not connected to the crop's border)."""
    data = crop.data
    if data.size == 0:
        return 0
    padded = np.pad(data.astype(np.uint8), 1)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, mask, (0, 0), 2, flags=4)  # the outside becomes 2; holes stay 0
    return int(np.count_nonzero(padded != 2))
