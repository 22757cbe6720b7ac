"""Gemini's 0-1000 grid <-> visionkit pixels. The ONLY module that knows Gemini's coordinate order.

Gemini formats (relative to the image that was sent, so they apply to the original image too):

* ``box_2d = [ymin, xmin, ymax, xmax]``, y first, on a 0-1000 grid.
* ``point = [y, x]`` on the same grid.
* polygon masks: a list of ``[a, b]`` 0-1000 points whose axis order is decided per item
  (see :func:`polygon_order`, then :func:`gemini_polygon_to_xy`).

visionkit formats (see :mod:`visionkit.core.detections`): ``xyxy`` float pixels with continuous edges,
points ``(x, y)``, sizes ``(width, height)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GRID",
    "gemini_to_xyxy",
    "gemini_to_pixel_box",
    "gemini_points_to_xy",
    "point_to_box_2d",
    "polygon_order",
    "guess_polygon_order",
    "OrderGuess",
    "POLYGON_ORDER_TOLERANCE",
    "gemini_polygon_to_xy",
    "xyxy_to_xywh",
    "clip_xyxy",
]

#: Gemini normalises coordinates to integers on [0, GRID].
GRID = 1000.0


def _scale_wh(image_wh: tuple[int, int]) -> tuple[float, float]:
    width, height = image_wh
    return width / GRID, height / GRID


def gemini_to_xyxy(box_2d: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Convert ``(N, 4)`` ``[ymin, xmin, ymax, xmax]`` 0-1000 boxes to float64 ``(N, 4)`` pixel ``xyxy``.

    The input must already be ordered and clipped to [0, 1000] (the parser does that). The result is
    exact (``v / 1000 * size``), not rounded, and lies inside ``[0, width] x [0, height]``: the one-ulp
    overshoot of ``1000 * (size / 1000)`` for some sizes (2007, ...) is clipped away.
    """
    box_2d = np.asarray(box_2d, dtype=np.float64).reshape(-1, 4)
    width, height = image_wh
    sx, sy = _scale_wh(image_wh)
    xyxy = box_2d[:, [1, 0, 3, 2]] * np.array([sx, sy, sx, sy])
    np.maximum(xyxy, 0, out=xyxy)  # np.minimum/maximum: np.clip's Python wrapper doubles the cost
    return np.minimum(xyxy, [width, height, width, height], out=xyxy)


def gemini_to_pixel_box(box_2d: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Integer ``(N, 4)`` ``[x0, y0, x1, y1]`` pixel boxes (x1, y1 exclusive) that a box's mask covers.

    Rounding rule: the published recipe's. Every edge is truncated, ``int(v / 1000 * size)``, which is
    what users of Google's cookbook and of supervision compare against. A mask PNG is resized to
    ``(x1 - x0, y1 - y0)``; a box whose integer size is 0 has no mask pixels.
    """
    box_2d = np.asarray(box_2d, dtype=np.float64).reshape(-1, 4)
    width, height = image_wh
    # v / 1000 * size in float64, then truncation: the recipe's exact arithmetic.
    scale = np.array([height, width, height, width], dtype=np.float64)
    yx = np.trunc(box_2d / GRID * scale).astype(np.int64)
    out = yx[:, [1, 0, 3, 2]]
    np.maximum(out, 0, out=out)
    return np.minimum(out, [width, height, width, height], out=out)


def gemini_points_to_xy(points_yx: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Convert ``(N, 2)`` ``[y, x]`` 0-1000 points to float64 ``(N, 2)`` pixel ``(x, y)``.

    Like :func:`gemini_to_xyxy`, the input must be clipped to [0, 1000] and the result stays inside the
    image, so a point-only item's point equals its degenerate box.
    """
    points_yx = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    width, height = image_wh
    sx, sy = _scale_wh(image_wh)
    xy = points_yx[:, ::-1] * np.array([sx, sy])
    return np.clip(xy, 0, [width, height], out=xy)


def point_to_box_2d(point_yx) -> list[float]:
    """A Gemini ``[y, x]`` point as the degenerate ``box_2d`` ``[y, x, y, x]`` (ymin, xmin, ymax, xmax)."""
    y, x = (float(v) for v in point_yx)
    return [y, x, y, x]


def gemini_polygon_to_xy(points: np.ndarray, order: str, image_wh: tuple[int, int]) -> np.ndarray:
    """Convert a ``(K, 2)`` 0-1000 polygon to float64 ``(K, 2)`` pixel ``(x, y)`` points.

    Args:
        points: the model's ``[a, b]`` points, as given.
        order: ``"yx"`` or ``"xy"``, the points' axis order (from :func:`polygon_order`).
        image_wh: ``(width, height)`` of the original image.

    Values are clipped to [0, 1000] first, so the result lies inside the image.
    """
    if order not in ("yx", "xy"):
        raise ValueError(f"order must be 'yx' or 'xy', got {order!r}")
    pts = np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2), 0, GRID)
    if order == "yx":
        pts = pts[:, ::-1]
    sx, sy = _scale_wh(image_wh)
    return pts * np.array([sx, sy])


