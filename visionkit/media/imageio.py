"""Image file IO: open any supported image upright, read its size cheaply, list image files, write PNGs.

Every image leaves this module upright: the EXIF orientation tag is applied (``ImageOps.exif_transpose``,
or for baseline JPEGs read by :func:`read_rgb` the same transposes in :mod:`visionkit.media.fastread`),
because
Gemini's coordinates refer to the image as it is displayed, and so do visionkit's boxes.

Supported files: jpg, jpeg, png, webp, bmp, tif/tiff and gif (the first frame of a multi-page or animated
file), and heic/heif when the optional ``pillow-heif`` package is installed (``pip install visionkit[heif]``).
Only regular files are opened (:mod:`visionkit.media.filekind`): a FIFO, socket, device or link loop is an
:class:`~visionkit.errors.InputError`, never a hang. Every failure to read an input is an
:class:`~visionkit.errors.InputError` that names the file and says what was expected.

High bit depths: 16-bit gray (``I;16``), 32-bit integer (``I``) and float (``F``) images are reduced to
8-bit gray (``L``) by scaling, not clipping (see :func:`open_upright`), so they are neither sent to Gemini
nor drawn almost entirely white. 16-bit RGB(A) PNGs already come out of Pillow as 8-bit ``RGB``/``RGBA``.

Decompression bombs: an image with more than :data:`MAX_PIXELS` pixels is refused with an
:class:`~visionkit.errors.InputError` before its pixels are decoded. The limit is twice Pillow's default
``Image.MAX_IMAGE_PIXELS`` (the size at which Pillow itself turns its warning into an error).
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import ConfigError, ExportError, InputError
from .atomic import write_bytes_atomic
from .fastread import read_jpeg_rgb, scaled_size
from .filekind import IMAGE_SUFFIXES, OTHER_IMAGE_SUFFIXES, check_regular, image_names, iter_images

__all__ = [
    "IMAGE_SUFFIXES",
    "LARGE_PIXELS",
    "MAX_PIXELS",
    "OTHER_IMAGE_SUFFIXES",
    "ImageSource",
    "image_size",
    "image_header",
    "image_names",
    "iter_images",
    "large_image_note",
    "open_upright",
    "read_rgb",
    "set_max_pixels",
    "write_png_atomic",
]


#: Largest accepted image, in pixels (about 179 megapixels; 2 x Pillow's default warning limit).
MAX_PIXELS = 2 * 89_478_485

_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_HEIF_HINT = "HEIC/HEIF images need the pillow-heif package: pip install visionkit[heif]"
_EXPECTED = "a readable jpg, jpeg, png, webp, bmp, tif, gif or heic/heif image"

#: What :func:`open_upright` accepts: a file path, a PIL image or a uint8 array.
ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

_heif_lock = threading.Lock()
_heif_state: dict[str, bool] = {}  # {"available": bool} once the registration was attempted


def _heif_available() -> bool:
    """Register pillow-heif's opener with Pillow, once, on first need. False when it is not installed."""
    with _heif_lock:
        if "available" not in _heif_state:
            try:
                import pillow_heif
            except ImportError:
                _heif_state["available"] = False
            else:
                pillow_heif.register_heif_opener()
                _heif_state["available"] = True
        return _heif_state["available"]


def _check_pixels(size_wh: tuple[int, int], name: str) -> None:
    width, height = size_wh
    if width * height > MAX_PIXELS:
        raise InputError(f"{name}: image is {width}x{height} = {width * height:,} pixels, more than the "
                         f"limit of {MAX_PIXELS:,} (a possible decompression bomb); "
                         "downscale it first, or raise the limit (--max-pixels, imageio.set_max_pixels)")


#: Pillow's own decompression-bomb warning size (``PIL.Image.MAX_IMAGE_PIXELS`` by default).
LARGE_PIXELS = 89_478_485


def set_max_pixels(limit: int) -> None:
    """Set the largest accepted image, in pixels, for this process (default :data:`MAX_PIXELS`).

    Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, which warns above it and refuses above twice it)
    is raised to match when it is lower, so visionkit's limit is the one that applies. Pillow's
    ``DecompressionBombWarning`` names no file; :func:`large_image_note` says the same, naming it.
    """
    global MAX_PIXELS
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"max_pixels must be a positive int, got {limit!r}")
    MAX_PIXELS = limit
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1


