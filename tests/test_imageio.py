"""visionkit.media.imageio: upright opening, header-only sizes, folder expansion, atomic PNG writing."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from visionkit.errors import ExportError, InputError
from visionkit.media import imageio
from visionkit.media.imageio import (
    IMAGE_SUFFIXES,
    image_size,
    iter_images,
    open_upright,
    read_rgb,
    write_png_atomic,
)

ORIENTATION = 0x0112


def save_with_orientation(path: Path, arr: np.ndarray, orientation: int, **kwargs) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(arr).save(path, exif=exif.tobytes(), **kwargs)
    return path


def upright_oracle(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What the EXIF spec says the viewer shows, written with plain numpy."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }[orientation](stored)


@pytest.fixture
def stored() -> np.ndarray:
    """A non-square image whose every pixel differs, so any wrong turn or flip shows."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(4, 7, 3), dtype=np.uint8)


# -- open_upright / read_rgb / image_size ------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_matches_oracle(tmp_path, stored, orientation):
    path = save_with_orientation(tmp_path / f"o{orientation}.png", stored, orientation)
    expected = upright_oracle(stored, orientation)
    got = read_rgb(path)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".png", ".webp"])
@pytest.mark.parametrize("orientation, upright_wh",
                         [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_image_size_is_upright_size(tmp_path, suffix, orientation, upright_wh):
    path = save_with_orientation(tmp_path / f"img{suffix}", np.zeros((20, 40, 3), np.uint8), orientation)
    assert image_size(path) == upright_wh
    assert open_upright(path).size == upright_wh


def test_bmp_is_read(tmp_path, stored):
    path = tmp_path / "a.bmp"
    Image.fromarray(stored).save(path)
    np.testing.assert_array_equal(read_rgb(path), stored)


def test_image_size_reads_only_the_header(tmp_path):
    """A JPEG cut in the middle of its pixel data still has a size, but cannot be decoded."""
    path = save_with_orientation(tmp_path / "cut.jpg", np.full((300, 500, 3), 90, np.uint8), 6, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (300, 500)
    with pytest.raises(InputError, match="cut.jpg"):
        read_rgb(path)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_late_exif(path: Path, arr: np.ndarray, orientation: int, corrupt_idat: bool = False) -> Path:
    """A PNG whose eXIf chunk comes AFTER the pixel data (IDAT), optionally with garbage pixel data."""
    Image.fromarray(arr).save(path)
    data = bytearray(path.read_bytes())
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    raw = exif.tobytes().removeprefix(b"Exif\x00\x00")  # a PNG eXIf chunk holds the bare TIFF structure
    end = data.rindex(b"IEND") - 4
    data[end:end] = png_chunk(b"eXIf", raw)
    if corrupt_idat:
        start = data.index(b"IDAT") + 4
        length = struct.unpack(">I", data[start - 8:start - 4])[0]
        data[start:start + length] = bytes(range(256)) * (length // 256) + b"\xff" * (length % 256)
    path.write_bytes(bytes(data))
    return path


def test_png_image_size_does_not_decode_pixels(tmp_path, monkeypatch):
    """getexif() on a PNG without an eXIf chunk before IDAT loads every pixel; image_size must not."""
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (10, 20, 30)).save(path)
    loads = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(1) or real_load(self))
    assert image_size(path) == (3000, 2000)
    assert loads == []
    save_with_orientation(path, np.zeros((20, 40, 3), np.uint8), 6)  # eXIf before IDAT (Pillow's place)
    assert image_size(path) == (20, 40)
    assert loads == []


def test_png_late_exif_is_found_without_decoding(tmp_path):
    """An eXIf chunk after IDAT is honoured by exif_transpose after a full load, so image_size must see it
    too, and without decoding: with garbage pixel data it still gives the upright size."""
    stored = np.zeros((30, 50, 3), np.uint8)
    good = png_with_late_exif(tmp_path / "late.png", stored, 6)
    assert image_size(good) == open_upright(good).size == (30, 50)
    bad = png_with_late_exif(tmp_path / "late_corrupt.png", stored, 6, corrupt_idat=True)
    assert image_size(bad) == (30, 50)
    with pytest.raises(InputError, match="late_corrupt.png"):
        read_rgb(bad)


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    """Pillow's convert("RGB") clips I;16 at 255 (an almost white image); visionkit scales by >> 8."""
    deep = (np.arange(4 * 7, dtype=np.uint16).reshape(4, 7) * 2400 + 17)
    path = tmp_path / "deep.png"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(deep).save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # 16-bit gray: I;16 with current Pillow (13), I with older ones
    expected = upright_oracle((deep >> 8).astype(np.uint8)[:, :, None], 6)[:, :, 0]
    up = open_upright(path)
    assert up.mode == "L"
    np.testing.assert_array_equal(np.asarray(up), expected)
    np.testing.assert_array_equal(read_rgb(path), np.repeat(expected[:, :, None], 3, axis=2))
    assert image_size(path) == (4, 7)


def test_16bit_rgb_png_comes_out_as_8bit_rgb(tmp_path):
    """Pillow reads 16-bit RGB(A) PNGs as 8-bit RGB(A), keeping the high byte: no scaling needed."""
    import cv2

    rng = np.random.default_rng(3)
    deep = rng.integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    path = tmp_path / "deep_rgb.png"
    assert cv2.imwrite(str(path), deep[:, :, ::-1])  # cv2 writes BGR
    np.testing.assert_array_equal(read_rgb(path), (deep >> 8).astype(np.uint8))
    alpha = np.dstack([deep, np.full((5, 6), 65535, np.uint16)])
    assert cv2.imwrite(str(path), alpha[:, :, [2, 1, 0, 3]])
    assert open_upright(path).mode == "RGBA"
    np.testing.assert_array_equal(read_rgb(path), (deep >> 8).astype(np.uint8))


def _pil(arr: np.ndarray, mode: str) -> Image.Image:
    if mode == "I;16B":
        return Image.frombytes("I;16B", (arr.shape[1], arr.shape[0]), arr.astype(">u2").tobytes())
    return Image.fromarray(arr)


@pytest.mark.parametrize("arr, mode, expected", [
    (np.array([[0, 255, 256, 65535]], np.uint16), "I;16", [[0, 0, 1, 255]]),
    (np.array([[0, 255, 256, 65535]], np.uint16), "I;16B", [[0, 0, 1, 255]]),
    (np.array([[0, 4096, 32768, 65535]], np.int32), "I", [[0, 16, 128, 255]]),  # 16-bit data
    (np.array([[0, 7, 128, 255]], np.int32), "I", [[0, 7, 128, 255]]),  # 8-bit data is kept
    (np.array([[-100, 0, 100, 155]], np.int32), "I", [[0, 100, 200, 255]]),  # other: min..max
    (np.array([[0, 1 << 20, 1 << 24]], np.int32), "I", [[0, 16, 255]]),
    (np.array([[0.0, 0.25, 0.5, 1.0]], np.float32), "F", [[0, 64, 128, 255]]),  # 0..1 data
    (np.array([[-3.0, 0.5, 100.4, 300.0, np.nan]], np.float32), "F", [[0, 0, 100, 255, 0]]),  # 0..255
])
def test_high_bit_depth_pil_images_are_scaled(arr, mode, expected):
    im = _pil(arr, mode)
    assert im.mode == mode
    out = open_upright(im)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), np.array(expected, np.uint8))
    np.testing.assert_array_equal(read_rgb(im)[:, :, 1], np.array(expected, np.uint8))


