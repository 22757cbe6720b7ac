"""COCO segmentation -> MaskCrop without a full image: the fast decoder against pycocotools' full decode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from visionkit import ExportError, InputError
from visionkit.formats.coco_read import image_detections, rle_counts, rle_to_crop, segmentation_rle
from visionkit.quality.datasets import ann_to_crop


def _rle(full: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))


def _uncompressed(full: np.ndarray) -> dict:
    """COCO's uncompressed RLE, built by hand: column-major runs, starting with background."""
    flat = full.T.reshape(-1).astype(np.int8)
    counts = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]]))
    if flat.size and flat[0]:
        counts = np.concatenate([[0], counts])
    return {"size": list(full.shape), "counts": [int(v) for v in counts]}


def _oracle(seg, h: int, w: int, grow=None):
    """The slow reference: pycocotools decodes the whole image, then the crop is cut from it."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    full = mask_utils.decode(rle).astype(bool)
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if not rows.size and grow is None:
        return None
    box = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1] if rows.size else list(grow)
    if grow is not None:
        box = [min(box[0], grow[0]), min(box[1], grow[1]), max(box[2], grow[2]), max(box[3], grow[3])]
    return box, full[box[1]:box[3], box[0]:box[2]]


def _mask(h, w, *pixels_or_slices):
    full = np.zeros((h, w), bool)
    for s in pixels_or_slices:
        full[s] = True
    return full


def _ring(h, w):
    full = _mask(h, w, (slice(2, h - 2), slice(3, w - 3)))
    full[4:h - 4, 5:w - 5] = False  # a hole
    return full


_RNG = np.random.default_rng(7)
MASKS = {
    "empty": np.zeros((6, 9), bool),
    "empty 0x0": np.zeros((0, 0), bool),
    "all": np.ones((5, 8), bool),
    "first pixel": _mask(7, 4, (0, 0)),
    "last pixel": _mask(7, 4, (6, 3)),
    "top-right corner": _mask(7, 4, (0, 3)),
    "bottom-left corner": _mask(7, 4, (6, 0)),
    "full-height column": _mask(9, 5, (slice(None), 2)),
    "full-height crop, 3 columns": _mask(9, 5, (slice(None), slice(1, 4))),
    "run across columns": _mask(6, 6, (slice(4, None), 1), (slice(None), 2), (slice(0, 2), 3)),
    "full-width row": _mask(5, 11, (3, slice(None))),
    "wide non-square": _mask(3, 40, (1, slice(5, 30))),
    "tall non-square": _mask(40, 3, (slice(5, 39), 1)),
    "ring with a hole": _ring(16, 21),
    "two parts": _mask(12, 12, (slice(0, 3), slice(0, 3)), (slice(8, 12), slice(7, 12))),
    "random 30%": _RNG.random((23, 37)) < 0.3,
    "random blobs large": np.kron(_RNG.random((30, 40)) < 0.5, np.ones((100, 100), bool)),  # long runs
}


def _crop_cases():
    """Every mask x box-to-grow x form; a 0x0 image has only its compressed RLE and no box in it."""
    for name, full in MASKS.items():
        for grow in (None, (0, 0, 1, 1), "edge"):
            for form in ("compressed", "str counts", "uncompressed"):
                if full.size or (form == "compressed" and grow is None):
                    yield pytest.param(name, grow, form, id=f"{name}-{grow}-{form}")


@pytest.mark.parametrize("name, grow, form", list(_crop_cases()))
def test_rle_crop_equals_full_decode(name, grow, form):
    full = MASKS[name]
    h, w = full.shape
    grow = (max(w - 2, 0), max(h - 1, 0), w, h) if grow == "edge" else grow
    seg = {"compressed": lambda: _rle(full), "uncompressed": lambda: _uncompressed(full),
           "str counts": lambda: {**_rle(full), "counts": _rle(full)["counts"].decode()}}[form]()
    expected = _oracle(dict(seg), h, w, grow)
    got = rle_to_crop(segmentation_rle({"segmentation": seg}, h, w), grow=grow)
    if expected is None:
        assert got is None
        return
    box, data = expected
    assert got.xyxy == tuple(box)
    assert got.data.dtype == bool and np.array_equal(got.data, data)


@pytest.mark.parametrize("polys, wh", [
    ([[1.0, 1.0, 8.0, 1.0, 8.0, 5.0, 1.0, 5.0]], (10, 7)),
    ([[0.0, 0.0, 10.0, 0.0, 10.0, 7.0, 0.0, 7.0]], (10, 7)),  # the whole image
    ([[-5.0, -3.0, 4.3, 2.2, 1.0, 20.0]], (12, 9)),  # outside the image on three sides
    ([[2.5, 0.5, 30.7, 3.2, 17.1, 6.9]], (40, 8)),  # non-square, fractional points
    ([[1, 1, 4, 1, 4, 4], [6, 6, 9, 6, 9, 9, 6, 9]], (10, 10)),  # two polygons: their union
    ([[1, 1, 4, 1], [2, 2, 5, 2, 5, 5]], (10, 10)),  # a 2-point polygon is left out
])
def test_polygon_crop_equals_full_decode(polys, wh):
    w, h = wh
    expected = _oracle([p for p in polys if len(p) >= 6], h, w)
    got = ann_to_crop({"segmentation": polys}, w, h)
    box, data = expected
    assert got.xyxy == tuple(box) and np.array_equal(got.data, data)


def test_image_detections_keeps_the_box_and_grows_it_to_the_mask():
    full = _mask(20, 30, (slice(2, 18), slice(3, 9)))
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 4], "segmentation": _rle(full)}
    dets = image_detections({"width": 30, "height": 20}, [ann], {1: "cat"}, False)
    crop = dets.masks[0]
    assert crop.xyxy == (3, 2, 15, 18)
    assert np.array_equal(dets.mask(0), full)
    empty = {**ann, "segmentation": _rle(np.zeros((20, 30), bool))}
    crop = image_detections({"width": 30, "height": 20}, [empty], {1: "cat"}, False).masks[0]
    assert crop.xyxy == (5, 5, 15, 9) and not crop.data.any()


@pytest.mark.parametrize("seg, match", [
    ({"size": [5, 5], "counts": [3, 4]}, "add up to 5 \\* 5"),
    ({"size": [5, 5], "counts": [30, -5]}, "must be >= 0"),
    ({"size": [4, 5], "counts": "0"}, "RLE size \\[4, 5\\] is not the image's"),
    ({"size": [5, 5], "counts": "5"}, "cover 5 pixels, not 5 \\* 5"),
    ({"size": [5, 5], "counts": "\x7f"}, "outside"),
    ({"size": [5, 5], "counts": "P"}, "end in the middle"),
    ({"size": [5, 5]}, "RLE or polygons"),
    ("not a mask", "RLE or polygons"),
    ([[0, 0, "x", 1, 2, 2]], "RLE or polygons"),
    ([[0, 0, float("nan"), 1, 2, 2]], "finite"),
])
def test_bad_segmentations_name_the_annotation(seg, match):
    ann = {"id": 42, "segmentation": seg}
    with pytest.raises(InputError, match=f"annotation 42: .*{match}"):
        ann_to_crop(ann, 5, 5)
    with pytest.raises(ExportError, match="annotation 42"):
        image_detections({"width": 5, "height": 5}, [{**ann, "bbox": [0, 0, 2, 2], "category_id": 1}],
                         {1: "cat"}, False)


def test_rle_counts_matches_pycocotools_on_large_and_negative_deltas():
    full = np.zeros((3000, 4000), bool)
    full[10:2990, 5] = True
    full[0, 3999] = full[2999, 0] = True
    full[100:120, 1000:3500] = True
    rle = _rle(full)
    counts = rle_counts(rle["counts"])
    assert counts.sum() == full.size
    assert np.array_equal(counts, _uncompressed(full)["counts"])


def test_memory_grows_with_box_area_not_image_size():
    """A 12 MP image with 40 small masks: a full canvas per mask would trace 12 MB each."""
    h, w = 3000, 4000
    anns = []
    for i in range(40):
        x, y = 90 * i, 70 * i
        full = np.zeros((h, w), bool)
        full[y:y + 30, x:x + 50] = True
        seg = _rle(full) if i % 2 else [[x, y, x + 50, y, x + 50, y + 30, x + 10, y + 30]]
        anns.append({"id": i, "image_id": 1, "category_id": 1, "bbox": [x, y, 50, 30], "segmentation": seg})
    del full
    tracemalloc.start()
    try:
        dets = image_detections({"width": w, "height": h}, anns, {1: "cat"}, False)
        crops = [ann_to_crop(a, w, h) for a in anns]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(dets) == 40 and all(c is not None and c.area() > 0 for c in crops)
    assert peak < 1_000_000, peak  # one 12 MP bool canvas alone is 12 MB


def test_large_image_small_masks_fit_in_little_memory():
    """pycocotools' decode mallocs outside tracemalloc, so cap the address space instead: a 30000 x 30000
    image (900 MB per full decode) with small masks must decode under a 300 MB budget."""
    pytest.importorskip("resource")
    code = textwrap.dedent("""
        import resource
        import numpy as np
        from visionkit.formats.coco_read import image_detections
        from visionkit.quality.datasets import ann_to_crop
        h = w = 30000
        anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [100 * i, 50, 40, 40],
                 "segmentation": [[100 * i, 50, 100 * i + 40, 50, 100 * i + 40, 90, 100 * i + 5, 90]]}
                for i in range(5)]
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.RLIM_INFINITY))
        dets = image_detections({"width": w, "height": h}, anns, {1: "cat"}, False)
        crops = [ann_to_crop(a, w, h) for a in anns]
        assert all(c.area() > 1000 for c in crops) and len(dets) == 5
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_rle_total_equals_the_sum_of_rle_counts():
    """The fast pixel count of compressed RLE against the vectorised decoder, good and broken counts."""
    from visionkit.formats.coco_read import rle_total

    rng = np.random.default_rng(5)
    cases = []
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        cases.append(mask_utils.encode(np.asfortranarray(rng.random((h, w)) > rng.random()))["counts"])
    cases += [b"", b"0", b"1", b"o", b"\x7f", b"PPY1", b"0" * 5000, b"`" * 3, "3\udc80"]
    for counts in cases:
        try:
            want = int(rle_counts(counts).sum())
        except (ValueError, UnicodeEncodeError) as exc:
            with pytest.raises(type(exc)):
                rle_total(counts)
        else:
            assert rle_total(counts) == want
