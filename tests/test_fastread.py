"""The OpenCV JPEG reader (visionkit.media.fastread) against Pillow's, the reader it replaced, on every EXIF
orientation, and the shrinking reads used for small overlays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from visionkit.errors import InputError
from visionkit.media.fastread import read_jpeg_rgb, scaled_size
from visionkit.media.imageio import open_upright, read_rgb

ORIENTATION = 0x0112


def pillow_reader(path) -> np.ndarray:
    """The previous read_rgb: Pillow decode, exif_transpose, convert, np.array."""
    return np.array(open_upright(path).convert("RGB"), dtype=np.uint8)


def photo(h: int, w: int, seed: int = 0, cell: int = 8) -> np.ndarray:
    """Smooth colour noise with a red block in the stored top-left corner, so every flip and turn
    changes the pixels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // cell, 2), max(w // cell, 2), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img[: h // 5, : w // 3] = (250, 10, 10)  # a red corner block marks the stored top-left
    return img


def save_jpeg(path, arr, orientation=None, **kw):
    kw.setdefault("quality", 95)
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        kw["exif"] = exif.tobytes()
    Image.fromarray(arr).save(path, "JPEG", **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("hw", [(48, 80), (61, 37)])
def test_every_orientation_matches_the_pillow_reader(tmp_path, orientation, hw):
    path = save_jpeg(tmp_path / f"o{orientation}.jpg", photo(*hw), orientation)
    with Image.open(path) as im:
        stored_wh = im.size
    fast = read_jpeg_rgb(path, stored_wh, orientation)
    assert fast is not None, "the fast path declined a plain baseline JPEG"
    expected = pillow_reader(path)
    assert fast.shape == expected.shape and fast.dtype == np.uint8 and fast.flags.c_contiguous
    # both sides are libjpeg-turbo; allow rounding differences of the colour conversion only
    assert np.abs(fast.astype(int) - expected).max() <= 2
    np.testing.assert_array_equal(read_rgb(path), fast)  # read_rgb takes the fast path


def test_gray_jpeg_is_replicated_like_pillow(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.fromarray(photo(40, 30)[:, :, 1]).save(path, quality=95)
    got, expected = read_rgb(path), pillow_reader(path)
    assert got.shape == (40, 30, 3)
    assert np.abs(got.astype(int) - expected).max() <= 2


def test_cmyk_jpeg_is_left_to_pillow(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(photo(20, 30)).convert("CMYK").save(path, quality=95)
    np.testing.assert_array_equal(read_rgb(path), pillow_reader(path))


def test_trailing_bytes_after_the_image_fall_back_to_pillow(tmp_path):
    path = save_jpeg(tmp_path / "tail.jpg", photo(32, 48), 6)
    path.write_bytes(path.read_bytes() + b"extra data some cameras append")
    with Image.open(path) as im:
        assert read_jpeg_rgb(path, im.size, 6) is None
    np.testing.assert_array_equal(read_rgb(path), pillow_reader(path))


def test_truncated_jpeg_is_an_input_error_not_a_grey_image(tmp_path):
    path = save_jpeg(tmp_path / "cut.jpg", photo(300, 500), 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        read_rgb(path)


@pytest.mark.parametrize("size_wh, max_side, expected", [
    ((1024, 768), None, (1024, 768)),
    ((1024, 768), 0, (1024, 768)),
    ((1024, 768), 2048, (1024, 768)),     # never grown
    ((1024, 768), 1024, (1024, 768)),
    ((1024, 768), 512, (512, 384)),
    ((768, 1024), 512, (384, 512)),      # portrait
    ((4000, 3000), 1000, (1000, 750)),
    ((1000, 3), 100, (100, 1)),          # at least one pixel
    ((1, 1), 1, (1, 1)),
])
def test_scaled_size(size_wh, max_side, expected):
    assert scaled_size(size_wh, max_side) == expected


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("max_side", [150, 100, 41])
def test_shrinking_read_matches_a_full_decode_then_resize(tmp_path, orientation, max_side):
    """The reduced (1/2, 1/4, 1/8) DCT decode plus INTER_AREA gives the size asked for and the picture
    a full decode would, up to resampling differences."""
    path = save_jpeg(tmp_path / "big.jpg", photo(240, 400, cell=40), orientation)
    full = pillow_reader(path)
    target = scaled_size((full.shape[1], full.shape[0]), max_side)
    got = read_rgb(path, max_side=max_side)
    assert (got.shape[1], got.shape[0]) == target
    reference = cv2.resize(full, target, interpolation=cv2.INTER_AREA)
    diff = np.abs(got.astype(int) - reference)
    assert diff.mean() < 4
    for corner in (np.s_[:3, :3], np.s_[:3, -3:], np.s_[-3:, :3], np.s_[-3:, -3:]):  # the red block
        assert diff[corner].max() < 40


def test_shrinking_read_of_a_png_uses_pillow_then_resizes(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(photo(60, 90)).save(path)
    got = read_rgb(path, max_side=45)
    assert got.shape == (30, 45, 3)
    expected = cv2.resize(pillow_reader(path), (45, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(got, expected)
