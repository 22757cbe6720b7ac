"""Overlay files: read the image (shrunk first when asked), draw, encode, write atomically.

Formats (measured on a 1024x768 photo-like overlay with 10 masks, 2-core machine, medians):

============  ===============================================  ==========  ========
format        encoder                                          time        size
============  ===============================================  ==========  ========
``jpg``       OpenCV (libjpeg-turbo), quality 90               2.4 ms      239 KB
``png``       OpenCV (libpng), ``up`` filter, zlib ``Z_RLE``   23 ms       1.40 MB
``webp``      Pillow (libwebp), quality 80, method 0           21 ms       133 KB
============  ===============================================  ==========  ========

JPEG is the default: a review image needs no lossless pixels, and it is the only format cheaper than the
rest of the per-image work. PNG's ``Z_RLE`` strategy with the ``up`` filter is 2.2x faster than OpenCV's
level-1 default (50 ms, 1.44 MB) and no larger; zlib levels do not change ``Z_RLE``'s speed or size.

``max_side`` shrinks the image BEFORE drawing (a JPEG is decoded at 1/2, 1/4 or 1/8 size directly, see
:mod:`visionkit.media.fastread`); the detections are mapped onto the smaller image, so tags and outlines keep
their usual pixel size instead of being shrunk with the picture.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..core.detections import Detections
from ..core.maskcrop import MaskCrop
from ..errors import ConfigError, ExportError
from ..media.atomic import write_bytes_atomic
from ..media.fastread import scaled_size
from ..media.imageio import read_rgb

__all__ = ["DEFAULT_OVERLAY_FORMAT", "DEFAULT_OVERLAY_MAX_SIDE", "OVERLAY_FORMATS", "check_overlay_options",
           "encode_image", "scale_detections", "write_overlay"]

#: Overlay formats and their file suffixes.
OVERLAY_FORMATS = {"jpg": ".jpg", "png": ".png", "webp": ".webp"}
DEFAULT_OVERLAY_FORMAT = "jpg"
#: Longest overlay side by default: a review rarely needs more, and it bounds memory on 12 MP inputs.
DEFAULT_OVERLAY_MAX_SIDE = 2048

_JPEG_QUALITY = 90
_WEBP_QUALITY = 80
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
               cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def check_overlay_options(fmt: str, max_side: int | None) -> None:
    """Raise :class:`ConfigError` for an unknown format or a negative ``max_side``."""
    if fmt not in OVERLAY_FORMATS:
        raise ConfigError(f"overlay_format must be one of {', '.join(OVERLAY_FORMATS)}, got {fmt!r}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 0):
        raise ConfigError(f"overlay_max_side must be >= 0 pixels (0: full size), got {max_side!r}")


def _check_format(fmt: str) -> str:
    if fmt not in OVERLAY_FORMATS:
        raise ExportError(f"overlay format must be one of {', '.join(OVERLAY_FORMATS)}, got {fmt!r}")
    return fmt


def encode_image(rgb: np.ndarray, fmt: str = DEFAULT_OVERLAY_FORMAT, *, reuse: bool = False) -> bytes:
    """Encode an RGB ``uint8 (H, W, 3)`` array as ``fmt`` (``jpg``, ``png`` or ``webp``).

    ``reuse=True`` lets the JPEG and PNG encoders swap the channels to OpenCV's BGR order IN PLACE
    (the array's content is destroyed), saving a full-frame copy when the caller is done with it.

    Raises:
        ExportError: an unknown format, or an array that is not RGB uint8.
    """
    _check_format(fmt)
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ExportError(f"cannot encode an overlay: expected a uint8 (H, W, 3) RGB array, got "
                          f"dtype {arr.dtype}, shape {arr.shape}")
    if fmt == "webp":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, "WEBP", quality=_WEBP_QUALITY, method=0)
        return buf.getvalue()
    if reuse and arr.flags.c_contiguous and arr.flags.writeable:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR, dst=arr)
    else:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if fmt == "jpg" else _PNG_PARAMS
    ok, buf = cv2.imencode(OVERLAY_FORMATS[fmt], bgr, params)
    if not ok:
        raise ExportError(f"OpenCV could not encode a {arr.shape[1]}x{arr.shape[0]} overlay as {fmt}")
    return buf.tobytes()


def scale_detections(detections: Detections, image_wh: tuple[int, int]) -> Detections:
    """``detections`` mapped onto the same picture at size ``image_wh`` (for drawing on a shrunk image).

    Boxes and points are scaled per axis. Each mask crop is resampled (area average, then ``>= 0.5``)
    onto the pixels its own rectangle covers at the new size, so a mask stays a crop.
    """
    width, height = (int(v) for v in image_wh)
    ow, oh = detections.image_wh
    if (width, height) == (ow, oh):
        return detections
    sx, sy = width / ow, height / oh
    scale = np.array([sx, sy, sx, sy])
    xyxy = np.minimum(detections.xyxy * scale, [width, height, width, height])
    points = None if detections.points is None else detections.points * np.array([sx, sy])
    masks = None
    if detections.masks is not None:
        masks = tuple(None if m is None else _scale_crop(m, sx, sy, width, height) for m in detections.masks)
    return Detections(xyxy=xyxy, labels=detections.labels, image_wh=(width, height),
                      scores=detections.scores, points=points, masks=masks, warnings=detections.warnings)


def _scale_crop(crop: MaskCrop, sx: float, sy: float, width: int, height: int) -> MaskCrop:
    x0, y0, x1, y1 = crop.xyxy
    nx0, ny0 = min(int(x0 * sx), width), min(int(y0 * sy), height)
    nx1, ny1 = min(max(round(x1 * sx), nx0 + 1), width), min(max(round(y1 * sy), ny0 + 1), height)
    if crop.data.size == 0 or nx1 <= nx0 or ny1 <= ny0:
        return MaskCrop(np.zeros((0, 0), bool), nx0, ny0)
    small = cv2.resize(crop.data.view(np.uint8), (nx1 - nx0, ny1 - ny0), interpolation=cv2.INTER_AREA)
    # INTER_AREA on 0/1 bytes rounds the covered fraction: 1 where at least half the area was set
    return MaskCrop(small.astype(bool), nx0, ny0)


def write_overlay(path: str | os.PathLike, image: str | os.PathLike | np.ndarray, detections: Detections, *,
                  fmt: str = DEFAULT_OVERLAY_FORMAT, max_side: int | None = DEFAULT_OVERLAY_MAX_SIDE,
                  on_missing_glyphs: Callable[[str], None] | None = None) -> None:
    """Draw ``detections`` on ``image`` (a file, read upright, or an RGB array) and write ``path``.
    ``on_missing_glyphs``: as in :func:`~visionkit.draw.overlay.draw_overlay`.

    The image is shrunk so its longest side is at most ``max_side`` (None or 0: full size) BEFORE
    drawing; the encoded file is written atomically. ``path`` should end with the format's suffix.

    Raises:
        InputError: the image cannot be read. ExportError: bad format, or the file cannot be written.
    """
    from .overlay import draw_overlay

    _check_format(fmt)
    if max_side is not None and (isinstance(max_side, bool) or max_side < 0):
        raise ExportError(f"overlay max side must be >= 0 pixels (0: full size), got {max_side!r}")
    if isinstance(image, np.ndarray):
        target = scaled_size((image.shape[1], image.shape[0]), max_side)
        rgb = image if target == (image.shape[1], image.shape[0]) else \
            cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    else:
        rgb = read_rgb(image, max_side=max_side)
    drawn = draw_overlay(rgb, scale_detections(detections, (rgb.shape[1], rgb.shape[0])),
                         on_missing_glyphs=on_missing_glyphs)
    del rgb
    data = encode_image(drawn, fmt, reuse=True)
    del drawn
    try:
        # No fsync: an overlay can be drawn again (visionkit overlays), and on a loaded disk the fsync
        # cost more wall time than the whole rest of the image's work.
        write_bytes_atomic(Path(path), data, durable=False)
    except OSError as exc:
        raise ExportError(f"cannot write overlay {path}: {exc}") from exc
