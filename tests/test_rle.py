"""Crop-aware RLE equals pycocotools.mask.encode of the full mask, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from visionkit import MaskCrop
from visionkit.core.rle import crop_to_counts, crop_to_rle, rle_area


def reference(crop: MaskCrop, image_wh) -> dict:
    rle = mask_utils.encode(np.asfortranarray(crop.to_full(image_wh).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


CASES = [
    # (image_wh, crop data, x0, y0)
    ((5, 4), np.zeros((0, 0), bool), 0, 0),  # empty crop
    ((5, 4), np.zeros((2, 3), bool), 1, 1),  # all-false crop
    ((5, 4), np.ones((4, 5), bool), 0, 0),  # whole image
    ((5, 4), np.ones((4, 2), bool), 3, 0),  # full-height crop on the right edge
    ((5, 4), np.ones((1, 1), bool), 4, 3),  # last pixel only
    ((5, 4), np.ones((1, 1), bool), 0, 0),  # first pixel only
    ((7, 3), np.array([[1, 0, 1], [1, 1, 1], [0, 1, 0]], bool), 2, 0),  # full height, non-square
    ((3, 9), np.array([[1], [0], [1]], bool), 2, 6),  # bottom-right corner, tall image
]


@pytest.mark.parametrize("image_wh, data, x0, y0", CASES)
def test_table(image_wh, data, x0, y0):
    crop = MaskCrop(data, x0, y0)
    assert crop_to_rle(crop, image_wh) == reference(crop, image_wh)


def test_random_crops_match_pycocotools():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        width, height = (int(v) for v in rng.integers(1, 24, 2))
        h = height if rng.random() < 0.3 else int(rng.integers(0, height + 1))
        w = width if rng.random() < 0.2 else int(rng.integers(0, width + 1))
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        crop = MaskCrop(rng.random((h, w)) < rng.random(), x0, y0)
        assert crop_to_rle(crop, (width, height)) == reference(crop, (width, height))


def test_counts_sum_to_image_area_and_area_matches():
    crop = MaskCrop(np.eye(30, dtype=bool), 100, 50)
    counts = crop_to_counts(crop, (400, 300))
    assert counts.sum() == 400 * 300
    assert rle_area(crop_to_rle(crop, (400, 300))) == 30


def test_large_image_without_a_full_canvas():
    crop = MaskCrop(np.ones((300, 400), bool), 3500, 2700)
    rle = crop_to_rle(crop, (4000, 3000))
    assert rle["size"] == [3000, 4000] and rle_area(rle) == 120000
    assert mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}).tolist() == [
        3500, 2700, 400, 300]


@pytest.mark.parametrize("image_wh, refused", [
    ((65535, 65537), False),  # 2**32 - 1 pixels: the largest image pycocotools' 32-bit counts can hold
    ((65536, 65536), True),   # 2**32: a run of zeros this long would wrap to 0
    ((2**31 - 1, 3), True),
])
@pytest.mark.parametrize("filled", [False, True])
def test_images_past_32_bit_run_lengths_are_refused_not_wrapped(image_wh, refused, filled):
    from visionkit import ExportError

    crop = MaskCrop(np.full((2, 2), filled, bool), 1, 1)
    if refused:
        with pytest.raises(ExportError, match="more than COCO RLE can hold"):
            crop_to_rle(crop, image_wh)
        return
    counts = crop_to_counts(crop, image_wh)
    assert int(counts.astype(np.uint64).sum()) == image_wh[0] * image_wh[1]
    assert rle_area(crop_to_rle(crop, image_wh)) == (4 if filled else 0)
