"""Overlap between detections: vectorized box IoU, and mask IoU / majority computed on crops.

Shared by :mod:`visionkit.core.dedupe` and :mod:`visionkit.quality.consensus`. Masks are
:class:`~visionkit.core.maskcrop.MaskCrop` objects; nothing here builds a full-size ``(H, W)`` canvas, so
memory grows with the boxes' area, never with the image size or ``N x H x W``.

IoU of two empty things (zero-area boxes, empty masks) is 0: a point never overlaps anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .maskcrop import MaskCrop

__all__ = ["box_iou", "crop_iou", "crop_intersection", "majority_crop", "pair_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both ``xyxy``: float64 (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def crop_intersection(a: MaskCrop, b: MaskCrop) -> int:
    """Pixels that are True in both masks, counted over the two crops' overlap window only."""
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0
    wa = a.data[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
    wb = b.data[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    return int(np.count_nonzero(wa & wb))


def crop_iou(a: MaskCrop, b: MaskCrop, area_a: int | None = None, area_b: int | None = None) -> float:
    """Mask IoU of two crops (0 when both are empty). Pass known areas to skip counting them again."""
    area_a = a.area() if area_a is None else area_a
    area_b = b.area() if area_b is None else area_b
    inter = crop_intersection(a, b)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def pair_iou(box_a: np.ndarray, box_b: np.ndarray, mask_a: MaskCrop | None, mask_b: MaskCrop | None) -> float:
    """The IoU used to compare two detections: mask IoU when both have masks, else box IoU."""
    if mask_a is not None and mask_b is not None:
        return crop_iou(mask_a, mask_b)
    return float(box_iou(box_a, box_b)[0, 0])


def majority_crop(crops: Sequence[MaskCrop]) -> MaskCrop | None:
    """Per-pixel vote over ``crops``: a pixel is in when at least half of the masks have it.

    For an odd count this is a strict majority (2 of 3); for two masks it is their union. The vote runs on
    the crops' bounding window (the union of their boxes), so memory grows with the objects' size. The result
    is trimmed to its True pixels; None when no pixel wins (or no crop is given).
    """
    crops = [c for c in crops if c is not None]
    if not crops:
        return None
    x0 = min(c.x0 for c in crops)
    y0 = min(c.y0 for c in crops)
    x1 = max(c.xyxy[2] for c in crops)
    y1 = max(c.xyxy[3] for c in crops)
    votes = np.zeros((y1 - y0, x1 - x0), dtype=np.uint16)
    for c in crops:
        h, w = c.shape
        votes[c.y0 - y0:c.y0 - y0 + h, c.x0 - x0:c.x0 - x0 + w] += c.data
    keep = votes * 2 >= len(crops)
    window = MaskCrop(keep, x0, y0)
    tight = window.tight_xyxy()
    if tight is None:
        return None
    tx0, ty0, tx1, ty1 = tight
    return MaskCrop(np.ascontiguousarray(keep[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]), tx0, ty0)
