"""A JPEG file's bytes without its metadata, for sending as they are instead of decoding and re-encoding.

:func:`strip_jpeg_metadata` walks the marker segments before the first scan (ITU T.81 annex B,
https://www.w3.org/Graphics/JPEG/itu-t81.pdf, section B.1.1.4: every marker segment but SOI, EOI and RSTn
carries a 2-byte big-endian length that counts itself). It keeps what a decoder needs to draw the same
pixels (tables, frame and scan headers, APP0 JFIF, APP2 ICC profile, APP14 Adobe colour transform) and
drops the rest: APP1 (EXIF, with its GPS position, camera serial and thumbnail, and XMP), the other APPn
(IPTC, MPF, maker notes, JFXX thumbnails) and comments; a JFIF segment is kept without its thumbnail.
The entropy-coded data is kept up to the first EOI; what follows it (a second, MPF-appended image with its
own EXIF) is dropped.

It only accepts the plain cases: 8-bit Huffman-coded baseline, extended or progressive frames (SOF0-SOF2),
one or three components, well-formed segments. Anything else returns None, and the caller decodes and
re-encodes as before.
"""

from __future__ import annotations

import re

__all__ = ["strip_jpeg_metadata"]

_APP0, _APP2, _APP14 = 0xE0, 0xE2, 0xEE
_SOF_OK = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive; Huffman coding
_SOF_ALL = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG (reserved), CC DAC
_TABLES = frozenset({0xC4, 0xDB, 0xDD})  # DHT, DQT, DRI
_BETWEEN_SCANS = _TABLES | {0xDA}  # and SOS
# a marker in entropy-coded data (not stuffing, RSTn or a fill byte)
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _keep_app(marker: int, body: bytes) -> bool:
    if marker == _APP2:
        return body.startswith(b"ICC_PROFILE\x00")
    return marker == _APP14 and body.startswith(b"Adobe")


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """``data`` (a whole JPEG file) without its metadata segments and without anything after its EOI, or
    None when it is not a plain 8-bit Huffman-coded JPEG of 1 or 3 components whose segments parse."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out = [b"\xff\xd8"]
    pos, n, frame = 2, len(data), False
    while True:
        # a marker: 0xFF, any number of 0xFF fill bytes (B.1.1.2), then the marker code
        if pos >= n or data[pos] != 0xFF:
            return None
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos + 2 >= n:
            return None
        marker = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        end = pos + 1 + length
        if length < 2 or end > n:
            return None
        body = data[pos + 3:end]
        if marker == 0xDA:  # SOS: the scans follow; keep them up to the first EOI
            if not frame:
                return None
            stop = _scans_end(data, end)
            if stop is None:
                return None  # cut short, or not plain: left to the decoder, which says so
            out.append(b"\xff" + data[pos:stop])
            return b"".join(out)
        if marker in _SOF_ALL:
            if marker not in _SOF_OK or frame or len(body) < 6 or body[0] != 8 or body[5] not in (1, 3):
                return None  # arithmetic, lossless, hierarchical, 12-bit, CMYK, or a second frame
            frame = True
            out.append(b"\xff" + data[pos:end])
        elif marker in _TABLES:
            out.append(b"\xff" + data[pos:end])
        elif marker == _APP0 and body.startswith(b"JFIF\x00") and len(body) >= 14:
            # JFIF kept without its thumbnail (a thumbnail may show what the image was cropped from)
            out.append(b"\xff\xe0\x00\x10" + body[:12] + b"\x00\x00")
        elif 0xE0 <= marker <= 0xEF:
            if _keep_app(marker, body):
                out.append(b"\xff" + data[pos:end])
        elif marker != 0xFE:  # COM is dropped; EOI before a scan, RSTn, TEM, DNL, DHP, EXP, JPGn: not plain
            return None
        pos = end


def _scans_end(data: bytes, pos: int) -> int | None:
    """The end of the EOI that closes the scans starting at ``pos`` (after the first SOS header), or None.
    In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or an RSTn marker (B.1.1.5); any other
    marker there is EOI or a segment between scans (a progressive JPEG's DHT and SOS), skipped by length,
    since its bytes may hold 0xFF 0xD9 themselves."""
    n = len(data)
    while True:
        found = _MARKER.search(data, pos)
        if found is None:
            return None  # cut short
        code = data[found.start() + 1]
        if code == 0xD9:
            return found.end()
        if code not in _BETWEEN_SCANS or found.start() + 4 > n:
            return None
        pos = found.start() + 2 + ((data[found.start() + 2] << 8) | data[found.start() + 3])
        if pos > n:
            return None
