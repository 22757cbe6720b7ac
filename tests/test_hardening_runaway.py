"""Issue 11's runaway inputs: each stays linear or is capped with a warning. No clocks: the tests assert
on what reaches the expensive call (points filled, PNGs decoded) and on memory traced by tracemalloc."""

from __future__ import annotations

import base64
import json
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from conftest import png_b64

from visionkit import parse_response
from visionkit.core import maskpng, masks

BOX = [0, 0, 1000, 1000]


def _peak_mb(fn) -> tuple[float, object]:
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2**20, result


# -- #10 self-intersecting polygons of random points ---------------------------------------------------

@pytest.fixture
def filled_points(monkeypatch):
    """The number of points each cv2.fillPoly call received."""
    calls: list[int] = []
    real = cv2.fillPoly

    def spy(img, pts, *args, **kwargs):
        calls.append(sum(len(p) for p in pts))
        return real(img, pts, *args, **kwargs)

    monkeypatch.setattr(masks.cv2, "fillPoly", spy)
    return calls


@pytest.mark.parametrize("points, rings, thinned", [
    (6, 1, False),          # a real answer's polygon: untouched
    (1000, 1, False),       # at the limit
    (1001, 1, True),
    (8000, 1, True),        # the reported cases
    (20000, 1, True),
    (8000, 4, True),        # several rings share the budget
])
def test_a_polygon_over_the_point_limit_is_thinned_before_filling(points, rings, thinned, filled_points):
    rng = np.random.default_rng(points)
    ring = points // rings
    value = [rng.integers(0, 1000, (ring, 2)).tolist() for _ in range(rings)]
    d = parse_response(json.dumps([{"box_2d": BOX, "label": "x", "mask": value[0] if rings == 1 else value}]),
                       (1000, 700))
    assert filled_points and max(filled_points) <= 1000  # MAX_POLYGON_POINTS
    assert d.has_mask(0)
    warned = [str(w) for w in d.warnings if "thinned" in w.reason]
    assert bool(warned) == thinned
    if thinned:
        assert f"polygon has {ring * rings} points" in warned[0]


def test_thinning_keeps_a_dense_outline_close_to_the_original():
    t = np.linspace(0, 2 * np.pi, 5000, endpoint=False)
    ring = np.stack([500 + 400 * np.sin(t), 500 + 400 * np.cos(t)], axis=1).round(1).tolist()
    d = parse_response(json.dumps([{"box_2d": [100, 100, 900, 900], "label": "o", "mask": ring}]), (800, 800))
    full = np.zeros((800, 800), np.uint8)
    cv2.circle(full, (400, 400), 320, 1, -1)
    iou = (d.mask(0) & full.astype(bool)).sum() / (d.mask(0) | full.astype(bool)).sum()
    assert iou > 0.99


def test_too_many_rings_to_thin_drop_only_the_mask():
    value = [[[0, 0], [0, 10], [10, 10]]] * 400
    d = parse_response(json.dumps([{"box_2d": BOX, "label": "x", "mask": value}]), (100, 100))
    assert len(d) == 1 and not d.has_mask(0) and "400 polygons" in str(d.warnings[0])


# -- #12 memory bounded by what the answer can justify -------------------------------------------------

ONE_PIXEL = png_b64(np.full((1, 1), 255, np.uint8))


@pytest.mark.parametrize("image_wh, boxes, kept", [
    ((100_000, 100_000), [BOX], 0),                        # the reported 158-byte answer: 10^10 pixels
    ((20_000, 20_000), [BOX], 0),                          # 4 * 10^8 > 2^27
    ((11_000, 11_000), [BOX], 1),                          # 1.21 * 10^8 <= 2^27: decoded
    ((8_000, 6_000), [BOX] * 12, 4),                       # 5 * 4.8e7 > 3 * 2^26: the 5th on are refused
    ((4_000, 3_000), [[0, 0, 100, 100]] * 50, 50),         # many small masks: all kept
], ids=["1e10", "4e8", "1.2e8", "answer-budget", "small"])
def test_mask_memory_is_bounded_before_allocation(image_wh, boxes, kept, monkeypatch):
    answer = json.dumps([{"box_2d": b, "label": "x", "mask": ONE_PIXEL} for b in boxes])
    peak, d = _peak_mb(lambda: parse_response(answer, image_wh))
    assert sum(d.has_mask(i) for i in range(len(d))) == kept and len(d) == len(boxes)
    crops = sum(d.masks[i].data.size for i in range(len(d)) if d.has_mask(i)) if d.masks else 0
    # nothing beyond the crops that were kept, and at most one crop's worth of scratch space
    assert peak * 2**20 <= crops + 2**27 + 2**24  # + MAX_MASK_PIXELS of scratch
    refused = [w for w in d.warnings if w.field == "mask"]
    assert len(refused) == len(boxes) - kept
    assert all("limit" in w.reason or "pixels together" in w.reason for w in refused)


def _png_header_bomb(width: int, height: int, depth: int, colour: int) -> str:
    """A valid PNG of zeros whose header declares width x height (made row by row, so it is small)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\x00" * (1 + width * channels * depth // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


@pytest.fixture
def decoded(monkeypatch):
    """How many PNGs reached a decoder: the zlib fast path or cv2.imdecode."""
    calls: list[str] = []
    for name in ("_inflate_gray8", "_decode_with_opencv"):
        real = getattr(maskpng, name)

        def spy(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(maskpng, name, spy)
    return calls


@pytest.mark.parametrize("width, height, depth, colour, refused", [
    (4096, 4096, 16, 6, True),     # the reported case: 128 MiB of samples each
    (4096, 4096, 8, 2, True),      # 48 MiB
    (2896, 2896, 16, 0, False),    # 16.0 MiB: at the limit
    (4096, 4096, 8, 0, False),     # 16 MiB of 8-bit grayscale: still decoded
], ids=["16bit-rgba", "8bit-rgb", "16bit-gray", "8bit-gray"])
def test_a_png_declaring_too_many_decoded_bytes_is_refused_before_decoding(width, height, depth, colour,
                                                                            refused, decoded):
    n = 5 if refused else 1  # 5 x 174 KB of base64: under the answer-length cap (parse.MAX_ANSWER_CHARS)
    answer = json.dumps([{"box_2d": [0, 0, 100, 100], "label": "x",
                          "mask": _png_header_bomb(width, height, depth, colour)}] * n)
    d = parse_response(answer, (200, 200))
    assert len(d) == n
    if refused:
        assert decoded == [] and d.masks is None
        assert all(f"declares {width}x{height} {depth}-bit" in w.reason for w in d.warnings)
    else:
        assert len(decoded) == 1 and "no pixel above the threshold" in d.warnings[0].reason


@pytest.mark.parametrize("value, wh, expected", [
    (ONE_PIXEL, (1000, 500), 100 * 50),
    ([[True, False], [False, True]], (1000, 500), 100 * 50),
    ([[0, 0], [0, 100], [100, 100]], (1000, 500), 101 * 51),   # read either way round: the bounds of both
    (["a", "b"], (1000, 500), 0),                                # not a mask at all
    (42, (1000, 500), 0),
])
def test_mask_pixels_bound_is_known_without_decoding(value, wh, expected):
    bound = masks.mask_pixels_bound(value, np.array([0, 0, 100, 50]), wh)
    assert bound == expected
