"""Fast upright reads of baseline JPEGs with OpenCV, for the label pipeline's hot path.

Pillow's reader costs two full-frame copies on top of the decode (``exif_transpose``, then ``np.array``);
``cv2.imdecode`` decodes straight into the array that is returned (swapped to RGB in place), so an upright
image costs one frame and a turned one two. With ``max_side``, libjpeg's DCT-domain scaling
(``IMREAD_REDUCED_COLOR_2/4/8``) decodes at 1/2, 1/4 or 1/8 of the size directly, so a 12 MP photo never
exists at full size when only a small overlay is wanted.

The orientation is NOT left to OpenCV: it is read from the header by Pillow (the same tag, or XMP
fallback, that ``ImageOps.exif_transpose`` reads) and applied here with :data:`_ORIENT`; the tests compare
every orientation 1-8 with the Pillow reader. Files this path does not cover (other formats, CMYK or
progressive oddities OpenCV rejects, a JPEG that does not end with its EOI marker, i.e. a truncated one
that OpenCV would decode into grey without an error) return None, and the caller uses Pillow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .jpegcheck import decode_checked

__all__ = ["read_jpeg_rgb", "scaled_size"]

# stored -> upright, per the EXIF orientation tag (the same transposes as PIL's exif_transpose)
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def scaled_size(size_wh: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size_wh`` shrunk (never grown) so its longest side is at most ``max_side``; rounding to the
    nearest pixel, at least 1. ``max_side`` None or 0: unchanged."""
    width, height = size_wh
    longest = max(width, height)
    if not max_side or longest <= max_side:
        return int(width), int(height)
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_jpeg_rgb(path: Path, stored_wh: tuple[int, int], orientation: int,
                  max_side: int | None = None, checked: list[str] | None = None) -> np.ndarray | None:
    """The upright RGB ``uint8 (H, W, 3)`` image of the JPEG at ``path`` (stored size ``stored_wh``,
    EXIF ``orientation``), shrunk to :func:`scaled_size` when ``max_side`` is given; None when OpenCV
    cannot be trusted with this file (see the module docstring).

    The decode is libjpeg-turbo's through simplejpeg when installed (the same pixels as OpenCV's, in RGB,
    about 25% faster here), strict: ``checked`` (when given) then receives libjpeg's complaint about the
    data, or "" when there was none (see :mod:`visionkit.media.jpegcheck`), so a caller that draws the
    image needs no separate check. Without simplejpeg, OpenCV decodes and ``checked`` stays empty."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size < 4 or data[-2] != 0xFF or data[-1] != 0xD9:
        return None
    upright_wh = stored_wh if orientation < 5 else (stored_wh[1], stored_wh[0])
    target_wh = scaled_size(upright_wh, max_side)
    flags, scale = cv2.IMREAD_COLOR, 1
    if target_wh != upright_wh:
        for factor, reduced in _REDUCED:
            # the reduced decode is ceil(size / factor); keep it at least as large as the target
            if -(-max(stored_wh) // factor) >= max(target_wh):
                flags, scale = reduced, factor
                break
    # the same 1/scale decode as OpenCV's reduced flags: ceil(size / scale) on each side
    min_wh = (-(-stored_wh[0] // scale), -(-stored_wh[1] // scale))
    rgb, complaint = decode_checked(data, "RGB", scale, min_wh)
    if rgb is not None and checked is not None:
        checked.append(complaint or "")
    if rgb is None:  # no simplejpeg, or libjpeg cannot decode it: OpenCV's reader, as before
        rgb = cv2.imdecode(data, flags | cv2.IMREAD_IGNORE_ORIENTATION)
        if rgb is None or rgb.ndim != 3 or rgb.shape[2] != 3:
            return None
        cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB, dst=rgb)  # in place: no second frame
    del data
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        return None
    if orientation in _ORIENT:
        rgb = _ORIENT[orientation](rgb)
    if (rgb.shape[1], rgb.shape[0]) != target_wh:
        if target_wh == upright_wh:
            return None  # OpenCV saw another size than the header: let Pillow decide
        rgb = cv2.resize(rgb, target_wh, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)
