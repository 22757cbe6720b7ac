"""Prepare an image for a request: upright, downscaled to a maximum side, encoded as JPEG (or PNG with alpha).

A JPEG file that needs none of that (stored upright, within ``max_side``, 8-bit gray or YCbCr, at most
:data:`AS_IS_BYTES_PER_PIXEL` bytes a pixel) is sent as it is, without its metadata
(:func:`visionkit.media.jpegstrip.strip_jpeg_metadata`: no EXIF, XMP or comments), when the default JPEG
quality is asked for: decoding and re-encoding it cost more CPU than the rest of the request, and only
lost quality.

Gemini answers with coordinates normalized to 0-1000 over the image it was sent. Since normalized
coordinates do not depend on the pixel size, the answer maps straight onto the ORIGINAL upright image;
:class:`PreparedImage` keeps both sizes so callers can check that, and parse against ``original_wh``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import ConfigError, InputError
from ..media import imageio
from ..media.filekind import check_regular
from ..media.imageio import ImageSource, open_upright
from ..media.jpegstrip import strip_jpeg_metadata

__all__ = ["AS_IS_BYTES_PER_PIXEL", "AS_IS_MIN_BYTES", "DEFAULT_JPEG_QUALITY", "DEFAULT_MAX_SIDE",
           "PreparedImage", "prepare_image"]

#: Longest side, in pixels, of the image sent to the API.
DEFAULT_MAX_SIDE = 1024
#: JPEG quality of the image sent to the API.
DEFAULT_JPEG_QUALITY = 90
#: A JPEG file larger than this (bytes per pixel) is re-encoded at the JPEG quality rather than sent as it
#: is: a quality-90 encode of a photo takes well under 1 byte a pixel, so this keeps requests small.
#: Files up to :data:`AS_IS_MIN_BYTES` are sent as they are whatever their pixel count (headers, tiny images).
AS_IS_BYTES_PER_PIXEL = 1.0
AS_IS_MIN_BYTES = 65536


@dataclass(frozen=True)
class PreparedImage:
    """An encoded image ready to send.

    Attributes:
        data: the encoded bytes (no EXIF: the pixels are already upright).
        mime_type: ``"image/jpeg"`` or ``"image/png"``.
        original_wh: ``(width, height)`` of the upright source image.
        sent_wh: ``(width, height)`` of the encoded image (``<= original_wh``).
    """

    data: bytes
    mime_type: str
    original_wh: tuple[int, int]
    sent_wh: tuple[int, int]

    def __repr__(self) -> str:
        return (f"PreparedImage(mime_type={self.mime_type!r}, original_wh={self.original_wh}, "
                f"sent_wh={self.sent_wh}, bytes={len(self.data)})")


def _has_alpha(im: Image.Image) -> bool:
    """True when the image has an alpha channel with at least one non-opaque pixel."""
    if im.mode == "P":
        if "transparency" not in im.info:
            return False
        im = im.convert("RGBA")
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return False
    lo, _ = im.getchannel("A").getextrema()
    return lo < 255


def prepare_image(source: ImageSource, max_side: int = DEFAULT_MAX_SIDE,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> PreparedImage:
    """Open ``source`` upright, shrink it so its longest side is ``<= max_side``, and encode it.

    Args:
        source: a path, PIL image or uint8 array (see :func:`visionkit.media.imageio.open_upright`).
        max_side: longest side of the sent image in pixels. Images are never upscaled. Downscaling uses
            Lanczos resampling (alpha is premultiplied by Pillow while resampling).
        jpeg_quality: JPEG quality, 1-95.

    Returns:
        A :class:`PreparedImage`: JPEG, or PNG when the image has any transparent pixel (a fully opaque
        alpha channel is dropped and the image is sent as JPEG). A JPEG file that is upright and within
        ``max_side`` is sent as it is, without its metadata, at the default ``jpeg_quality`` (see above).

    Raises:
        InputError: the image cannot be read (see :func:`~visionkit.media.imageio.open_upright`).
        ConfigError: ``max_side`` or ``jpeg_quality`` out of range.
    """
    if not isinstance(max_side, int) or max_side < 1:
        raise ConfigError(f"max_side must be a positive int, got {max_side!r}")
    if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise ConfigError(f"jpeg_quality must be an int in 1..95, got {jpeg_quality!r}")
    if jpeg_quality == DEFAULT_JPEG_QUALITY and isinstance(source, (str, os.PathLike)):
        as_is = _jpeg_as_is(Path(source), max_side)
        if as_is is not None:
            return as_is
    im = open_upright(source)
    original_wh = im.size
    alpha = _has_alpha(im)
    try:
        im = im.convert("RGBA" if alpha else "RGB")
    except Exception as exc:
        raise InputError(f"cannot convert image mode {im.mode!r} to RGB ({exc})") from exc
    width, height = original_wh
    longest = max(width, height)
    if longest > max_side:
        scale = max_side / longest
        size = (max(1, min(max_side, round(width * scale))), max(1, min(max_side, round(height * scale))))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    if alpha:
        im.save(buf, format="PNG")
        mime = "image/png"
    else:
        im.save(buf, format="JPEG", quality=jpeg_quality)
        mime = "image/jpeg"
    return PreparedImage(data=buf.getvalue(), mime_type=mime, original_wh=(int(width), int(height)),
                         sent_wh=(int(im.size[0]), int(im.size[1])))


def _jpeg_as_is(path: Path, max_side: int) -> PreparedImage | None:
    """The JPEG file at ``path`` to send as it is (its metadata stripped), or None when it must be decoded
    and re-encoded (not a JPEG, turned by its EXIF orientation, larger than ``max_side`` or than
    :data:`AS_IS_BYTES_PER_PIXEL`, CMYK, 12-bit, arithmetic-coded, unreadable: the full path says why)."""
    try:
        check_regular(path)  # a FIFO would block the read: left to open_upright, which says what it is
        with open(path, "rb", buffering=0) as fh:  # readall sizes its buffer once (see jpegcheck)
            if os.fstat(fh.fileno()).st_size > max(AS_IS_BYTES_PER_PIXEL * max_side**2, AS_IS_MIN_BYTES):
                return None  # too large to be sent as it is at any size within max_side: not read here
            data = fh.readall()  # read once: the header checked below is the one of the bytes sent
        with Image.open(io.BytesIO(data)) as im:  # the header only
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            wh = (int(im.size[0]), int(im.size[1]))
            if max(wh) > max_side or wh[0] * wh[1] > imageio.MAX_PIXELS or im.getexif().get(0x0112, 1) != 1:
                return None
        if len(data) > max(AS_IS_BYTES_PER_PIXEL * wh[0] * wh[1], AS_IS_MIN_BYTES):
            return None
    except Exception:  # any failure here: the full path reads the file again and reports it
        return None
    data = strip_jpeg_metadata(data)
    return None if data is None else PreparedImage(data=data, mime_type="image/jpeg", original_wh=wh,
                                                  sent_wh=wh)
