"""The PNG mask decoder: its zlib fast path returns exactly what cv2.imdecode returns, and takes itself out
of the way for every form it does not read (filters, other colour types, tRNS, interlacing, bad streams)."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import cv2
import numpy as np
import pytest

from visionkit.core import maskpng
from visionkit.errors import MaskDecodeError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(rows: np.ndarray, *, depth: int = 8, colour: int = 0, interlace: int = 0, filters: bytes = b"",
         extra: tuple[tuple[bytes, bytes], ...] = (), stream: bytes | None = None) -> bytes:
    """A PNG written by hand: ``rows`` (h, w*bpp) uint8 samples, each row prefixed by its filter byte (0
    unless ``filters`` gives them; the samples are then written as if already filtered), ``extra`` chunks
    before IDAT, or a raw IDAT ``stream``."""
    h = rows.shape[0]
    w = rows.shape[1] // ({0: 1, 2: 3, 4: 2, 6: 4}[colour] * (2 if depth == 16 else 1))
    fb = np.frombuffer(filters.ljust(h, b"\x00"), np.uint8).reshape(h, 1)
    body = np.hstack([fb, rows]).tobytes()
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    chunks = [_chunk(b"IHDR", header)] + [_chunk(k, v) for k, v in extra]
    chunks.append(_chunk(b"IDAT", zlib.compress(body) if stream is None else stream))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def _ramp(h: int, w: int) -> np.ndarray:
    return ((np.arange(h)[:, None] * 7 + np.arange(w)[None, :] * 13) % 256).astype(np.uint8)


_OPENCV = maskpng._decode_with_opencv  # held before any spy replaces it


def _opencv(raw: bytes) -> np.ndarray | None:
    """The oracle: the decoder every PNG went through before the fast path."""
    try:
        return _OPENCV(raw, 0, 0)
    except MaskDecodeError:
        return None


@pytest.fixture
def paths(monkeypatch):
    """Which decoder returned each PNG: "fast" or "opencv"."""
    taken: list[str] = []
    fast, slow = maskpng._inflate_gray8, maskpng._decode_with_opencv

    def spy_fast(*args):
        out = fast(*args)
        if out is not None:
            taken.append("fast")
        return out

    def spy_slow(*args):
        taken.append("opencv")
        return slow(*args)

    monkeypatch.setattr(maskpng, "_inflate_gray8", spy_fast)
    monkeypatch.setattr(maskpng, "_decode_with_opencv", spy_slow)
    return taken


def _cv2_png(arr: np.ndarray, png_filter: int) -> bytes:
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_FILTER, png_filter])
    assert ok
    return buf.tobytes()


CASES = [
    # id, PNG bytes, decoder expected
    ("gray8 256x256 no filter", _png(_ramp(256, 256)), "fast"),
    ("gray8 1x1", _png(np.full((1, 1), 200, np.uint8)), "fast"),
    ("gray8 non-square 3x7", _png(_ramp(3, 7)), "fast"),
    ("gray8 non-square 7x3", _png(_ramp(7, 3)), "fast"),
    ("gray8 all zero", _png(np.zeros((16, 9), np.uint8)), "fast"),
    ("gray8 two IDAT chunks", None, "fast"),  # built below
    ("cv2 filter NONE", _cv2_png(_ramp(40, 30), cv2.IMWRITE_PNG_FILTER_NONE), "fast"),
    ("cv2 filter SUB", _cv2_png(_ramp(40, 30), cv2.IMWRITE_PNG_FILTER_SUB), "opencv"),
    ("cv2 filter UP", _cv2_png(_ramp(40, 30), cv2.IMWRITE_PNG_FILTER_UP), "opencv"),
    ("cv2 filter PAETH", _cv2_png(_ramp(40, 30), cv2.IMWRITE_PNG_FILTER_PAETH), "opencv"),
    ("one row Sub-filtered", _png(_ramp(5, 6), filters=b"\x00\x00\x01"), "opencv"),
    ("gray8 with tRNS", _png(_ramp(8, 8), extra=((b"tRNS", b"\x00\x07"),)), "opencv"),
    ("gray16", _png(np.repeat(_ramp(6, 5), 2, axis=1), depth=16), "opencv"),
    ("RGB", _cv2_png(np.dstack([_ramp(6, 5)] * 3), cv2.IMWRITE_PNG_FILTER_NONE), "opencv"),
    ("gray+alpha", _png(np.repeat(_ramp(6, 5), 2, axis=1), colour=4), "opencv"),
    ("stream too short", _png(_ramp(6, 5), stream=zlib.compress(b"\x00" * 20)), "opencv"),
    ("stream too long", _png(_ramp(6, 5), stream=zlib.compress(b"\x00" * 100)), "opencv"),
    ("stream cut", _png(_ramp(6, 5), stream=zlib.compress(b"\x00" * 36)[:-6]), "opencv"),
    ("stream then garbage", _png(_ramp(6, 5), stream=zlib.compress(b"\x00" * 36) + b"xyz"), "opencv"),
    ("not zlib", _png(_ramp(6, 5), stream=b"hello world"), "opencv"),
    ("zlib preset dictionary flag", _png(_ramp(6, 5), stream=b"\x78\xbb" + zlib.compress(b"\x00" * 36)[2:]),
     "opencv"),
    ("zlib header check bits wrong", _png(_ramp(6, 5), stream=b"\x78\x9d" + zlib.compress(b"\x00" * 36)[2:]),
     "opencv"),
    ("no Adler-32 trailer", _png(_ramp(6, 5), stream=zlib.compress(b"\x00" * 36)[:-4]), "opencv"),
    # malformed framing that libpng refuses: the fast path must not read past it
    ("unknown critical chunk", _png(_ramp(6, 5), extra=((b"ABCD", b"xy"),)), "opencv"),
    ("ancillary chunk kept", _png(_ramp(6, 5), extra=((b"tEXt", b"k\x00v"), (b"gAMA", b"\x00\x00\xb1\x8f"))),
     "fast"),
    ("second IHDR", _png(_ramp(6, 5), extra=((b"IHDR", struct.pack(">IIBBBBB", 5, 6, 8, 0, 0, 0, 0)),)),
     "opencv"),
    ("IDAT split by tEXt", None, "opencv"),  # built below
    ("IHDR of 14 bytes", None, "opencv"),    # built below
]


def _two_idat() -> bytes:
    rows = _ramp(12, 10)
    stream = zlib.compress(np.hstack([np.zeros((12, 1), np.uint8), rows]).tobytes())
    header = struct.pack(">IIBBBBB", 10, 12, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream[:7])
            + _chunk(b"IDAT", stream[7:]) + _chunk(b"IEND", b""))


def _idat_split_by_text() -> bytes:
    stream = zlib.compress(np.hstack([np.zeros((12, 1), np.uint8), _ramp(12, 10)]).tobytes())
    header = struct.pack(">IIBBBBB", 10, 12, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream[:7])
            + _chunk(b"tEXt", b"k\x00v") + _chunk(b"IDAT", stream[7:]) + _chunk(b"IEND", b""))


def _long_ihdr() -> bytes:
    header = struct.pack(">IIBBBBB", 5, 6, 8, 0, 0, 0, 0) + b"\x00"
    stream = zlib.compress(np.hstack([np.zeros((6, 1), np.uint8), _ramp(6, 5)]).tobytes())
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream)
            + _chunk(b"IEND", b""))


_BUILT = {"gray8 two IDAT chunks": _two_idat, "IDAT split by tEXt": _idat_split_by_text,
          "IHDR of 14 bytes": _long_ihdr}


@pytest.mark.parametrize("name, raw, expected_path", CASES, ids=[c[0] for c in CASES])
def test_each_form_decodes_as_opencv_decodes_it(name, raw, expected_path, paths):
    raw = _BUILT[name]() if raw is None else raw
    oracle = _opencv(raw)
    if oracle is None:
        with pytest.raises(MaskDecodeError, match="cannot be decoded"):
            maskpng.decode_png(raw)
    else:
        got = maskpng.decode_png(raw)
        assert got.dtype == np.uint8 and got.shape == oracle.shape
        np.testing.assert_array_equal(got, oracle)
    assert paths == [expected_path]


def test_fast_path_returns_the_samples_it_was_given():
    rows = _ramp(9, 14)
    np.testing.assert_array_equal(maskpng.decode_png(_png(rows)), rows)


def test_real_masks_take_the_fast_path_and_match_opencv(real_dir, paths):
    """Every PNG mask in the recorded answers: the form the fast path exists for."""
    found = 0
    for path in sorted(real_dir.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        for m in re.finditer(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text):
            try:
                raw = base64.b64decode(m.group(1) + "=" * (-len(m.group(1)) % 4))
                oracle = _opencv(raw)
                got = maskpng.decode_png(raw)
            except (MaskDecodeError, ValueError):
                continue  # the truncated recordings: covered by the parse tests
            np.testing.assert_array_equal(got, oracle)
            found += 1
    assert found >= 15
    assert paths.count("fast") == found


def test_a_fast_decoded_map_is_never_written_through(real_dir):
    """probability_to_crop thresholds into its own buffer, so the decoded bytes stay as decoded."""
    from visionkit.core.masks import probability_to_crop

    text = (real_dir / "cookbook-cupcakes" / "segment.txt").read_text()
    item = json.loads(text.split("```json", 1)[1].split("```", 1)[0])[0]
    prob = maskpng.probability_view(item["mask"])  # what decode_mask hands to probability_to_crop
    before = prob.copy()
    h, w = prob.shape
    crop = probability_to_crop(prob, np.array([10, 20, 10 + w, 20 + h]))  # same size: no resize
    assert crop.data.shape == (h, w)
    np.testing.assert_array_equal(prob, before)
    np.testing.assert_array_equal(crop.data, before > 127)


def test_a_wrong_adler32_under_a_right_crc_is_read_not_refused():
    """The chunk CRC-32 proves the compressed bytes arrived intact, so the fast path does not spend 40% of
    the inflate recomputing the zlib Adler-32 (libpng would refuse this PNG, printing to stderr)."""
    rows = _ramp(6, 5)
    good = zlib.compress(np.hstack([np.zeros((6, 1), np.uint8), rows]).tobytes())
    bad = good[:-4] + bytes([good[-4] ^ 1]) + good[-3:]
    np.testing.assert_array_equal(maskpng.decode_png(_png(rows, stream=bad)), rows)


def test_a_corrupt_idat_is_refused_by_its_crc_before_inflating():
    raw = bytearray(_png(_ramp(6, 5)))
    raw[raw.index(b"IDAT") + 6] ^= 0xFF  # a byte of the compressed data; the chunk's CRC no longer matches
    with pytest.raises(MaskDecodeError, match="CRC of its 'IDAT' chunk"):
        maskpng.decode_png(bytes(raw))


def test_the_public_decoder_returns_a_writable_map():
    """decode_png_probability is public API: its callers may write into what it returns, as before the
    fast path existed (which returns a read-only view internally)."""
    value = "data:image/png;base64," + base64.b64encode(_png(_ramp(4, 3))).decode()
    assert not maskpng.probability_view(value).flags.writeable
    prob = maskpng.decode_png_probability(value)
    prob[0, 0] = 7
    assert prob[0, 0] == 7 and prob.flags.c_contiguous
