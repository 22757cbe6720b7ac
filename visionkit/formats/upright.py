"""Image copies a trainer reads the way they were labelled: EXIF orientation applied, HEIC as JPEG.

torchvision's ``CocoDetection`` and datumaro decode files without applying the EXIF orientation, so an
original whose tag says "rotate" disagrees with the upright width and height of the annotations.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ..errors import InputError
from ..media.atomic import write_bytes_atomic

__all__ = ["dest_name", "copy_upright"]

_COPY_AS_IS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SAVE = {".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}), ".png": ("PNG", {}),
         ".bmp": ("BMP", {}), ".webp": ("WEBP", {"lossless": True})}


def dest_name(file_name: str) -> str:
    """Where an image goes under ``images/<split>/``: its file name, HEIC/HEIF as ``.jpg``."""
    path = Path(file_name)
    return path.with_suffix(".jpg").as_posix() if path.suffix.lower() not in _COPY_AS_IS else path.as_posix()


def copy_upright(source: Path, dest: Path, expected_wh: tuple[int, int]) -> bool:
    """Copy an image so its pixels are upright (EXIF applied, orientation removed). Returns True when it
    was re-encoded, False when copied byte for byte.

    Raises:
        InputError: the source cannot be read, or its upright size differs from ``expected_wh`` (the
            image changed since it was labelled).
    """
    from ..media import imageio

    size = imageio.image_size(source)
    if size != tuple(expected_wh):
        raise InputError(f"{source}: upright size {size[0]}x{size[1]} differs from the annotations' "
                         f"{expected_wh[0]}x{expected_wh[1]}; the image changed since it was labelled")
    suffix = source.suffix.lower()
    with Image.open(source) as im:
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: exif_transpose cannot use it either
            orientation = 1
    if suffix in _COPY_AS_IS and orientation in (1, None):
        write_bytes_atomic(dest, source.read_bytes())
        return False
    upright = imageio.open_upright(source)  # exif_transpose: pixels turned, orientation tag dropped
    fmt, options = _SAVE.get(dest.suffix.lower(), _SAVE[".jpg"])
    if fmt == "JPEG" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    exif = upright.getexif()
    exif.pop(0x0112, None)
    buf = io.BytesIO()
    upright.save(buf, format=fmt, exif=exif.tobytes(), **options)
    write_bytes_atomic(dest, buf.getvalue())
    return True