#: Grid units by which the box is grown for the tie-break count of :func:`guess_polygon_order`.
POLYGON_ORDER_TOLERANCE = 15.0


@dataclass(frozen=True)
class OrderGuess:
    """What :func:`guess_polygon_order` decided, and on what evidence."""

    order: str              # "yx" or "xy"
    inside_yx: int          # points inside the box as given, read as [y, x]
    inside_xy: int          # ... read as [x, y]
    points: int
    close: bool             # the two readings are too close to call with confidence

    def note(self) -> str:
        """The per-item warning of a close call."""
        name = "[y, x]" if self.order == "yx" else "[x, y]"
        return (f"polygon point order guessed as {name}: of its {self.points} points, {self.inside_yx} fall "
                f"inside the item's box_2d read as [y, x] and {self.inside_xy} read as [x, y], too close to "
                "be sure; a prompt that states the order avoids the guess")


def guess_polygon_order(points: np.ndarray, box_2d: np.ndarray | None,
                        tolerance: float = POLYGON_ORDER_TOLERANCE) -> OrderGuess:
    """Decide whether a 0-1000 polygon's points are ``"yx"`` or ``"xy"`` (the rule the README states).

    1. Count the points inside the item's ``box_2d`` as given (edges included) when read as ``[y, x]``
       and when read as ``[x, y]``; the reading with more points inside wins.
    2. On a tie, count again with the box grown by ``tolerance`` grid units on every side (points just
       off an edge); more inside wins.
    3. Still a tie, or no box: ``"yx"``, because every other Gemini coordinate (``box_2d``, ``point``) is
       y first.

    The call is ``close`` when the counts of step 1 differ by at most a quarter of the points: the caller
    warns that the order was guessed.

    Args:
        points: ``(K, 2)`` array of 0-1000 values as given by the model.
        box_2d: ``[ymin, xmin, ymax, xmax]`` of the same item, or None.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if box_2d is None:
        return OrderGuess("yx", 0, 0, n, True)
    lo = np.array([float(box_2d[0]), float(box_2d[1])])  # ymin, xmin
    hi = np.array([float(box_2d[2]), float(box_2d[3])])  # ymax, xmax
    # how far each point lies outside the box (<= 0: inside, edges included), read each way round
    off_yx = np.maximum(lo - pts, pts - hi).max(axis=1, initial=-np.inf)
    off_xy = np.maximum(lo - pts[:, ::-1], pts[:, ::-1] - hi).max(axis=1, initial=-np.inf)
    as_yx, as_xy = int(np.count_nonzero(off_yx <= 0)), int(np.count_nonzero(off_xy <= 0))
    if as_yx == as_xy:
        grown_yx, grown_xy = np.count_nonzero(off_yx <= tolerance), np.count_nonzero(off_xy <= tolerance)
        order = "xy" if grown_xy > grown_yx else "yx"
    else:
        order = "xy" if as_xy > as_yx else "yx"
    return OrderGuess(order, as_yx, as_xy, n, abs(as_yx - as_xy) <= n / 4)


def polygon_order(points: np.ndarray, box_2d: np.ndarray | None,
                  tolerance: float = POLYGON_ORDER_TOLERANCE) -> str:
    """``"yx"`` or ``"xy"``: the order :func:`guess_polygon_order` decides."""
    return guess_polygon_order(points, box_2d, tolerance).order


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``[x0, y0, x1, y1]`` -> ``(N, 4)`` ``[x, y, w, h]`` (COCO's bbox), float64."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    out = xyxy.copy()
    out[:, 2:] -= xyxy[:, :2]
    return out


def clip_xyxy(xyxy: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Clip ``(N, 4)`` float boxes to ``[0, width] x [0, height]``; returns a new array."""
    width, height = image_wh
    return np.clip(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), 0, [width, height, width, height])
