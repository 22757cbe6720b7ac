"""COCO run-length encoding straight from a mask crop, without a full-image canvas.

COCO RLE walks the full ``(H, W)`` mask in column-major order (down each column, columns left to right)
and stores alternating run lengths, starting with a run of zeros (possibly of length 0). A crop at
``(x0, y0)`` of size ``(h, w)`` occupies stream positions ``(x0 + c) * H + y0 + r``; everything else is 0.
So the runs can be found from the crop alone: the transitions inside each crop column (with a zero guard
above and below) are shifted to their stream positions, and an end-then-start pair at the same position
(possible only when the crop is as tall as the image) cancels out.

The uncompressed counts are turned into COCO's compressed string by pycocotools' own C encoder, so the
result equals ``pycocotools.mask.encode`` of the full mask byte for byte.
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..errors import ExportError
from .maskcrop import MaskCrop

__all__ = ["MAX_RLE_PIXELS", "crop_to_counts", "crop_to_rle", "rle_area"]

#: pycocotools keeps run lengths as C ``unsigned int`` (``maskApi.h``: ``typedef unsigned int uint``), so an
#: image with more pixels than this cannot be written as COCO RLE: a longer run would wrap silently.
MAX_RLE_PIXELS = 2**32 - 1


def crop_to_counts(crop: MaskCrop, image_wh: tuple[int, int]) -> np.ndarray:
    """Uncompressed COCO RLE counts (uint32 1-D) of the full-size mask that ``crop`` stands for."""
    width, height = image_wh
    total = int(width) * int(height)
    if total > MAX_RLE_PIXELS:
        raise ExportError(f"an image of {width}x{height} has {total} pixels, more than COCO RLE can hold "
                          f"({MAX_RLE_PIXELS}: pycocotools stores run lengths as 32-bit integers); write "
                          "polygons instead (polygons=True, --polygons)")
    data = crop.data
    h, w = data.shape
    if h == 0 or w == 0:
        return np.array([total], dtype=np.uint32)
    # Column-major: one row per crop column, zero-guarded top and bottom, read as one flat stream.
    # (cv2.transpose writes straight between the guards; ~3x faster than a numpy transposed copy.)
    cols = np.zeros((w, h + 2), dtype=np.uint8)
    cv2.transpose(data.view(np.uint8), dst=cols[:, 1:-1])
    flat = cols.reshape(-1)
    # A change between flat p and p + 1; never across two columns, whose guards are both 0.
    p = (flat[1:] != flat[:-1]).nonzero()[0]
    if p.size == 0:  # an empty mask
        return np.array([total], dtype=np.uint32)
    # Transition p = c * (h + 2) + j sits at stream position (x0 + c) * H + y0 + j.
    pos = p + (p // (h + 2)) * (height - h - 2) + (crop.x0 * height + crop.y0)
    if h == height and pos.size > 2:
        # An end at p followed by a start at p (adjacent full-height columns) is no transition.
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        if dup.size:
            keep = np.ones(pos.size, dtype=bool)
            keep[dup] = False
            keep[dup + 1] = False
            pos = pos[keep]
    # Runs between transitions, from 0 to the end of the stream; a mask that ends on the last pixel has
    # no closing run of zeros.
    counts = np.empty(pos.size + 1, dtype=np.uint32)
    counts[0] = pos[0]
    np.subtract(pos[1:], pos[:-1], out=counts[1:-1], casting="unsafe")
    counts[-1] = total - pos[-1]
    return counts[:-1] if counts[-1] == 0 else counts


def crop_to_rle(crop: MaskCrop, image_wh: tuple[int, int]) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of the full-size mask of ``crop``."""
    width, height = image_wh
    counts = crop_to_counts(crop, image_wh)
    # The counts go in as the uint32 array itself: pycocotools converts them with np.array(..., uint32)
    # (_mask.pyx, frUncompressedRLE), which for an array is a copy, while a list of ~300 ints took 5x the
    # whole call (measured: 37 vs 177 us for the 15 cupcakes masks). The oracle tests pin the bytes.
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def rle_area(rle: dict) -> int:
    """Pixel count of a compressed RLE (str or bytes counts)."""
    counts = rle["counts"]
    return int(mask_utils.area({"size": rle["size"],
                                "counts": counts.encode("ascii") if isinstance(counts, str) else counts}))
