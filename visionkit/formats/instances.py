"""The geometry every dataset format shares: whole-pixel boxes that hold their masks.

A model's box is a float box (see :mod:`visionkit.core.detections`). A dataset box is snapped OUTWARD to whole
pixels: ``floor(x0), floor(y0), ceil(x1), ceil(y1)``, clipped to the image, so it stays within 1 px of the
box the model gave. A mask crop starts at the truncated integer edge of the model's box (the recipe's
rounding, see :mod:`visionkit.core.masks`), so PNG masks always lie inside the snapped box. A polygon mask may
reach beyond the model's box; its pixels outside the snapped box are cut off (and counted), because a
dataset box must contain every mask pixel AND stay within 1 px of the model's box (importers such as
FiftyOne crop masks to the box).

Pure numpy; no IO.
"""

from __future__ import annotations

import numpy as np

from ..core.maskcrop import MaskCrop

__all__ = ["EPS", "snap_box", "snap_boxes", "clip_crop_to_box", "box_polygon"]

#: Float slack when snapping: ``250 * (640 / 1000)`` is ``160.00000000000003``, which must stay 160.
EPS = 1e-6


def snap_boxes(xyxy, image_wh: tuple[int, int]) -> np.ndarray:
    """Float ``(N, 4)`` ``[x0, y0, x1, y1]`` boxes snapped outward to whole pixels, inside the image:
    int64 ``(N, 4)``. The one place the snapping rule lives."""
    width, height = image_wh
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        bad = boxes[~np.isfinite(boxes).all(axis=1)][0].tolist()
        raise ValueError(f"cannot snap the box {bad} to whole pixels: its coordinates must be finite")
    lo = np.floor(boxes[:, :2] + EPS)
    hi = np.ceil(boxes[:, 2:] - EPS)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.minimum(np.maximum(lo, 0), limit)
    hi = np.minimum(np.maximum(hi, lo), limit)
    return np.hstack([lo, hi]).astype(np.int64)


def snap_box(xyxy, image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """One float ``[x0, y0, x1, y1]`` box snapped outward to whole pixels (see :func:`snap_boxes`)."""
    bx0, by0, bx1, by1 = snap_boxes(xyxy, image_wh)[0].tolist()
    return bx0, by0, bx1, by1


def clip_crop_to_box(crop: MaskCrop, box: tuple[int, int, int, int]) -> tuple[MaskCrop, int]:
    """``crop`` cut to the integer ``box``; returns ``(crop, pixels_cut)``. Unchanged when it fits."""
    bx0, by0, bx1, by1 = box
    x0, y0, x1, y1 = crop.xyxy
    if x0 >= bx0 and y0 >= by0 and x1 <= bx1 and y1 <= by1:
        return crop, 0
    nx0, ny0 = max(x0, bx0), max(y0, by0)
    nx1, ny1 = max(min(x1, bx1), nx0), max(min(y1, by1), ny0)
    data = crop.data[ny0 - y0:ny1 - y0, nx0 - x0:nx1 - x0]
    kept = MaskCrop(np.ascontiguousarray(data), nx0, ny0)
    return kept, crop.area() - kept.area()


def box_polygon(box: tuple[int, int, int, int]) -> list[float]:
    """The box as a flat 4-point polygon ``[x0, y0, x1, y0, x1, y1, x0, y1]`` (8 numbers, clockwise)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1, y0, x1, y1, x0, y1]