@pytest.mark.parametrize("arr, mode", [
    (np.zeros((5, 6, 3), np.uint8), "RGB"),
    (np.zeros((5, 6), np.uint8), "L"),
    (np.zeros((5, 6, 4), np.uint8), "RGBA"),
])
def test_arrays_are_accepted(arr, mode):
    im = open_upright(arr)
    assert im.mode == mode and im.size == (6, 5)
    assert read_rgb(arr).shape == (5, 6, 3)


def test_read_rgb_of_gray_and_rgba_arrays():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_rgb(gray), np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.dstack([np.full((3, 4), v, np.uint8) for v in (10, 20, 30, 0)])
    np.testing.assert_array_equal(read_rgb(rgba), rgba[:, :, :3])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 6, 3), np.float32), "uint8"),
    (np.zeros((5, 6, 2), np.uint8), "shape"),
    (np.zeros((0, 6, 3), np.uint8), "empty"),
    (42, "not int"),
])
def test_bad_sources_raise_input_error(bad, message):
    with pytest.raises(InputError, match=message):
        open_upright(bad)


def test_pil_input_is_transposed_and_not_mutated(tmp_path, stored):
    path = save_with_orientation(tmp_path / "p.png", stored, 6)
    with Image.open(path) as im:
        im.load()
        before = im.size
        out = open_upright(im)
        assert im.size == before and im.getexif().get(ORIENTATION) == 6
    assert out.size == (before[1], before[0])


