"""The mask type: a binary mask stored as the crop that holds it (see :mod:`visionkit.core.detections`
for the coordinate convention). Its own module, so the encoders (:mod:`visionkit.core.rle`,
:mod:`visionkit.core.polygons`) and :class:`~visionkit.core.detections.Detections` can all use it
without importing one another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MaskCrop"]


@dataclass(frozen=True, eq=False)
class MaskCrop:
    """A binary mask stored as the crop that holds it.

    Attributes:
        data: bool array of shape ``(h, w)``; ``data[r, c]`` is pixel ``(x0 + c, y0 + r)`` of the image.
        x0: column of the crop's left edge, an int ``>= 0``.
        y0: row of the crop's top edge, an int ``>= 0``.
    """

    data: np.ndarray
    x0: int
    y0: int

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray) or self.data.ndim != 2 or self.data.dtype != np.bool_:
            raise ValueError(f"MaskCrop.data must be a 2-D bool array, got {_describe(self.data)}")
        if self.x0 < 0 or self.y0 < 0:
            raise ValueError(f"MaskCrop offset must be >= 0, got x0={self.x0}, y0={self.y0}")
        object.__setattr__(self, "x0", int(self.x0))
        object.__setattr__(self, "y0", int(self.y0))

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the crop."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """Integer pixel box ``(x0, y0, x1, y1)`` that the crop covers (x1, y1 exclusive)."""
        h, w = self.data.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    def area(self) -> int:
        """Number of True pixels."""
        return int(np.count_nonzero(self.data))

    def fits(self, image_wh: tuple[int, int]) -> bool:
        """True when the crop lies inside an image of size ``(width, height)``."""
        x0, y0, x1, y1 = self.xyxy
        return x1 <= image_wh[0] and y1 <= image_wh[1]

    def to_full(self, image_wh: tuple[int, int]) -> np.ndarray:
        """The mask pasted into a full bool canvas of shape ``(height, width)``."""
        width, height = image_wh
        full = np.zeros((height, width), dtype=bool)
        x0, y0, x1, y1 = self.xyxy
        full[y0:y1, x0:x1] = self.data
        return full

    def tight_xyxy(self) -> tuple[int, int, int, int] | None:
        """Integer box ``(x0, y0, x1, y1)`` (exclusive max) around the True pixels, or None when empty."""
        rows = np.flatnonzero(self.data.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(self.data.any(axis=0))
        return (self.x0 + int(cols[0]), self.y0 + int(rows[0]),
                self.x0 + int(cols[-1]) + 1, self.y0 + int(rows[-1]) + 1)


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of shape {obj.shape} and dtype {obj.dtype}"
    return type(obj).__name__