def large_image_note(size_wh: tuple[int, int]) -> str | None:
    """A warning for an image above Pillow's decompression-bomb warning size but within the limit, or
    None: decoding it in full (for an overlay, or to send it) takes a lot of memory."""
    width, height = size_wh
    if width * height <= LARGE_PIXELS:
        return None
    return (f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over Pillow's "
            f"decompression-bomb warning size ({LARGE_PIXELS / 1e6:.0f}); decoding it takes about "
            f"{width * height * 3 / 1e9:.1f} GB")


def _open_file(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only). Raises InputError naming the file."""
    if path.suffix.lower() in _HEIF_SUFFIXES and not _heif_available():
        raise InputError(f"{path}: {_HEIF_HINT}")
    check_regular(path, _EXPECTED)  # a FIFO or device would block Image.open for ever
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image is too large to open safely ({exc})") from exc
    except Exception as exc:  # corrupt files make decoders raise many exception types
        raise InputError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); "
                         f"expected {_EXPECTED}") from exc
    try:
        _check_pixels(im.size, str(path))
    except InputError:
        im.close()
        raise
    return im


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise InputError(f"image array must be uint8, got dtype {arr.dtype}")
    if arr.ndim == 2:
        mode = "L"
    elif arr.ndim == 3 and arr.shape[2] == 3:
        mode = "RGB"
    elif arr.ndim == 3 and arr.shape[2] == 4:
        mode = "RGBA"
    else:
        raise InputError(f"image array must have shape (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, "
                         f"got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image array is empty, shape {arr.shape}")
    _check_pixels((arr.shape[1], arr.shape[0]), "image array")
    return Image.fromarray(np.ascontiguousarray(arr), mode=mode)


def open_upright(source: ImageSource) -> Image.Image:
    """Open ``source`` as a decoded PIL image with EXIF orientation applied.

    Args:
        source: a file path (``str`` or ``os.PathLike``), a PIL image (not modified; a transposed copy
            is returned) or a uint8 numpy array: ``(H, W, 3)`` RGB, ``(H, W)`` gray or ``(H, W, 4)`` RGBA
            (arrays have no EXIF and are taken as upright).

    Returns:
        A new, fully loaded PIL image in its own mode (``RGB``, ``RGBA``, ``L``, ``P``, ...), except that
        high-bit-depth gray is scaled down to 8-bit ``L``: ``I;16*`` keeps its high byte (``>> 8``); ``I``
        is taken as 8-bit data when its values lie in 0..255, as 16-bit data (``>> 8``) when they lie in
        0..65535, and is otherwise stretched from its minimum..maximum to 0..255; ``F`` is taken as 0..1
        data when its values lie in [0, 1] (times 255), else as 0..255 data, clipped (NaN -> 0).

    Raises:
        InputError: missing, unreadable, corrupt or oversized file (the message names it), HEIC without
            ``pillow-heif``, or an array of the wrong dtype/shape.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        name = str(getattr(source, "filename", "") or "PIL image")
        _check_pixels(source.size, name)
        try:
            return _to_8bit(ImageOps.exif_transpose(source))
        except Exception as exc:
            raise InputError(f"{name}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"image must be a path, a PIL image or a uint8 array, not {type(source).__name__}")
    path = Path(source)
    with _open_file(path) as im:
        try:
            im.load()
            return _to_8bit(ImageOps.exif_transpose(im))
        except Image.DecompressionBombError as exc:
            raise InputError(f"{path}: image is too large to open safely ({exc})") from exc
        except Exception as exc:  # truncated or corrupt pixel data
            raise InputError(f"{path}: cannot decode image ({type(exc).__name__}: {exc}); "
                             f"expected {_EXPECTED}") from exc


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale a high-bit-depth gray image (``I;16*``, ``I``, ``F``) to ``L``; other modes are returned as is.

    Pillow's own ``convert("L")``/``convert("RGB")`` clips these modes at 255 instead of scaling them.
    """
    mode = im.mode
    if mode.startswith("I;16"):
        out = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
    elif mode == "I":
        arr = np.asarray(im).astype(np.int64)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255:
            out = arr.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            out = (arr >> 8).astype(np.uint8)
        else:  # negative or beyond 16 bits: stretch min..max to 0..255
            out = np.round((arr - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)
    elif mode == "F":
        arr = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 255.0
        out = np.round(np.clip(arr, 0.0, 255.0)).astype(np.uint8)
    else:
        return im
    return Image.fromarray(np.ascontiguousarray(out))  # 2-D uint8: mode "L"


def read_rgb(source: ImageSource, max_side: int | None = None,
             checked: list[str] | None = None) -> np.ndarray:
    """The upright image as a new RGB ``uint8 (H, W, 3)`` array (alpha is dropped, gray is replicated).

    Args:
        source: as :func:`open_upright`.
        max_side: when given (> 0), the image is shrunk (never grown) so its longest side is at most this,
            to :func:`visionkit.media.fastread.scaled_size` (``cv2.INTER_AREA``). A JPEG file is then decoded
            at a reduced size directly, so the full-size frame is never held.
        checked: when given, receives libjpeg's complaint about a JPEG file's data ("" for none) if the
            decode checked it (see :func:`visionkit.media.fastread.read_jpeg_rgb`); it stays empty if not.

    Baseline JPEG files are decoded by OpenCV (:mod:`visionkit.media.fastread`: one frame instead of Pillow's
    three); everything else, and any JPEG OpenCV cannot be trusted with, by Pillow.

    Raises:
        InputError: as :func:`open_upright`.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with _open_file(path) as im:
            fast = im.format == "JPEG" and im.mode in ("RGB", "L")
            if fast:
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a broken EXIF block: let Pillow's reader decide
                    fast = False
            stored_wh = im.size
        if fast and 1 <= orientation <= 8:
            rgb = read_jpeg_rgb(path, stored_wh, orientation, max_side, checked)
            if rgb is not None:
                return rgb
    im = open_upright(source)
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")
        except Exception as exc:
            raise InputError(f"cannot convert image mode {im.mode!r} to RGB ({exc})") from exc
    target = scaled_size(im.size, max_side)
    rgb = np.array(im, dtype=np.uint8)
    if target != im.size:
        import cv2

        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
    return rgb


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of the UPRIGHT image at ``path``: :func:`image_header` without the orientation."""
    return image_header(path)[:2]


def image_header(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(width, height, orientation)``: the UPRIGHT size of the image at ``path`` and its EXIF orientation
    tag (1 = stored upright), read from the header and EXIF only.

    Pixels are not decoded, so this is cheap even for large files (for a PNG whose ``eXIf`` chunk is not
    before the pixel data, the chunks are walked with seeks, without decompressing them). Orientations
    5-8 (a 90 degree turn) swap width and height.

    Raises:
        InputError: missing, unreadable or oversized file (the message names it).
    """
    path = Path(path)
    with _open_file(path) as im:
        width, height = im.size
        try:
            if im.format == "PNG":
                # PngImageFile.getexif() decodes every pixel when no eXIf chunk precedes IDAT (it loads the
                # image to look for one after it). Find such a chunk by seeking instead; the base getexif
                # then reads info["exif"] (and XMP) without loading, as exif_transpose will see it.
                if "exif" not in im.info:
                    exif = _png_late_exif(path)
                    if exif is not None:
                        im.info["exif"] = exif
                orientation = Image.Image.getexif(im).get(0x0112, 1)
            else:
                orientation = im.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
        except Exception:  # a broken EXIF block: Pillow's exif_transpose would fail on it too
            orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(width), int(height), int(orientation) if orientation in range(1, 9) else 1


def _png_late_exif(path: Path) -> bytes | None:
    """The data of the first ``eXIf`` chunk of the PNG at ``path``, found by seeking from chunk header to
    chunk header (pixel data is skipped, not read), or None when there is none or the chunks are broken."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return None
                length, kind = struct.unpack(">I4s", header)
                if kind == b"eXIf":
                    data = f.read(length)
                    return data if len(data) == length else None
                if kind == b"IEND":
                    return None
                f.seek(length + 4, os.SEEK_CUR)  # the chunk's data and CRC
    except OSError:
        return None


def write_png_atomic(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write ``rgb`` as a PNG at ``path`` atomically (a temp file in the same folder, then ``os.replace``).

    Args:
        path: the target file; missing folders are created.
        rgb: ``uint8`` array, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` gray.

    Raises:
        ExportError: the array has the wrong dtype/shape, or the file cannot be written.
    """
    import cv2

    path = Path(path)
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ExportError(f"cannot write {path}: expected a uint8 (H, W, 3) RGB array, got "
                          f"{_describe(arr)}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    # Compression level 1: overlays are written once per image and read by people; size matters less.
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ExportError(f"cannot encode {path} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def _describe(arr: Any) -> str:
    return f"dtype {arr.dtype}, shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
