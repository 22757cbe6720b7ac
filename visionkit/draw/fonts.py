"""Finding and loading fonts for overlay labels, with wide Unicode coverage (Japanese, Chinese, Korean).

Lookup order of :func:`find_font` (the first that applies wins):

1. the explicit ``path`` argument;
2. the environment variable ``VISIONKIT_FONT``;
3. well-known system fonts with wide coverage, CJK first:

   * Linux: Noto Sans CJK (``/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc`` and the other
     places distributions put it), Droid Sans Fallback, Arial Unicode;
   * macOS: ``/System/Library/Fonts/Hiragino*``, ``/Library/Fonts/Arial Unicode.ttf``;
   * Windows: ``C:\\Windows\\Fonts\\msgothic.ttc``, ``YuGothM.ttc``, ``arialuni.ttf``;
   * then DejaVu Sans (``/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf``: Latin, Greek, Cyrillic);

4. none found: :func:`find_font` returns None and :func:`load_font` falls back to Pillow's built-in
   ``ImageFont.load_default(size)``, which renders Latin only; other glyphs show as boxes.

A path given in (1) or (2) that does not exist raises :class:`~visionkit.errors.InputError` naming it:
a configured font is never silently replaced.

Emoji. Text fonts have no colour emoji. :func:`find_emoji_font` looks for ``VISIONKIT_EMOJI_FONT``
(a missing file raises InputError), then Noto Color Emoji (``NotoColorEmoji.ttf``) and Windows'
Segoe UI Emoji. Noto Color Emoji is a bitmap font that FreeType loads only at its fixed size
:data:`EMOJI_BITMAP_SIZE` (109); :func:`load_emoji_font` loads it at that size, and
:mod:`visionkit.draw.overlay` renders emoji with ``embedded_color=True`` and scales them down to the label's
size. With no emoji font, emoji render with whatever the main font covers (usually a box).

Missing glyphs. :func:`has_glyph` tells whether a font draws a character: a character the font does not
map is drawn with its ``.notdef`` glyph (usually a box), the same as the never-assigned code point
U+10FFFF, so the two are compared. :mod:`visionkit.draw.overlay` warns once per label that has such
characters.
Fonts with wide coverage on Debian/Ubuntu: ``fonts-noto-cjk`` (Chinese, Japanese, Korean),
``fonts-noto-color-emoji`` (emoji), ``fonts-dejavu-core`` (Latin, Greek, Cyrillic).

Nothing happens at import: the file system and the environment are read when a function is called.
Loaded fonts are cached per ``(path, size)``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import ImageFont

from ..errors import InputError

__all__ = [
    "EMOJI_BITMAP_SIZE",
    "EMOJI_FONT_ENV",
    "EMOJI_FONT_CANDIDATES",
    "FONT_CANDIDATES",
    "FONT_ENV",
    "find_emoji_font",
    "find_font",
    "has_glyph",
    "load_emoji_font",
    "load_font",
]

FONT_ENV = "VISIONKIT_FONT"
EMOJI_FONT_ENV = "VISIONKIT_EMOJI_FONT"
#: The only pixel size at which FreeType opens Noto Color Emoji (a CBDT bitmap font).
EMOJI_BITMAP_SIZE = 109

#: Step (3) of the lookup, in order. Collections (``.ttc``) are opened at face index 0.
FONT_CANDIDATES: tuple[str, ...] = (
    # Linux: Noto Sans CJK (Debian/Ubuntu, Fedora, Arch, other layouts)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-sans-cjk-vf-fonts/NotoSansCJK-VF.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
    "/usr/share/fonts/noto-cjk/NotoSansCJKjp-Regular.otf",
    # Linux: Droid Sans Fallback, Arial Unicode
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/droid/DroidSansFallback.ttf",
    "/usr/share/fonts/google-droid/DroidSansFallback.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/msttcorefonts/Arial_Unicode.ttf",
    # macOS
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/ヒラギノ角ゴシック W3.ttc",
    "/System/Library/Fonts/Hiragino Sans W3.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    # Windows
    "C:\\Windows\\Fonts\\msgothic.ttc",
    "C:\\Windows\\Fonts\\YuGothM.ttc",
    "C:\\Windows\\Fonts\\arialuni.ttf",
    # Latin, Greek, Cyrillic only
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)

EMOJI_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",
    "C:\\Windows\\Fonts\\seguiemj.ttf",
)


def _configured(path: str | os.PathLike | None, env: str, what: str) -> str | None:
    """The explicit path or the env var's value, checked to exist; None when neither is set."""
    if path is not None:
        source = "font path"
    else:
        path = os.environ.get(env) or None
        source = f"${env}"
    if path is None:
        return None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{what} file {path!r} (from {source}) does not exist")
    return path


