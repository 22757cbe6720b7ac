"""Mask values from Gemini answers -> binary :class:`~visionkit.core.maskcrop.MaskCrop`.

Forms understood (anything else raises :class:`~visionkit.errors.MaskDecodeError`):

* **PNG probability map** (Gemini 2.5): base64 PNG, with or without a ``data:image/png;base64,`` prefix,
  in any PNG mode (grayscale, palette, RGB, RGBA, 16-bit). It covers the item's box. It is resized to the
  integer pixel box of :func:`visionkit.core.boxes.gemini_to_pixel_box` and binarized at ``> threshold``.
* **Polygon** (newer models): ``[[a, b], ...]`` 0-1000 points (or a flat ``[a, b, a, b, ...]``, or a list
  of such polygons), axis order decided by :func:`visionkit.core.boxes.guess_polygon_order` (a close
  call is noted, and becomes the item's warning). Pixels whose centre lies inside are set; the crop is
  the polygon's own bounds (it may reach outside the box).
* **Boolean grid**: a 2-D JSON list of booleans (or 0/1) covering the box, or a flat list of booleans whose
  length is a perfect square. Resized like a PNG map.
* ``<start_of_mask><seg_N>...<end_of_mask>`` tokens: no public decoder exists, so these are refused by name.

Probability maps of a colour PNG become one channel as follows: an alpha channel that is not constant is
the probability (a coloured mask drawn on transparency); otherwise the luminance is.

Limits (memory and time stay bounded by what an answer can justify, whatever it declares):

* a PNG whose header declares a side over :data:`MAX_MASK_SIDE`, or more than
  :data:`MAX_MASK_DECODED_BYTES` of decoded samples (width x height x channels x bytes per sample), is
  refused before it is decoded;
* a mask crop (the pixels of its box, or of a polygon's bounds) over :data:`MAX_MASK_PIXELS` is refused
  before it is allocated, and :func:`visionkit.answers.parse.parse_response` refuses the masks past
  :data:`MAX_ANSWER_MASK_PIXELS` in total, in item order (:func:`mask_pixels_bound` says what each costs);
* a polygon mask with more than :data:`MAX_POLYGON_POINTS` points is thinned to that many (evenly spaced
  points of each ring) before it is filled, with a note: filling a self-intersecting polygon costs
  about (points x crossings per row), which random points make quadratic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import MaskDecodeError
from .boxes import gemini_polygon_to_xy, guess_polygon_order
from .maskcrop import MaskCrop
from .maskpng import MAX_MASK_DECODED_BYTES, MAX_MASK_SIDE, decode_png_probability, probability_view

__all__ = [
    "DEFAULT_THRESHOLD",
    "MAX_ANSWER_MASK_PIXELS",
    "MAX_MASK_DECODED_BYTES",
    "MAX_MASK_PIXELS",
    "MAX_MASK_SIDE",
    "MAX_POLYGON_POINTS",
    "decode_png_probability",
    "probability_to_crop",
    "polygon_to_crop",
    "decode_mask",
    "mask_pixels_bound",
]

#: Binarization threshold for 0-255 probability maps: the midpoint, as Google's cookbook says.
DEFAULT_THRESHOLD = 127
#: Largest mask crop, in pixels (one byte each while it is built): about 11585 x 11585.
MAX_MASK_PIXELS = 2**27
#: Largest total of mask crop pixels in one answer (192 MiB of bool crops); masks past it are dropped with
#: a warning. About 16 masks the size of a 12 MP image: a hostile 3 KB answer of 45 full-image triangles
#: on 4000x3000 held 539 MB with 2**29 and stays under 230 MB with this (issue 19 #11), while 100 honest
#: masks of objects in a 12 MP photo use a fraction of it.
MAX_ANSWER_MASK_PIXELS = 3 * 2**26
#: Polygon masks with more points (all rings together) are thinned to this many before filling.
MAX_POLYGON_POINTS = 1000

_POLY_MARGIN = 2
_SEG_TOKEN = re.compile(r"<seg_\d+>")


def probability_to_crop(prob: np.ndarray, pixel_box: Sequence[int], threshold: int = DEFAULT_THRESHOLD
                        ) -> MaskCrop:
    """Resize a uint8 ``(h, w)`` probability map onto the integer box and binarize at ``> threshold``.

    Args:
        prob: uint8 ``(h, w)`` map covering the box.
        pixel_box: int ``[x0, y0, x1, y1]`` (exclusive max) from
        :func:`~visionkit.core.boxes.gemini_to_pixel_box`
            (an array row or a list).
        threshold: a pixel is in the mask when its resized value is strictly greater than this.

    Resampling is bilinear (``cv2.INTER_LINEAR``), as in the published recipe. Pillow's bilinear filter
    widens its support when it shrinks, OpenCV's does not, so a few edge pixels differ from the recipe
    (mean IoU 0.997-0.999 on the real cupcakes answer). ``cv2.INTER_AREA`` was measured too: slightly
    closer when shrinking, but 5x slower for 256 px maps.
    """
    x0, y0, x1, y1 = map(int, pixel_box)
    bw, bh = x1 - x0, y1 - y0
    h, w = prob.shape
    if bw <= 0 or bh <= 0:
        return MaskCrop(np.zeros((max(bh, 0), max(bw, 0)), dtype=bool), x0, y0)
    _check_crop(bw, bh)
    if (bw, bh) == (w, h):
        resized = prob.copy()  # thresholded in place below; never write into the caller's array
    else:
        resized = cv2.resize(prob, (bw, bh), interpolation=cv2.INTER_LINEAR)
    # cv2.threshold is several times faster than numpy's `>` here; 0/1 uint8 viewed as bool.
    _, binary = cv2.threshold(resized, threshold, 1, cv2.THRESH_BINARY, dst=resized)
    return MaskCrop(binary.view(bool), x0, y0)


def polygon_to_crop(polygons: list[np.ndarray], image_wh: tuple[int, int]) -> MaskCrop:
    """Rasterize pixel-space polygons (each float ``(K, 2)`` ``(x, y)``) into one crop (their union).

    A pixel is set when its centre ``(i + 0.5, j + 0.5)`` is inside a polygon (OpenCV's fill rule, with
    4 bits of sub-pixel precision) and inside the polygons' pixel bounds ``[floor(min), ceil(max))``: the
    result equals a full-image ``cv2.fillPoly`` of the same points, restricted to those bounds (OpenCV
    also sets the pixel just past a right or bottom edge that falls on a pixel centre; a 100-pixel-wide
    polygon covers 100 pixels, as a box does).

    Raises:
        MaskDecodeError: a point is NaN or infinite.
    """
    width, height = image_wh
    allpts = np.concatenate(polygons, axis=0)
    if not np.isfinite(allpts).all():
        raise MaskDecodeError("mask polygon has a NaN or infinite point")
    x0 = int(np.clip(np.floor(allpts[:, 0].min()), 0, width))
    y0 = int(np.clip(np.floor(allpts[:, 1].min()), 0, height))
    x1 = int(np.clip(np.ceil(allpts[:, 0].max()), 0, width))
    y1 = int(np.clip(np.ceil(allpts[:, 1].max()), 0, height))
    _check_crop(x1 - x0, y1 - y0)
    if x1 <= x0 or y1 <= y0:
        return MaskCrop(np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool), x0, y0)
    # OpenCV clips polygons at the canvas edge, which moves the pixels it sets along edges that reach it:
    # fill with a margin (except at the image's own border), then keep the polygons' pixel bounds, so the
    # crop equals a full-image cv2.fillPoly of the same points within those bounds.
    px0, py0 = max(x0 - _POLY_MARGIN, 0), max(y0 - _POLY_MARGIN, 0)
    px1, py1 = min(x1 + _POLY_MARGIN, width), min(y1 + _POLY_MARGIN, height)
    canvas = np.zeros((py1 - py0, px1 - px0), dtype=np.uint8)
    # 4 bits of sub-pixel precision, fewer when the crop is so long that int32 would overflow
    shift = max(0, min(4, 30 - max(canvas.shape).bit_length()))
    fixed = [np.round((p - [px0 + 0.5, py0 + 0.5]) * (1 << shift)).astype(np.int32) for p in polygons]
    cv2.fillPoly(canvas, fixed, 1, lineType=cv2.LINE_8, shift=shift)
    crop = canvas[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
    return MaskCrop(crop.astype(bool), x0, y0)


def _check_crop(w: int, h: int) -> None:
    if w > 0 and h > 0 and w * h > MAX_MASK_PIXELS:
        raise MaskDecodeError(f"mask would cover {w}x{h} = {w * h:,} pixels, over the "
                              f"{MAX_MASK_PIXELS:,}-pixel limit for one mask; refused before allocating it")


def thin_polygons(polygons: list[np.ndarray], max_points: int = MAX_POLYGON_POINTS
                  ) -> tuple[list[np.ndarray], int]:
    """Polygons with at most about ``max_points`` points in all: each ring keeps evenly spaced points, at
    least 3. Returns ``(polygons, points before)``.

    Raises:
        MaskDecodeError: there are so many rings that even 3 points each exceed ``max_points``.
    """
    total = sum(len(p) for p in polygons)
    if total <= max_points:
        return polygons, total
    if 3 * len(polygons) > max_points:
        raise MaskDecodeError(f"mask has {len(polygons)} polygons ({total} points); at most "
                              f"{max_points // 3} polygons can be filled")
    out = []
    for p in polygons:
        k = max(3, len(p) * max_points // total)
        out.append(p[np.linspace(0, len(p), k, endpoint=False).astype(np.intp)])
    return out, total


def mask_pixels_bound(value: object, pixel_box: Sequence[int], image_wh: tuple[int, int]) -> int:
    """An upper bound of the pixels the crop of ``value`` would take, found without decoding it.

    A PNG or grid covers its integer box; a polygon covers at most the bounds of its points read either
    way round. A value that cannot be a mask costs 0 (decoding it fails anyway).
    """
    x0, y0, x1, y1 = map(int, pixel_box)
    if isinstance(value, str):
        return max(x1 - x0, 0) * max(y1 - y0, 0)
    if not isinstance(value, list) or not value:
        return 0
    try:
        if _as_grid(value) is not None:
            return max(x1 - x0, 0) * max(y1 - y0, 0)
        polygons = _as_polygons(value)
    except (MaskDecodeError, RecursionError):
        return 0
    if polygons is None:
        return 0
    pts = np.clip(np.concatenate(polygons), 0, 1000)
    lo, hi = float(pts.min()), float(pts.max())
    width, height = image_wh
    return (int(np.ceil(hi / 1000 * width)) - int(np.floor(lo / 1000 * width)) + 1) * (
        int(np.ceil(hi / 1000 * height)) - int(np.floor(lo / 1000 * height)) + 1)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_float_array(value: list) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError as exc:  # an integer too large for a float (hundreds of digits)
        raise MaskDecodeError("mask polygon has a number too large to be a coordinate") from exc
    if not np.isfinite(arr).all():
        raise MaskDecodeError("mask polygon has a NaN or infinite point")
    return arr


def _as_polygons(value: list) -> list[np.ndarray] | None:
    """Return 0-1000 ``(K, 2)`` arrays if ``value`` is a polygon, flat polygon or list of polygons.

    Raises:
        MaskDecodeError: a number is NaN, infinite or too large for a float.
    """
    if all(_is_number(v) for v in value):
        if len(value) >= 6 and len(value) % 2 == 0:
            return [_as_float_array(value).reshape(-1, 2)]
        return None
    if all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in value):
        return [_as_float_array(value)]
    if all(isinstance(poly, list) and poly for poly in value):
        out = []
        for poly in value:
            sub = _as_polygons(poly)
            if sub is None or len(sub) != 1:
                return None
            out.extend(sub)
        return out
    return None


def _as_grid(value: list) -> np.ndarray | None:
    """Return a uint8 0/255 grid if ``value`` is a boolean grid (2-D, or flat with a square length)."""
    def is_flag(v: object) -> bool:
        return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))

    if all(isinstance(v, bool) for v in value):
        side = int(round(len(value) ** 0.5))
        if side * side != len(value):
            raise MaskDecodeError(f"mask is a flat list of {len(value)} booleans, not a square grid; "
                                  "its width and height cannot be known")
        return np.asarray(value, dtype=np.uint8).reshape(side, side) * 255
    if all(isinstance(row, list) for row in value):
        widths = {len(row) for row in value}
        all_bool = all(isinstance(v, bool) for row in value for v in row)
        # Rows of two 0/1 ints are read as polygon points, not as a 2-pixel-wide grid.
        if (len(widths) == 1 and widths != {0} and (all_bool or widths != {2})
                and all(is_flag(v) for row in value for v in row)):
            return np.asarray(value, dtype=np.uint8) * 255
    return None


def decode_mask(value: object, *, box_2d: np.ndarray, pixel_box: Sequence[int], image_wh: tuple[int, int],
                threshold: int = DEFAULT_THRESHOLD, notes: list[str] | None = None,
                order: str | None = None) -> MaskCrop:
    """Turn one item's ``"mask"`` value into a :class:`MaskCrop`, whatever form it takes.

    Args:
        value: the raw JSON value of the item's ``"mask"`` field.
        box_2d: the item's ordered, clipped ``[ymin, xmin, ymax, xmax]`` (0-1000).
        pixel_box: its integer pixel box from :func:`~visionkit.core.boxes.gemini_to_pixel_box`.
        image_wh: ``(width, height)`` of the original image.
        threshold: binarization threshold for probability maps.
        notes: a list to append remarks to about a mask that was decoded with a change (a polygon
            thinned to :data:`MAX_POLYGON_POINTS`) or a guess (a close polygon axis order).
        order: ``"yx"`` or ``"xy"`` when the polygon point order is known (stated in the prompt); None:
            decided from the box by :func:`~visionkit.core.boxes.guess_polygon_order`, and a close call
            noted in ``notes``.

    Raises:
        MaskDecodeError: the value cannot be decoded; the message says what was expected.
    """
    if isinstance(value, str):
        if "<" in value and ("<start_of_mask>" in value or "<end_of_mask>" in value
                             or _SEG_TOKEN.search(value)):  # "<" is never base64
            n = len(_SEG_TOKEN.findall(value))
            raise MaskDecodeError(f"mask is <start_of_mask><seg_N> tokens ({n} tokens), which have no public "
                                  "decoder", snippet=value[:80])
        return probability_to_crop(probability_view(value), pixel_box, threshold)  # it copies
    if isinstance(value, list):
        if not value:
            raise MaskDecodeError("mask is an empty list; expected a PNG, a polygon or a boolean grid")
        grid = _as_grid(value)
        if grid is not None:
            return probability_to_crop(grid, pixel_box, threshold)
        polygons = _as_polygons(value)
        if polygons is None:
            raise MaskDecodeError("mask list is neither a polygon of [a, b] 0-1000 points nor a boolean grid")
        for poly in polygons:
            if len(poly) < 3:
                raise MaskDecodeError(f"mask polygon has {len(poly)} points; at least 3 are needed")
        polygons, before = thin_polygons(polygons)
        if notes is not None and before > MAX_POLYGON_POINTS:
            notes.append(f"polygon has {before} points, over the limit of {MAX_POLYGON_POINTS}; thinned to "
                         f"{sum(len(p) for p in polygons)} evenly spaced points before filling")
        if order is None:
            guess = guess_polygon_order(np.concatenate(polygons), box_2d)
            order = guess.order
            if guess.close and notes is not None:
                notes.append(guess.note())
        return polygon_to_crop([gemini_polygon_to_xy(p, order, image_wh) for p in polygons], image_wh)
    raise MaskDecodeError(f"mask is a JSON {type(value).__name__}; expected a base64 PNG string, a polygon "
                          "list or a boolean grid")
