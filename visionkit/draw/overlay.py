"""Drawing detections on an image: semi-transparent masks, box outlines, labelled tags and points.

:func:`draw_overlay` returns a NEW RGB ``uint8 (H, W, 3)`` array and never writes into its input. Work is
proportional to box area, not to ``N x H x W``: each mask is blended only inside its crop
(``out[y0:y1, x0:x1]``, selected by the crop's bool data) through a 256-entry lookup table per colour, so
there is no full-image canvas per mask and no per-pixel Python loop.

Drawing rules (coordinates as in :mod:`visionkit.core.detections`):

* Order: masks (largest mask area first, so small masks stay visible on top), then box outlines, then
  points, then label tags, so text is never covered by masks or outlines.
* Mask blend, per channel: ``out = floor(src * (1 - alpha) + colour * alpha + 0.5)``.
* A box outline of ``thickness`` pixels is drawn INSIDE the box's pixels: the box ``[x0, y0, x1, y1]``
  covers columns ``floor(x0) .. ceil(x1) - 1`` and nothing outside them changes.
* A tag is ``"label"`` or ``"label 0.87"`` (when ``show_scores`` and the item has a score) in the
  label's colour, with black text on light colours and white text on dark ones. It sits above the
  box's top-left corner, inside the box when there is no room above, and is shifted to stay inside
  the image. When that spot overlaps a tag already laid out (small boxes are laid out first), the
  next free one of: inside the top-left corner, below the bottom-left corner, inside the bottom-left
  corner, above or below the right end, one to three tag heights down inside the box; with no free
  spot, the least-overlapping one, and the tags of smaller boxes are pasted on top
  (:mod:`visionkit.draw.tag_layout`: linear in the number of tags).
* A tag is one line: line breaks, tabs and other control characters in a label are drawn as spaces, and
  a label longer than :data:`MAX_TAG_CHARS` characters is cut and ends in an ellipsis. The label itself
  (in COCO, in ``Detections``) is never changed.
* A point (a non-NaN row of ``detections.points``) is a filled circle in the label's colour with a
  contrasting rim; a point-only item (degenerate box ``[x, y, x, y]``) gets no outline and its tag
  goes above the point (below it when there is no room; right or left of it on a collision).
* Colours come from :func:`label_color`: a fixed palette indexed by ``zlib.crc32`` of the UTF-8 label,
  so one label has one colour in every image, process and run.

Text is rendered with Pillow (any Unicode the font covers; see :mod:`visionkit.draw.fonts` for the font
lookup and emoji). Each distinct tag is rendered once into a small patch, kept in a bounded LRU cache,
and pasted with numpy; the image itself is never converted to PIL. A label the font cannot draw (boxes
instead of CJK or emoji) raises a :class:`MissingGlyphWarning` naming the characters, or is passed to
``on_missing_glyphs`` (a label run makes it the image's warning).
"""

from __future__ import annotations

import functools
import math
import os
import unicodedata
import warnings
import zlib
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.detections import Detections
from ..core.text import single_line
from ..errors import InputError
from . import fonts
from .tag_layout import TagLayout

__all__ = ["MAX_TAG_CHARS", "PALETTE", "MissingGlyphWarning", "draw_overlay", "label_color", "render_tag"]


class MissingGlyphWarning(UserWarning):
    """A label has characters the label font cannot draw; they show as boxes ("tofu") in the overlay.

    Set ``VISIONKIT_FONT`` to a font that has them, or install one (see :mod:`visionkit.draw.fonts`).
    """

#: Distinct, saturated colours (RGB) that stay readable as tags and visible as translucent masks.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),    # red
    (60, 180, 75),    # green
    (255, 200, 20),   # yellow
    (0, 130, 200),    # blue
    (245, 130, 48),   # orange
    (145, 30, 180),   # purple
    (70, 220, 230),   # cyan
    (240, 50, 230),   # magenta
    (190, 230, 50),   # lime
    (250, 160, 190),  # pink
    (0, 128, 128),    # teal
    (180, 150, 255),  # lavender
    (170, 110, 40),   # brown
    (128, 0, 0),      # maroon
    (100, 230, 160),  # mint
    (128, 128, 0),    # olive
    (0, 0, 128),      # navy
    (255, 90, 40),    # vermilion
)