def find_font(path: str | os.PathLike | None = None) -> str | None:
    """The label font file to use, following the module's lookup order.

    Args:
        path: an explicit font file (TrueType/OpenType, ``.ttf``/``.otf``/``.ttc``); wins over everything.

    Returns:
        The font file's path, or None when nothing was found (callers then use Pillow's built-in font).

    Raises:
        InputError: ``path`` or ``$VISIONKIT_FONT`` is set but names no existing file.
    """
    configured = _configured(path, FONT_ENV, "font")
    if configured is not None:
        return configured
    for candidate in FONT_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    hiragino = sorted(Path("/System/Library/Fonts").glob("Hiragino*")) if os.path.isdir(
        "/System/Library/Fonts") else []
    return str(hiragino[0]) if hiragino else None


def load_font(size: int,
              path: str | os.PathLike | None = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The label font at ``size`` pixels (em size), found with :func:`find_font`.

    Falls back to ``ImageFont.load_default(size)`` (Latin only) when no font file is found.

    Raises:
        InputError: a configured font does not exist or cannot be read as a font; ``size`` is not positive.
    """
    return _load_font(find_font(path), _check_size(size))


def find_emoji_font(path: str | os.PathLike | None = None) -> str | None:
    """The colour emoji font file: ``path``, then ``$VISIONKIT_EMOJI_FONT``, then known system files.

    Raises:
        InputError: ``path`` or ``$VISIONKIT_EMOJI_FONT`` names no existing file.
    """
    configured = _configured(path, EMOJI_FONT_ENV, "emoji font")
    if configured is not None:
        return configured
    return next((c for c in EMOJI_FONT_CANDIDATES if os.path.isfile(c)), None)


def load_emoji_font(path: str | os.PathLike | None = None) -> ImageFont.FreeTypeFont | None:
    """The colour emoji font at :data:`EMOJI_BITMAP_SIZE`, or None when there is none.

    Render with ``embedded_color=True`` and scale the result to the wanted size.

    Raises:
        InputError: a configured emoji font is missing or cannot be opened at that size.
    """
    found = find_emoji_font(path)
    if found is None:
        return None
    font = _load_font(found, EMOJI_BITMAP_SIZE)
    assert isinstance(font, ImageFont.FreeTypeFont)
    return font


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)) or int(size) < 1:
        raise InputError(f"font size must be a positive number of pixels, got {size!r}")
    return int(size)


@functools.lru_cache(maxsize=64)
def _load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Cached font loading; ``path=None`` is Pillow's built-in font."""
    if path is None:
        return ImageFont.load_default(size)
    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise InputError(f"font file {path!r} cannot be opened at size {size}: {exc}") from exc


#: A code point no font maps (the last one, a noncharacter): it draws as the font's .notdef glyph.
_NOTDEF_PROBE = "\U0010ffff"
_PROBE_SIZE = 24


def _glyph_image(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, ch: str) -> tuple:
    mask = font.getmask(ch)
    return mask.size, bytes(mask), font.getlength(ch)


@functools.lru_cache(maxsize=8192)
def has_glyph(path: str | None, ch: str) -> bool:
    """True when the font at ``path`` (None: Pillow's built-in font) draws ``ch`` with a glyph of its own,
    not its .notdef box. Cached per font and character."""
    font = _load_font(path, _PROBE_SIZE)
    return _glyph_image(font, ch) != _notdef(path)


@functools.lru_cache(maxsize=64)
def _notdef(path: str | None) -> tuple:
    return _glyph_image(_load_font(path, _PROBE_SIZE), _NOTDEF_PROBE)
