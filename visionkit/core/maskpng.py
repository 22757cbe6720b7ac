"""Base64 PNG probability maps (Gemini 2.5's ``"mask"``) -> uint8 ``(h, w)`` arrays, checked before decoding.

Every PNG is framed and bounded before a decoder sees it: the signature, the IHDR size (a side over
:data:`MAX_MASK_SIDE` or more than :data:`MAX_MASK_DECODED_BYTES` of samples is refused without
decoding), and each chunk's length and CRC-32 up to IEND. libpng reports a broken chunk by printing to the
process's stderr, which no Python code can silence, so those are caught here first.

**Fast path.** Every PNG mask in the recorded answers (``../shared/gemini-real``: 17 of 17) is 8-bit
grayscale, non-interlaced, with filter type 0 (None) on every row. For that form, the samples are the
inflated IDAT stream minus one filter byte per row (PNG spec, sections 7.2 and 9.2), so :func:`decode_png`
inflates it with :mod:`zlib` and returns a view, with no copy and no libpng. Integrity comes from the
chunk CRC-32s, checked first; the zlib Adler-32 is not recomputed (see :func:`_inflate_gray8`). Anything
else (another colour type or depth, a filter, interlacing, ``tRNS`` transparency, an IDAT stream that does
not inflate cleanly to exactly ``height x (width + 1)`` bytes) goes to ``cv2.imdecode`` as before, so both
paths return the same samples (tests compare them on every form), with one deliberate exception: a
stream whose Adler-32 alone is wrong under right CRCs is read, where libpng refuses it. Measured on the
15 real cupcakes masks, one thread: about 0.4 ms for the PNGs (0.55 ms with base64) against 1.0 ms for
``cv2.imdecode`` and 0.63 ms for ``pyspng`` (libspng), so no dependency is added for it
(``bench/bench_core.py``).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib

import cv2
import numpy as np

from ..errors import MaskDecodeError

__all__ = ["MAX_MASK_DECODED_BYTES", "MAX_MASK_SIDE", "decode_png", "decode_png_probability",
           "probability_view"]

#: PNG masks whose header declares a larger side are refused before decoding (decompression bombs).
MAX_MASK_SIDE = 4096
#: PNG masks whose decoded samples would take more bytes are refused before decoding: 4096 x 4096 8-bit
#: grayscale fits; 4096 x 4096 16-bit RGBA (128 MiB, about a second to inflate) does not.
MAX_MASK_DECODED_BYTES = 4096 * 4096

# PNG colour type -> channels as decoded by OpenCV (palette images expand to up to 4 channels).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}
_PNG_COLOUR_NAMES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_URI = "data:image/png;base64,"
_DATA_URI = re.compile(r"^\s*data:[\w/+.-]*;base64,", re.IGNORECASE)
_B64_ALPHABET = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def decode_png_probability(value: str) -> np.ndarray:
    """Decode a base64 PNG (data URI or bare) into a writable uint8 ``(h, w)`` probability map (0-255)."""
    prob = probability_view(value)
    return prob if prob.flags.writeable else prob.copy()


def probability_view(value: str) -> np.ndarray:
    """:func:`decode_png_probability` without the copy: possibly a read-only view into the inflated bytes
    (the fast path's), for callers that only read it."""
    payload = value[len(_PNG_URI):] if value.startswith(_PNG_URI) else _DATA_URI.sub("", value, count=1)
    if not payload.isalnum():  # anything but plain base64 letters: padding, a URL-safe alphabet, spaces
        payload = "".join(payload.split())  # models sometimes wrap base64 across lines
    if not payload:
        raise MaskDecodeError("mask string is empty; expected a base64 PNG")
    if not _B64_ALPHABET.match(payload):
        bad = next((ch for ch in payload if not (ch.isalnum() or ch in "+/=_-")), "?")
        raise MaskDecodeError(f"mask is not valid base64 (found {bad!r}; the model may have elided or "
                              "cut the data); expected a base64 PNG", snippet=value[:80])
    payload += "=" * (-len(payload) % 4)
    try:
        if "-" in payload or "_" in payload:
            raw = base64.b64decode(payload, altchars=b"-_")
        else:
            raw = binascii.a2b_base64(payload)  # what b64decode calls, without its wrapper
    except (binascii.Error, ValueError) as exc:
        raise MaskDecodeError(f"mask base64 cannot be decoded ({exc}); expected a base64 PNG",
                              snippet=value[:80]) from exc
    return decode_png(raw)


def decode_png(raw: bytes) -> np.ndarray:
    """Decode PNG bytes into one uint8 ``(h, w)`` channel: the probability. On the fast path the result
    is a read-only view into the inflated bytes; copy it before writing into it.

    A colour PNG becomes one channel: an alpha channel that is not constant is the probability (a coloured
    mask drawn on transparency); otherwise the luminance is. 16-bit samples keep their high byte.

    Raises:
        MaskDecodeError: not a PNG, over the size limits, broken framing or CRC, or undecodable.
    """
    if not raw.startswith(_PNG_SIGNATURE):
        raise MaskDecodeError("mask data is not a PNG (bad signature); expected a base64 PNG")
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        raise MaskDecodeError("mask PNG is truncated before its IHDR header")
    width, height = struct.unpack(">II", raw[16:24])
    if width == 0 or height == 0:
        raise MaskDecodeError(f"mask PNG declares an empty size {width}x{height}")
    if width > MAX_MASK_SIDE or height > MAX_MASK_SIDE:
        raise MaskDecodeError(f"mask PNG declares {width}x{height}, over the {MAX_MASK_SIDE}x{MAX_MASK_SIDE} "
                              "limit; refused without decoding (possible decompression bomb)")
    if len(raw) >= 26:
        depth, colour = raw[24], raw[25]
        decoded = width * height * _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1)
        if decoded > MAX_MASK_DECODED_BYTES:
            kind = f"{depth}-bit {_PNG_COLOUR_NAMES.get(colour, f'colour type {colour}')}"
            raise MaskDecodeError(f"mask PNG declares {width}x{height} {kind}, {decoded:,} bytes decoded, "
                                  f"over the {MAX_MASK_DECODED_BYTES:,}-byte limit for a mask; refused "
                                  "without decoding")
    idat, plain = _check_chunks(raw, width, height)
    if plain:
        fast = _inflate_gray8(idat, width, height)
        if fast is not None:
            return fast
    return _decode_with_opencv(raw, width, height)