_TAG_CACHE_SIZE = 1024
#: Labels longer than this are cut (ending in an ellipsis) when drawn; a tag never grows without bound.
MAX_TAG_CHARS = 80


def label_color(label: str) -> tuple[int, int, int]:
    """The RGB colour of ``label``: ``PALETTE[crc32(utf-8 label) % len(PALETTE)]``, stable everywhere."""
    return PALETTE[zlib.crc32(str(label).encode("utf-8", "surrogatepass")) % len(PALETTE)]


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones: black when the relative luminance (sRGB, as in WCAG)
    exceeds 0.3. (WCAG's contrast ratio alone ties near 0.18 and would put black text on saturated red,
    which reads worse than white.)"""
    lin = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in bg]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return (0, 0, 0) if luminance > 0.3 else (255, 255, 255)


def draw_overlay(image: np.ndarray, detections: Detections, *, alpha: float = 0.45,
                 draw_masks: bool = True, draw_boxes: bool = True, draw_labels: bool = True,
                 show_scores: bool = True, thickness: int | None = None,
                 font: str | os.PathLike | None = None, font_size: int | None = None,
                 on_missing_glyphs: Callable[[str], None] | None = None) -> np.ndarray:
    """Draw ``detections`` on a copy of ``image``.

    Args:
        image: RGB ``uint8 (H, W, 3)``; ``(W, H)`` must equal ``detections.image_wh``. Not modified.
        detections: what to draw.
        alpha: mask opacity in ``[0, 1]`` (0: invisible, 1: solid colour).
        draw_masks, draw_boxes, draw_labels: switch each layer on or off (``draw_boxes`` covers box
            outlines and point markers).
        show_scores: append the score (2 decimals) to the label when the item has one.
        thickness: box outline width in pixels (>= 1); default ``max(1, round(min(W, H) / 400))``.
        font: a TrueType/OpenType font file; default: :func:`visionkit.draw.fonts.find_font`'s lookup.
        font_size: text size in pixels (>= 1); default ``max(10, round(min(W, H) * 0.022))``.
        on_missing_glyphs: called with the message instead of a :class:`MissingGlyphWarning`.

    Returns: a new C-contiguous RGB ``uint8 (H, W, 3)`` array.

    Raises:
        InputError: the image is not RGB uint8 (H, W, 3), its size differs from ``detections.image_wh``,
            an option is out of range, or a configured font is missing or unreadable.
    """
    if not isinstance(detections, Detections):
        raise InputError(f"detections must be a visionkit Detections, not {type(detections).__name__}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (f"array of shape {image.shape} and dtype {image.dtype}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise InputError(f"image must be an RGB uint8 array of shape (H, W, 3), got {got}")
    height, width = image.shape[:2]
    if (width, height) != tuple(detections.image_wh):
        dw, dh = detections.image_wh
        raise InputError(f"image is {width}x{height} (width x height) but detections.image_wh is "
                         f"{dw}x{dh}; draw on the image the detections were parsed for")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 <= alpha <= 1:
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    short = min(width, height)
    thickness = _positive("thickness", thickness, max(1, round(short / 400)))
    font_size = _positive("font_size", font_size, max(10, round(short * 0.022)))

    out = np.array(image, dtype=np.uint8, order="C", copy=True)
    n = len(detections)
    colors = [label_color(lbl) for lbl in detections.labels]

    if draw_masks and detections.masks is not None and alpha > 0:
        areas = np.array([0 if m is None else m.area() for m in detections.masks])
        for i in np.argsort(-areas, kind="stable"):
            crop = detections.masks[i]
            if crop is not None and crop.data.size:
                _blend_crop(out, crop.data, crop.x0, crop.y0, _blend_lut(colors[i], float(alpha)))

    points = detections.points
    has_point = (np.zeros(n, bool) if points is None else ~np.isnan(points).any(axis=1))
    boxes = _pixel_boxes(detections.xyxy, width, height)
    xyxy = detections.xyxy
    has_box = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])

    if draw_boxes:
        for i in np.flatnonzero(has_box):
            _rectangle(out, boxes[i], colors[i], thickness)
    radius = max(3, 2 * thickness + 1)
    for i in np.flatnonzero(has_point if draw_boxes else ()):
        center = (round((points[i, 0] - 0.5) * 16), round((points[i, 1] - 0.5) * 16))
        cv2.circle(out, center, radius * 16, colors[i], -1, cv2.LINE_AA, shift=4)
        cv2.circle(out, center, radius * 16, _text_color(colors[i]), max(1, thickness // 2),
                   cv2.LINE_AA, shift=4)

    if draw_labels and n:
        font_path = fonts.find_font(font)
        emoji_path = fonts.find_emoji_font()
        scores = detections.scores if show_scores else None
        layout = TagLayout(width, height, n)
        jobs = []
        # small boxes choose first (their tags are the hardest to attribute); big ones are pasted first
        for i in np.argsort(detections.box_area, kind="stable"):
            label = text = single_line(str(detections.labels[i]), MAX_TAG_CHARS)
            if scores is not None and math.isfinite(scores[i]):
                text = f"{text} {scores[i]:.2f}" if text else f"{scores[i]:.2f}"
            if not text:
                continue
            missing = _missing_glyphs(text, font_path, emoji_path)
            if missing:
                message = (f"label {label!r}: the font {font_path or '(Pillow built-in, Latin only)'} "
                           f"cannot draw {missing!r}, which show as boxes; set VISIONKIT_FONT to a font "
                           "that has them (see docs/cli.md, Fonts)")
                if on_missing_glyphs is None:  # attributed here: once per label, whoever draws
                    warnings.warn(MissingGlyphWarning(message), stacklevel=1)
                else:
                    on_missing_glyphs(message)
            tag = render_tag(text, colors[i], font_size, font_path, emoji_path)
            th, tw = tag.shape[:2]
            if has_box[i] or not has_point[i]:
                c0, r0, c1, r1 = (int(v) for v in boxes[i])
                spots = [(c0, r0 - th) if r0 >= th else (c0, r0), (c0, r0), (c0, r1 + 1),
                         (c0, r1 + 1 - th), (c1 + 1 - tw, r0 - th), (c1 + 1 - tw, r1 + 1)]
                spots += [(c0, r0 + k * th) for k in (1, 2, 3) if r0 + (k + 1) * th <= r1 + 1]
            else:
                px, py = float(points[i, 0]), float(points[i, 1])
                above, below = math.floor(py) - radius - 2 - th, math.ceil(py) + radius + 2
                cx, cy = round(px - tw / 2), round(py - th / 2)
                spots = [(cx, above) if above >= 0 else (cx, below), (cx, below),
                         (math.ceil(px) + radius + 2, cy), (math.floor(px) - radius - 2 - tw, cy)]
            x, y = layout.place([_clamp(x, y, tw, th, width, height) for x, y in spots], tw, th)
            jobs.append((tag, x, y))
        for tag, x, y in reversed(jobs):
            _paste(out, tag, x, y)
    return out


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# -- masks and boxes -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _blend_lut(color: tuple[int, int, int], alpha: float) -> np.ndarray:
    """uint8 ``(1, 256, 3)`` table: ``lut[0, v, c] = floor(v * (1 - alpha) + color[c] * alpha + 0.5)``."""
    v = np.arange(256, dtype=np.float64)[:, None]
    lut = np.floor(v * (1.0 - alpha) + np.asarray(color, np.float64)[None, :] * alpha + 0.5)
    lut = np.clip(lut, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    lut.setflags(write=False)
    return lut


def _blend_crop(out: np.ndarray, data: np.ndarray, x0: int, y0: int, lut: np.ndarray) -> None:
    """Blend the pixels of ``out`` under one mask crop, touching only the crop's rectangle."""
    h, w = data.shape
    window = (slice(y0, y0 + h), slice(x0, x0 + w))
    region = np.ascontiguousarray(out[window])
    blended = cv2.LUT(region, lut)
    # bool is one byte: view it as the uint8 mask OpenCV wants, without a copy
    out[window] = cv2.copyTo(blended, data.view(np.uint8), region)