@pytest.mark.parametrize("name, content, fragment", [
    ("missing.jpg", None, "not found"),
    ("garbage.jpg", b"this is not an image", "expected"),
    ("empty.png", b"", "expected"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    for fn in (open_upright, read_rgb, image_size):
        with pytest.raises(InputError, match=fragment) as info:
            fn(path)
        assert name in str(info.value)
        if content is not None:
            assert info.value.__cause__ is not None


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="folder"):
        read_rgb(tmp_path)


def test_decompression_bomb_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(path)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 199)
    for fn in (open_upright, image_size):
        with pytest.raises(InputError,
                           match=r"big\.png: image is 20x10 = 200 pixels, more than the limit of 199 "):
            fn(path)
    with pytest.raises(InputError, match="image array"):
        open_upright(np.zeros((10, 20, 3), np.uint8))


def test_pillow_bomb_error_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (20, 10)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow refuses > 2 x 50 pixels
    with pytest.raises(InputError, match=r"bomb\.png.*too large"):
        read_rgb(path)


def test_heic_roundtrip(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.HEIC"
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:, :24] = (200, 30, 30)
    try:
        pillow_heif.from_pillow(Image.fromarray(arr)).save(path, quality=95)
    except Exception as exc:  # wheels without an HEVC encoder
        pytest.skip(f"cannot encode HEIC here: {exc}")
    assert image_size(path) == (48, 32)
    rgb = read_rgb(path)
    assert rgb.shape == (32, 48, 3)
    assert rgb[16, 5, 0] > 150 and rgb[16, 40, 0] < 60


def test_heic_without_pillow_heif_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic")
    monkeypatch.setattr(imageio, "_heif_state", {})
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    for fn in (open_upright, image_size):
        with pytest.raises(InputError, match=r"photo\.heic.*pip install visionkit\[heif\]"):
            fn(path)


# -- iter_images ---------------------------------------------------------------------------------------------

def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_iter_images_expands_folders_sorted_recursive(tmp_path):
    root = tmp_path / "photos"
    for rel in ("z.jpg", "B.JPEG", "sub/2.PNG", "sub/deeper/3.webp", "sub/notes.txt", ".hidden/4.jpg",
                "._5.jpg", "6.heic", "7.bmp", "8.tiff", "9.gif", "sub/10.avif", "11.SVG"):
        touch(root / rel)
    single = touch(tmp_path / "other" / "one.Webp")
    skipped = Counter()
    got = iter_images([root, str(single)], skipped=skipped)
    assert [(p.relative_to(r).as_posix(), r) for p, r in got] == [
        ("6.heic", root), ("7.bmp", root), ("8.tiff", root), ("9.gif", root), ("B.JPEG", root),
        ("sub/2.PNG", root), ("sub/deeper/3.webp", root), ("z.jpg", root), ("one.Webp", single.parent)]
    assert skipped == {".avif": 1, ".svg": 1}  # image formats not read: counted for one notice


@pytest.mark.parametrize("inputs, expected", [
    ([], []),
    (["empty"], []),
    ("a.jpg", ["a.jpg"]),  # a single path, not a list of characters
    (["a.jpg", "a.jpg", "."], ["a.jpg"]),  # listed once, at its first position
])
def test_iter_images_table(tmp_path, monkeypatch, inputs, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "a.jpg")
    assert [p.as_posix() for p, _ in iter_images(inputs)] == expected


def test_iter_images_errors(tmp_path):
    with pytest.raises(InputError, match="nope.jpg"):
        iter_images([tmp_path / "nope.jpg"])
    text = touch(tmp_path / "readme.txt")
    with pytest.raises(InputError, match="readme.txt.*not an image"):
        iter_images([text])


def test_image_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif"} == set(
        IMAGE_SUFFIXES)


# -- write_png_atomic ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7, 4), (5, 7)])
def test_write_png_atomic_roundtrip(tmp_path, shape):
    arr = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    target = tmp_path / "out.png"
    target.write_bytes(b"old content")
    write_png_atomic(target, arr)
    with Image.open(target) as im:
        np.testing.assert_array_equal(np.asarray(im), arr)
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize("arr", [np.zeros((5, 7, 3), np.float64), np.zeros((5, 7, 2), np.uint8)])
def test_write_png_atomic_rejects_bad_arrays(tmp_path, arr):
    with pytest.raises(ExportError, match="out.png"):
        write_png_atomic(tmp_path / "out.png", arr)
    assert os.listdir(tmp_path) == []


def test_write_png_atomic_folders(tmp_path):
    write_png_atomic(tmp_path / "new" / "out.png", np.zeros((2, 2, 3), np.uint8))  # created
    assert (tmp_path / "new" / "out.png").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="cannot write"):
        write_png_atomic(tmp_path / "file" / "out.png", np.zeros((2, 2, 3), np.uint8))
