"""Is a JPEG's data whole? libjpeg's complaints about a file, attributed to the file.

A JPEG whose middle is damaged (200 zeroed bytes) decodes, with grey or shifted blocks: libjpeg only warns,
``Corrupt JPEG data: premature end of data segment``, on stderr where OpenCV lets it print, naming no
file; Pillow silences it. A JPEG cut short warns ``Premature end of JPEG file``; Pillow refuses it
(``image file is truncated``), OpenCV decodes it with a grey bottom. So which warning shows, and whether
the image is labelled, depended on which decoder read it, which differed between replay and online mode.

:func:`jpeg_damage` asks libjpeg-turbo through ``simplejpeg`` (``decode_jpeg(..., strict=True)`` raises
``ValueError`` with libjpeg's message for a recoverable error; https://gitlab.com/jfolz/simplejpeg), once
per image, in every mode, at 1/8 scale in gray (the entropy-coded data, where damage shows, is still read
whole). The label run then treats the file the same way everywhere: a file Pillow still decodes is
labelled, with libjpeg's complaint as a warning on the image (``warnings.json``, the summary); a file
Pillow cannot decode (truncated) fails, naming the file. Without ``simplejpeg`` installed the check is
skipped (returns None).
"""

from __future__ import annotations

import os

from ..errors import InputError
from .filekind import check_regular

__all__ = ["jpeg_damage"]

_SOI = b"\xff\xd8\xff"


def jpeg_damage(path: str | os.PathLike) -> str | None:
    """libjpeg's complaint about the JPEG file at ``path`` (``"Corrupt JPEG data: ..."``, ``"Premature end
    of JPEG file"``), or None when it decodes without one, is not a JPEG, or cannot be checked here (a
    file libjpeg cannot decode at all is left to the reader that opens it, which says why)."""
    try:
        import simplejpeg
    except ImportError:  # an optional check: the image is read as before
        return None
    try:
        check_regular(path)  # a FIFO would block the read: left to the reader, which says what it is
        with open(path, "rb") as fh:
            if fh.read(len(_SOI)) != _SOI:  # not a JPEG: nothing more is read
                return None
            data = _SOI + fh.read()
    except (OSError, InputError):
        return None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=True)
    except ValueError as exc:
        complaint = str(exc).strip()
    else:
        return None
    try:  # a recoverable error decodes when not strict; anything else is not a complaint to report
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=False)
    except ValueError:
        return None
    return complaint or "libjpeg reported damaged data"