def _pixel_boxes(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """int ``(N, 4)`` inclusive pixel boxes ``[c0, r0, c1, r1]`` covered by the continuous boxes."""
    if len(xyxy) == 0:
        return np.zeros((0, 4), np.int64)
    lo = np.floor(xyxy[:, :2])
    hi = np.ceil(xyxy[:, 2:]) - 1
    hi = np.maximum(hi, lo)
    boxes = np.concatenate([lo, hi], axis=1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    return boxes.astype(np.int64)


def _rectangle(out: np.ndarray, box: np.ndarray, color: tuple[int, int, int], thickness: int) -> None:
    """Outline of ``thickness`` pixels drawn inside the inclusive pixel box (four numpy slabs)."""
    c0, r0, c1, r1 = (int(v) for v in box)
    t = thickness
    out[r0:min(r0 + t, r1 + 1), c0:c1 + 1] = color
    out[max(r1 - t + 1, r0):r1 + 1, c0:c1 + 1] = color
    out[r0:r1 + 1, c0:min(c0 + t, c1 + 1)] = color
    out[r0:r1 + 1, max(c1 - t + 1, c0):c1 + 1] = color


def _clamp(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of a ``w x h`` patch shifted to lie inside the image (or at 0 when larger)."""
    return max(0, min(x, width - w)), max(0, min(y, height - h))


def _paste(out: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Paste ``patch`` with its top-left at ``(x, y)`` (already inside ``out``), cropped to ``out``."""
    height, width = out.shape[:2]
    ph, pw = min(patch.shape[0], height - y), min(patch.shape[1], width - x)
    out[y:y + ph, x:x + pw] = patch[:ph, :pw]


# -- text ----------------------------------------------------------------------------------------------

def render_tag(text: str, color: tuple[int, int, int], size: int, font_path: str | None = None,
               emoji_path: str | None = None) -> np.ndarray:
    """A label tag: ``text`` on a filled ``color`` rectangle, as a read-only RGB ``uint8 (h, w, 3)``.

    ``text`` is drawn as one line (see :func:`visionkit.core.text.single_line`): a line break would make
    the layout engine fail. The text colour is black or white (see module docstring). ``font_path=None``
    uses Pillow's built-in font; ``emoji_path`` (a colour emoji font, see :mod:`visionkit.draw.fonts`) renders
    emoji runs in colour. Results are cached (LRU, 1024 tags), so each distinct tag is rendered once per
    process.
    """
    text = single_line(str(text), MAX_TAG_CHARS)
    return _render_tag(text, tuple(int(c) for c in color), int(size), font_path, emoji_path)


@functools.lru_cache(maxsize=_TAG_CACHE_SIZE)
def _render_tag(text: str, color: tuple[int, int, int], size: int, font_path: str | None,
                emoji_path: str | None) -> np.ndarray:
    font = fonts._load_font(font_path, size)
    ascent, descent = _metrics(font)
    # (run, emoji image or None, ascent of that image, width)
    parts: list[tuple[str, Image.Image | None, int, int]] = []
    for run, is_emoji in (_split_emoji(text, emoji_path) if emoji_path else [(text, False)]):
        if is_emoji:
            img, img_ascent = _emoji_image(run, emoji_path, size)
            ascent, descent = max(ascent, img_ascent), max(descent, img.height - img_ascent)
            parts.append((run, img, img_ascent, img.width))
        else:
            parts.append((run, None, 0, math.ceil(font.getlength(run))))
    pad_x, pad_y = max(2, round(size * 0.3)), max(1, round(size * 0.15))
    width = sum(p[3] for p in parts) + 2 * pad_x
    canvas = Image.new("RGB", (width, ascent + descent + 2 * pad_y), color)
    draw = ImageDraw.Draw(canvas)
    fg = _text_color(color)
    x = pad_x
    for run, img, img_ascent, w in parts:
        if img is not None:
            canvas.paste(img, (x, pad_y + ascent - img_ascent), img)
        elif isinstance(font, ImageFont.FreeTypeFont):
            draw.text((x, pad_y + ascent), run, font=font, fill=fg, anchor="ls")
        else:  # bitmap font (Pillow built without FreeType): no anchors
            draw.text((x, pad_y), run, font=font, fill=fg)
        x += w
    arr = np.array(canvas, dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def _metrics(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> tuple[int, int]:
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.getmetrics()
    return font.getbbox("Ag")[3], 0


_JOINERS = frozenset({0x200D, 0xFE0E, 0xFE0F, 0x20E3})


def _emoji_candidate(cp: int) -> bool:
    return (0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF
            or 0x2300 <= cp <= 0x23FF)


# Characters that draw nothing visible of their own, so no glyph is expected: spaces, controls, format
# characters (joiners, variation selectors), combining marks, private use.
_NO_GLYPH_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me", "Co", "Cn"})


@functools.lru_cache(maxsize=1024)
def _missing_glyphs(text: str, font_path: str | None, emoji_path: str | None) -> str:
    """The distinct characters of ``text`` that neither the font nor (for emoji) the emoji font draws."""
    missing = []
    for run, is_emoji in (_split_emoji(text, emoji_path) if emoji_path else [(text, False)]):
        if is_emoji:
            continue
        for ch in dict.fromkeys(run):
            if unicodedata.category(ch) not in _NO_GLYPH_CATEGORIES and not fonts.has_glyph(font_path, ch):
                missing.append(ch)
    return "".join(missing)


def _split_emoji(text: str, emoji_path: str) -> list[tuple[str, bool]]:
    """``text`` cut into runs ``(run, is_emoji)``; joiners, variation selectors and tags join the run."""
    runs: list[tuple[str, bool]] = []
    for ch in text:
        cp = ord(ch)
        if runs and (cp in _JOINERS or 0xE0020 <= cp <= 0xE007F
                     or (runs[-1][0] and ord(runs[-1][0][-1]) == 0x200D)):
            runs[-1] = (runs[-1][0] + ch, runs[-1][1])
            continue
        is_emoji = _emoji_candidate(cp) and _emoji_has_glyph(emoji_path, ch)
        if runs and runs[-1][1] == is_emoji:
            runs[-1] = (runs[-1][0] + ch, is_emoji)
        else:
            runs.append((ch, is_emoji))
    return runs


@functools.lru_cache(maxsize=4096)
def _emoji_has_glyph(emoji_path: str, ch: str) -> bool:
    """True when the emoji font draws ``ch`` (its .notdef glyph has an empty box)."""
    left, top, right, bottom = fonts._load_font(emoji_path, fonts.EMOJI_BITMAP_SIZE).getbbox(ch)
    return right > left and bottom > top


def _emoji_image(run: str, emoji_path: str, size: int) -> tuple[Image.Image, int]:
    """``run`` drawn in colour at the emoji font's fixed size, scaled to ``size``: (RGBA, ascent)."""
    efont = fonts._load_font(emoji_path, fonts.EMOJI_BITMAP_SIZE)
    ascent, descent = efont.getmetrics()
    img = Image.new("RGBA", (max(1, math.ceil(efont.getlength(run))), ascent + descent), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((0, ascent), run, font=efont, anchor="ls", embedded_color=True)
    scale = size / fonts.EMOJI_BITMAP_SIZE
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # resize in premultiplied alpha so transparent pixels' colour does not bleed into the edges
    img = img.convert("RGBa").resize(new, Image.Resampling.LANCZOS).convert("RGBA")
    return img, round(ascent * scale)