def _check_chunks(raw: bytes, width: int, height: int) -> tuple[list[bytes], bool]:
    """Refuse a PNG whose chunk framing is broken: a chunk running past the end, a CRC-32 that does not
    match, or no IEND. Costs one CRC pass over the few kilobytes of a mask.

    Returns the IDAT payloads and whether the image is a plain, well-formed 8-bit grayscale PNG, the form
    :func:`_inflate_gray8` reads: a 13-byte IHDR first and only once, no interlacing, no ``tRNS``, no
    critical chunk other than IHDR, PLTE, IDAT and IEND, and its IDAT chunks consecutive (PNG spec 5.6).
    Anything else is left to libpng, which accepts or refuses it as it always did.
    """
    # IHDR: width, height, bit depth, colour type, compression, filter method, interlace (PNG spec 11.2.2)
    plain = raw[8:12] == b"\x00\x00\x00\x0d" and raw[24:29] == b"\x08\x00\x00\x00\x00"
    idat: list[bytes] = []
    idat_done = False  # an IDAT run ended: another IDAT now is out of place
    pos, end = len(_PNG_SIGNATURE), len(raw)
    view = memoryview(raw)  # CRCs over slices of it copy nothing
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", raw, pos)
        kind = raw[pos + 4:pos + 8]
        if pos + 12 + length > end:
            break
        (crc,) = struct.unpack_from(">I", raw, pos + 8 + length)
        if zlib.crc32(view[pos + 4:pos + 8 + length]) != crc:
            raise MaskDecodeError(f"mask PNG ({width}x{height}) is corrupt: the CRC of its "
                                  f"{kind.decode('latin-1')!r} chunk does not match")
        if kind == b"IEND":
            return idat, plain and bool(idat)
        if kind == b"IDAT":
            plain = plain and not idat_done
            idat.append(raw[pos + 8:pos + 8 + length])
        else:
            idat_done = bool(idat)
            if kind == b"tRNS":
                plain = False  # OpenCV turns grayscale + tRNS into an alpha channel
            elif kind == b"IHDR":
                plain = plain and pos == len(_PNG_SIGNATURE)  # only as the first chunk
            elif kind[0] < 0x61 and kind != b"PLTE":  # an unknown critical chunk (uppercase first letter)
                plain = False
        pos += 12 + length
    raise MaskDecodeError(f"mask PNG ({width}x{height}) is truncated: it ends before its IEND chunk")


def _inflate_gray8(idat: list[bytes], width: int, height: int) -> np.ndarray | None:
    """The samples of a plain 8-bit grayscale PNG whose rows all use filter type 0, or None when the
    stream is anything else (then OpenCV decodes it, and reports what is wrong).

    The zlib stream is inflated raw (its 2-byte header checked by hand, its Adler-32 trailer required but
    not recomputed): every IDAT chunk's CRC-32 has already been checked by :func:`_check_chunks`, and
    recomputing Adler-32 over the inflated samples cost 40% of the inflate (measured on the cupcakes
    masks).
    """
    stream = b"".join(idat)
    # RFC 1950 section 2.2: CM = 8 (deflate), CINFO <= 7, no preset dictionary, header check bits.
    if (len(stream) < 6 or stream[0] & 0x0F != 8 or stream[0] >> 4 > 7 or stream[1] & 0x20
            or ((stream[0] << 8) | stream[1]) % 31):
        return None
    stride = width + 1
    expected = height * stride
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(memoryview(stream)[2:], expected + 1)  # never more than the header says
    except zlib.error:
        return None
    if (len(data) != expected or not inflater.eof or inflater.unconsumed_tail
            or len(inflater.unused_data) != 4):  # exactly the Adler-32 trailer after the deflate data
        return None
    if data[::stride].count(0) != height:
        return None  # a row uses a filter (Sub, Up, Average, Paeth): leave the unfiltering to libpng
    return np.frombuffer(data, dtype=np.uint8).reshape(height, stride)[:, 1:]


def _decode_with_opencv(raw: bytes, width: int, height: int) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MaskDecodeError(f"mask PNG ({width}x{height}) is corrupt or truncated and cannot be decoded")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise MaskDecodeError(f"mask PNG has unsupported sample type {img.dtype}")
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        alpha = img[:, :, 3]
        if alpha.min() != alpha.max():
            return np.ascontiguousarray(alpha)
        img = img[:, :, :3]
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img[:, :, 0])
