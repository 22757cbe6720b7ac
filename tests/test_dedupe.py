"""visionkit.dedupe: the answer-order survivor rule, mask vs box IoU, against a slow full-size oracle."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from conftest import disk, png_b64

import visionkit as vk
from visionkit import Detections, MaskCrop
from visionkit.cli import main
from visionkit.core.overlap import box_iou, crop_iou, majority_crop
from visionkit.core.text import normalize_label

PAIR = re.compile(r"detection (\d+) .* duplicates detection (\d+)")


def make(items, wh):
    """items: (xyxy, label, crop or None)."""
    if not items:
        return Detections.empty(wh)
    masks = tuple(m for _, _, m in items)
    return Detections(np.array([b for b, _, _ in items], float), [lab for _, lab, _ in items], wh,
                      masks=masks if any(m is not None for m in masks) else None)


def box_crop(x0, y0, x1, y1, fill=True):
    return MaskCrop(np.full((y1 - y0, x1 - x0), fill, bool), x0, y0)


def oracle(dets: Detections, iou: float, class_agnostic: bool = False) -> tuple[list[int], list[tuple]]:
    """Slow and obvious: full-size masks, explicit box arithmetic, the same answer-order greedy rule."""
    kept, pairs = [], []
    for j in range(len(dets)):
        for i in kept:
            if not class_agnostic and normalize_label(dets.labels[i]) != normalize_label(dets.labels[j]):
                continue
            if dets.has_mask(i) and dets.has_mask(j):
                a, b = dets.mask(i), dets.mask(j)
                union = int((a | b).sum())
                value = (a & b).sum() / union if union else 0.0
            else:
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = dets.xyxy[i], dets.xyxy[j]
                iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
                ih = max(0.0, min(ay1, by1) - max(ay0, by0))
                union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - iw * ih
                value = iw * ih / union if union > 0 else 0.0
            if value >= iou:
                pairs.append((j, i))
                break
        else:
            kept.append(j)
    return kept, pairs


def dropped_pairs(out: Detections) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in PAIR.search(w.reason).groups())
            for w in out.warnings if w.field == "dedupe"]


def random_scene(rng, wh, n):
    """Random masked and unmasked objects, plus planted duplicates (1 px jitter) and near-misses."""
    width, height = wh
    items = []
    for _ in range(n):
        w, h = int(rng.integers(4, width // 2)), int(rng.integers(4, height // 2))
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if rng.random() < 0.3:  # touch the right/bottom edge
            x0, y0 = width - w, height - h
        label = str(rng.choice(["cup", "cups", "plate"]))
        crop = None
        if rng.random() < 0.7:
            crop = MaskCrop(rng.random((h, w)) < 0.8, x0, y0)
        items.append(((x0, y0, x0 + w, y0 + h), label, crop))
        if rng.random() < 0.5:  # a duplicate, shifted by up to one pixel
            dx, dy = int(rng.integers(-1, 2)), int(rng.integers(-1, 2))
            nx0, ny0 = min(max(x0 + dx, 0), width - w), min(max(y0 + dy, 0), height - h)
            dup = None if crop is None else MaskCrop(crop.data.copy(), nx0, ny0)
            items.append(((nx0, ny0, nx0 + w, ny0 + h), label, dup))
        if rng.random() < 0.3:  # a near-miss: shifted by a third of its width
            nx0 = min(x0 + w // 3, width - w)
            items.append(((nx0, y0, nx0 + w, y0 + h), label, crop and MaskCrop(crop.data.copy(), nx0, y0)))
    order = rng.permutation(len(items))
    return make([items[k] for k in order], wh)


@pytest.mark.parametrize("wh", [(97, 61), (61, 97), (128, 128), (300, 40)])
@pytest.mark.parametrize("iou", [0.5, 0.7, 0.9])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_dedupe_matches_full_size_oracle(wh, iou, class_agnostic):
    rng = np.random.default_rng(hash((wh, iou, class_agnostic)) % 2**32)
    total_dropped = 0
    for _ in range(8):
        dets = random_scene(rng, wh, int(rng.integers(0, 12)))
        out = vk.dedupe(dets, iou=iou, class_agnostic=class_agnostic)
        kept, pairs = oracle(dets, iou, class_agnostic)
        assert dropped_pairs(out) == pairs
        assert len(out) == len(kept)
        np.testing.assert_array_equal(out.xyxy, dets.xyxy[kept])
        assert list(out.labels) == [dets.labels[k] for k in kept]
        total_dropped += len(pairs)
    if iou <= 0.7:
        assert total_dropped > 0  # the planted duplicates were found


CUP = (10, 10, 50, 40)


@pytest.mark.parametrize("items, iou, agnostic, kept", [
    ([], 0.7, False, []),
    ([(CUP, "cup", None)], 0.7, False, [0]),
    ([(CUP, "cup", None), (CUP, "cup", None)], 0.7, False, [0]),                        # exact repeat
    ([(CUP, "cup", None), (CUP, "Cups ", None)], 0.7, False, [0]),                      # normalised label
    ([(CUP, "cup", None), (CUP, "plate", None)], 0.7, False, [0, 1]),                   # other class
    ([(CUP, "cup", None), (CUP, "plate", None)], 0.7, True, [0]),                       # class agnostic
    # box IoU 30*30/(2*1200-900) = 0.6 and 0.75: kept at 0.7, dropped at 0.6
    ([(CUP, "cup", None), ((20, 10, 60, 40), "cup", None)], 0.7, False, [0, 1]),
    ([(CUP, "cup", None), ((20, 10, 60, 40), "cup", None)], 0.6, False, [0]),
    # same box, disjoint masks (left and right halves): mask IoU 0, both kept
    ([(CUP, "cup", box_crop(10, 10, 30, 40)), (CUP, "cup", box_crop(30, 10, 50, 40))], 0.5, False, [0, 1]),
    # one has a mask, the other not: box IoU decides
    ([(CUP, "cup", box_crop(10, 10, 30, 40)), (CUP, "cup", None)], 0.7, False, [0]),
    # two empty masks: IoU 0, kept
    ([(CUP, "cup", box_crop(10, 10, 50, 40, False)), (CUP, "cup", box_crop(10, 10, 50, 40, False))],
     0.5, False, [0, 1]),
    # points (zero-area boxes) never overlap
    ([((5, 5, 5, 5), "cup", None), ((5, 5, 5, 5), "cup", None)], 0.5, False, [0, 1]),
    # a chain: 1 repeats 0 and is dropped; 2 repeats 1 but not 0, so it survives (compared to survivors)
    ([((0, 0, 40, 10), "cup", None), ((4, 0, 44, 10), "cup", None), ((8, 0, 48, 10), "cup", None)],
     0.75, False, [0, 2]),
    # mask IoU exactly at the threshold (7 / 10): dropped; the area-ratio pruning must not skip it
    ([((0, 0, 10, 1), "cup", box_crop(0, 0, 10, 1)), ((0, 0, 7, 1), "cup", box_crop(0, 0, 7, 1))],
     0.7, False, [0]),
    # edge boxes in a non-square image
    ([((60, 30, 97, 61), "cup", box_crop(60, 30, 97, 61)),
      ((60, 30, 97, 61), "cup", box_crop(60, 30, 97, 61))], 0.9, False, [0]),
])
def test_dedupe_table(items, iou, agnostic, kept):
    dets = make(items, (97, 61))
    out = vk.dedupe(dets, iou=iou, class_agnostic=agnostic)
    np.testing.assert_array_equal(out.xyxy, dets.xyxy[kept] if kept else np.empty((0, 4)))
    pairs = dropped_pairs(out)
    assert sorted(j for j, _ in pairs) == sorted(set(range(len(items))) - set(kept))
    assert all(i in kept for _, i in pairs)


def test_warning_names_both_items_and_kind():
    dets = make([(CUP, "cup", box_crop(*CUP)), ((0, 0, 5, 5), "cup", None), (CUP, "cup", box_crop(*CUP))],
                (97, 61))
    out = vk.dedupe(dets, 0.7)
    (w,) = out.warnings
    assert w.field == "dedupe" and "detection 2" in w.reason and "detection 0" in w.reason
    assert "mask IoU 1.000" in w.reason and "kept 0, dropped 2" in w.reason


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.7"])
def test_bad_iou_is_a_config_error(bad):
    with pytest.raises(vk.ConfigError, match="iou"):
        vk.dedupe(make([(CUP, "cup", None)], (97, 61)), bad)


def test_coco_info_counts_merges():
    dets = make([(CUP, "cup", None), (CUP, "cup", None), (CUP, "cup", None)], (97, 61))
    coco = vk.to_coco([("a.png", (97, 61), vk.dedupe(dets, 0.7))])
    assert len(coco["annotations"]) == 1 and coco["info"]["visionkit"]["dedupe_merged"] == 2
    assert "dedupe_merged" not in vk.to_coco([("a.png", (97, 61), dets)])["info"]["visionkit"]


def test_overlap_helpers():
    assert box_iou(np.empty((0, 4)), np.empty((3, 4))).shape == (0, 3)
    a, b = box_crop(0, 0, 4, 4), box_crop(2, 0, 6, 4)
    assert crop_iou(a, b) == pytest.approx(8 / 24)
    assert crop_iou(a, box_crop(10, 10, 12, 12)) == 0.0
    m = majority_crop([a, b, box_crop(2, 0, 4, 4)])  # columns 2-3 are in all three, 0-1 and 4-5 in one
    assert m.xyxy == (2, 0, 4, 4) and m.data.all()
    assert majority_crop([a, b]).xyxy == (0, 0, 6, 4)  # two masks: at least half = union
    assert majority_crop([]) is None


def test_many_items_stay_on_crops():
    """500 masked items in a 4000x3000 image: no full-size canvas, so this is quick and small."""
    rng = np.random.default_rng(1)
    items = []
    for _ in range(250):
        x0, y0 = int(rng.integers(0, 3900)), int(rng.integers(0, 2900))
        crop = MaskCrop(rng.random((100, 100)) < 0.9, x0, y0)
        items += [((x0, y0, x0 + 100, y0 + 100), "cup", crop)] * 2
    out = vk.dedupe(make(items, (4000, 3000)), 0.7)
    assert len(out) <= 250 and len(dropped_pairs(out)) == 500 - len(out)


def test_label_cli_dedupe(tmp_path):
    from PIL import Image

    images, replay, out = tmp_path / "in", tmp_path / "replay", tmp_path / "out"
    images.mkdir()
    replay.mkdir()
    Image.new("RGB", (200, 100)).save(images / "a.png")
    item = {"box_2d": [100, 100, 600, 500], "mask": png_b64(disk(64, 64)), "label": "cup"}
    other = {"box_2d": [500, 500, 900, 900], "label": "plate"}
    (replay / "a.txt").write_text(json.dumps([item, other, item, item]))
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["label", str(images), "--out", str(out), "--replay", str(replay), "--dedupe", "0.7",
                 "--no-overlays"], stdout=stdout, stderr=stderr)
    assert code == 0
    ds = json.loads((out / "annotations.json").read_text())
    assert [a["category_id"] for a in ds["annotations"]] == [1, 2]
    assert ds["info"]["visionkit"]["dedupe_merged"] == 2
    assert "detection 2 ('cup') duplicates detection 0" in stderr.getvalue()
    code = main(["label", str(images), "--out", str(tmp_path / "o2"), "--replay", str(replay),
                 "--dedupe", "1.5"], stdout=io.StringIO(), stderr=(err := io.StringIO()))
    assert code == 2 and "dedupe IoU" in err.getvalue()
