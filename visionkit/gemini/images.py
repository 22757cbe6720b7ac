"""Prepare an image for a request: upright, downscaled to a maximum side, encoded as JPEG (or PNG with alpha).

Gemini answers with coordinates normalized to 0-1000 over the image it was sent. Since normalized
coordinates do not depend on the pixel size, the answer maps straight onto the ORIGINAL upright image;
:class:`PreparedImage` keeps both sizes so callers can check that, and parse against ``original_wh``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from ..errors import ConfigError, InputError
from ..media.imageio import ImageSource, open_upright

__all__ = ["DEFAULT_JPEG_QUALITY", "DEFAULT_MAX_SIDE", "PreparedImage", "prepare_image"]

#: Longest side, in pixels, of the image sent to the API.
DEFAULT_MAX_SIDE = 1024
#: JPEG quality of the image sent to the API.
DEFAULT_JPEG_QUALITY = 90


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
        alpha channel is dropped and the image is sent as JPEG).

    Raises:
        InputError: the image cannot be read (see :func:`~visionkit.media.imageio.open_upright`).
        ConfigError: ``max_side`` or ``jpeg_quality`` out of range.
    """
    if not isinstance(max_side, int) or max_side < 1:
        raise ConfigError(f"max_side must be a positive int, got {max_side!r}")
    if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise ConfigError(f"jpeg_quality must be an int in 1..95, got {jpeg_quality!r}")
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
