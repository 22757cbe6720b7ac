"""The core type: detections as parallel numpy arrays, with masks kept as per-box crops.

Coordinate convention (the one place it is stated; everything in visionkit follows it):

* Boxes are ``xyxy``: float64 pixel coordinates ``[x0, y0, x1, y1]`` with the origin at the image's
  top-left corner, x to the right and y down.
* Edges are continuous: pixel column ``i`` spans ``[i, i + 1)``, so ``0 <= x0 <= x1 <= width`` and a box
  ``[0, 0, 1, 1]`` covers exactly the first pixel.
* Sizes are ``(width, height)`` and are named ``*_wh``. Arrays are indexed ``[y, x]``.
* Images are RGB ``uint8 (H, W, 3)``; BGR exists only inside OpenCV IO helpers.
* Points are ``(x, y)`` float pixel positions.
* Gemini's own format (``box_2d = [ymin, xmin, ymax, xmax]`` and ``point = [y, x]`` on a 0-1000 grid,
  relative to the image as sent) is converted in exactly one module: :mod:`visionkit.core.boxes`.

Masks are never stored as ``N x H x W``. Each mask is a :class:`MaskCrop`: a bool ``(h, w)`` array plus the
integer pixel offset ``(x0, y0)`` of its top-left corner, so memory grows with box area. A full-size mask
is built on demand, one at a time, by :meth:`Detections.mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .maskcrop import MaskCrop

__all__ = ["Detections", "MaskCrop", "ParseWarning"]


@dataclass(frozen=True)
class ParseWarning:
    """Something the parser skipped, repaired or refused.

    Attributes:
        index: index of the item in the answer's item list, or None when it concerns the whole answer.
        field: the item's field concerned (``"box_2d"``, ``"mask"``, ``"label"``, ...), or None.
        reason: a human-readable explanation of what was expected and what was done.
    """

    index: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = "answer" if self.index is None else f"item {self.index}"
        if self.field:
            where += f" '{self.field}'"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class Detections:
    """N detections in one image, as parallel arrays. Frozen: every operation returns a new object.

    Attributes:
        xyxy: float64 ``(N, 4)`` pixel boxes ``[x0, y0, x1, y1]``, finite, with ``0 <= x0 <= x1 <= width``
            and ``0 <= y0 <= y1 <= height`` (a point's degenerate box is allowed).
        labels: object ``(N,)`` array of str.
        image_wh: ``(width, height)`` of the image the coordinates refer to (upright, EXIF applied).
        scores: float64 ``(N,)`` or None when the answer had no scores.
        points: float64 ``(N, 2)`` ``(x, y)`` pixel points, NaN rows for items without a point, or None
            when no item had a point. A point-only item has the degenerate box ``[x, y, x, y]``.
        masks: a tuple of N :class:`MaskCrop` or None entries (None: that item has no mask), or None when
            no item has a mask.
        warnings: what the parser skipped, repaired or refused, in item order.
    """

    xyxy: np.ndarray
    labels: np.ndarray
    image_wh: tuple[int, int]
    scores: np.ndarray | None = None
    points: np.ndarray | None = None
    masks: tuple[MaskCrop | None, ...] | None = None
    warnings: tuple[ParseWarning, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = len(xyxy)
        labels = np.asarray(list(self.labels) if not isinstance(self.labels, np.ndarray) else self.labels,
                            dtype=object).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"labels must have length {n}, got {len(labels)}")
        width, height = (int(v) for v in self.image_wh)
        if width <= 0 or height <= 0:
            raise ValueError(f"image_wh must be positive (width, height), got {self.image_wh}")
        for i, label in enumerate(labels):
            if not isinstance(label, str):
                raise ValueError(f"labels[{i}] must be a str, got {type(label).__name__} {label!r}")
        x0, y0, x1, y1 = xyxy.T
        bad = ~(np.isfinite(xyxy).all(axis=1) & (x0 >= 0) & (x0 <= x1) & (x1 <= width)
                & (y0 >= 0) & (y0 <= y1) & (y1 <= height))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"xyxy[{i}] = {xyxy[i].tolist()} is not a box inside the {width}x{height} image "
                             "(needs finite 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height)")
        scores = None
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(scores) != n:
                raise ValueError(f"scores must have length {n}, got {len(scores)}")
        points = None
        if self.points is not None:
            points = np.asarray(self.points, dtype=np.float64)
            if points.size == 0:
                points = points.reshape(0, 2)
            if points.shape != (n, 2):
                raise ValueError(f"points must have shape ({n}, 2), got {points.shape}")
        masks = None
        if self.masks is not None:
            masks = tuple(self.masks)
            if len(masks) != n:
                raise ValueError(f"masks must have length {n}, got {len(masks)}")
            for i, m in enumerate(masks):
                if m is not None and (not isinstance(m, MaskCrop) or not m.fits((width, height))):
                    raise ValueError(f"masks[{i}] must be a MaskCrop inside the {width}x{height} image")
        for arr in (xyxy, scores, points):
            if arr is not None:
                arr.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "image_wh", (width, height))
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def empty(cls, image_wh: tuple[int, int], warnings: Sequence[ParseWarning] = ()) -> Detections:
        """No detections in an image of size ``(width, height)``."""
        return cls(np.empty((0, 4)), np.empty(0, dtype=object), image_wh, warnings=tuple(warnings))

    # -- container protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select detections by int, slice, int array or bool mask. Always returns a Detections.

        Warnings are kept as they are: they describe the answer, not the selection.
        """
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"detection index {index} out of range for {n} detections")
            idx = np.array([index % n])
        elif isinstance(index, slice):
            idx = np.arange(len(self))[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == np.bool_:
                if idx.shape != (len(self),):
                    raise IndexError(f"bool index must have shape ({len(self)},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.intp).reshape(-1)
        return Detections(
            xyxy=self.xyxy[idx],
            labels=self.labels[idx],
            image_wh=self.image_wh,
            scores=None if self.scores is None else self.scores[idx],
            points=None if self.points is None else self.points[idx],
            masks=None if self.masks is None else tuple(self.masks[i] for i in idx),
            warnings=self.warnings,
        )

    def __repr__(self) -> str:
        w, h = self.image_wh
        n_masks = 0 if self.masks is None else sum(m is not None for m in self.masks)
        return (f"Detections(n={len(self)}, image_wh=({w}, {h}), masks={n_masks}, "
                f"scores={self.scores is not None}, points={self.points is not None}, "
                f"warnings={len(self.warnings)})")

    # -- masks --------------------------------------------------------------------------------------
    def has_mask(self, i: int) -> bool:
        """True when detection ``i`` has a mask."""
        return self.masks is not None and self.masks[i] is not None

    def mask(self, i: int) -> np.ndarray:
        """Full-size bool mask ``(height, width)`` of detection ``i`` (all False when it has no mask)."""
        crop = None if self.masks is None else self.masks[i]
        if crop is None:
            w, h = self.image_wh
            return np.zeros((h, w), dtype=bool)
        return crop.to_full(self.image_wh)

    def rle(self, i: int) -> dict | None:
        """COCO compressed RLE ``{"size": [h, w], "counts": str}`` of detection ``i``'s mask, or None.

        Encoded straight from the crop, without a full-size canvas; equal to
        ``pycocotools.mask.encode`` of :meth:`mask` (with ``counts`` decoded to str).
        """
        crop = None if self.masks is None else self.masks[i]
        if crop is None:
            return None
        from .rle import crop_to_rle

        return crop_to_rle(crop, self.image_wh)

    def mask_area(self, i: int) -> int | None:
        """Pixel count of detection ``i``'s mask, or None when it has no mask."""
        crop = None if self.masks is None else self.masks[i]
        return None if crop is None else crop.area()

    @property
    def box_area(self) -> np.ndarray:
        """float64 ``(N,)`` areas of the xyxy boxes in pixels."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of shape {obj.shape} and dtype {obj.dtype}"
    return type(obj).__name__
