"""The one reader of runs and COCO files (visionkit.formats.coco_stream), against a json.load oracle."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

import visionkit as vk
from visionkit.core.maskcrop import MaskCrop
from visionkit.errors import InputError
from visionkit.formats.coco_stream import CocoFile


def _dataset(n_images: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n_images):
        wh = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))  # non-square, varied
        boxes, crops, labels = [], [], []
        for j in range(k % 4):  # image 0 has no objects
            x0, y0 = int(rng.integers(0, wh[0] - 8)), int(rng.integers(0, wh[1] - 8))
            mask = rng.random((6, 7)) > 0.4
            boxes.append([x0, y0, x0 + 7, y0 + 6])
            crops.append(MaskCrop(mask, x0, y0) if j % 2 == 0 else None)
            labels.append(["cup", "plate", "spoon"][j % 3])
        dets = vk.Detections(np.array(boxes, float).reshape(-1, 4), labels, wh,
                             masks=tuple(crops) if crops else None)
        items.append((f"dir/img{k}.png", wh, dets))
    return vk.to_coco(items)


def _oracle(ds: dict) -> list[tuple[str, list[dict]]]:
    by_image: dict[int, list] = {}
    for ann in ds["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    return [(img["file_name"], by_image.get(img["id"], [])) for img in ds["images"]]


def _got(coco: CocoFile, only=None) -> list[tuple[str, list[dict]]]:
    return [(r.image.file_name, r.annotations) for r in coco.records(only)]


@pytest.mark.parametrize("order", ["as written", "shuffled", "reversed", "empty"])
def test_records_equal_a_full_load(tmp_path, order):
    ds = _dataset()
    if order == "shuffled":
        random.Random(1).shuffle(ds["annotations"])
    elif order == "reversed":
        ds["annotations"].reverse()
    elif order == "empty":
        ds["annotations"] = []
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ds))
    for source in (path, tmp_path, ds):  # a file, a run folder (needs annotations.json), a dict
        if source == tmp_path:
            (tmp_path / "annotations.json").write_text(json.dumps(ds))
        coco = CocoFile(source)
        assert _got(coco) == _oracle(ds)
        assert coco.annotations == len(ds["annotations"]) and coco.has_masks == bool(ds["annotations"])
        assert [i.file_name for i in coco.images] == [i["file_name"] for i in ds["images"]]
        assert _got(coco, only={1, 4}) == [_oracle(ds)[1], _oracle(ds)[4]]
        assert _got(coco, only=set()) == []


def test_indices_name_each_annotation_in_the_file(tmp_path):
    ds = _dataset()
    random.Random(2).shuffle(ds["annotations"])
    coco = CocoFile(ds)
    for record in coco.records():
        assert [ds["annotations"][k] for k in record.indices] == record.annotations


def test_detections_decode_masks_and_boxes():
    ds = _dataset()
    coco = CocoFile(ds)
    for record in coco.records():
        dets = coco.detections(record)
        assert dets.image_wh == (record.image.width, record.image.height)
        assert list(dets.labels) == [coco.names[a["category_id"]] for a in record.annotations]


def test_keypoints_only_annotations_are_kept_apart():
    ds = _dataset(3)
    ds["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "keypoints": [1, 2, 2],
                              "num_keypoints": 1, "bbox": [1, 2, 0, 0], "area": 0, "iscrowd": 0})
    coco = CocoFile(ds)
    assert coco.annotations == len(ds["annotations"]) - 1
    assert all(99 not in [a["id"] for a in r.annotations] for r in coco.records())
    assert any(99 in [a["id"] for a in r.annotations] for r in coco.records(keypoints=True))
    ds["annotations"][-1]["keypoints"] = "1,2"
    with pytest.raises(InputError, match=r"annotations\[\d+\]\.keypoints"):
        CocoFile(ds)


def test_errors_name_file_index_and_field(tmp_path):
    ds = _dataset()
    ds["annotations"][3]["bbox"] = [1, 2, -3, 4]
    (tmp_path / "annotations.json").write_text(json.dumps(ds))
    with pytest.raises(InputError) as info:
        CocoFile(tmp_path, what="run")
    assert str(info.value).startswith(f"{tmp_path / 'annotations.json'}: annotations[3].bbox: expected")
    with pytest.raises(InputError, match=r"the run dict: annotations\[3\]\.bbox"):
        CocoFile(ds, what="run")
    with pytest.raises(InputError, match="does not exist"):
        CocoFile(tmp_path / "nope.json")


def test_float_sizes_and_duplicate_names():
    ds = _dataset(2)
    ds["images"][0]["width"] = float(ds["images"][0]["width"])  # 640.0 is 640 pixels
    assert CocoFile(ds).images[0].width == ds["images"][0]["width"]
    ds["images"][1]["file_name"] = ds["images"][0]["file_name"]
    with pytest.raises(InputError, match=r"images\[1\]\.file_name.*twice"):
        CocoFile(ds)


def test_reading_and_rewriting_holds_little_per_image(tmp_path):
    """The core of export and consensus: a run streamed through the reader, decoded, and written again by
    CocoWriter. Traced memory grows by well under 2 KB per image (the whole dataset in memory: ~5 KB per
    image even for these small masks)."""
    import tracemalloc

    from visionkit.formats.coco import CategoryMap
    from visionkit.formats.coco_write import CocoWriter

    def peak(n: int) -> int:
        ds = _dataset(n, seed=n)
        src = tmp_path / f"in{n}.json"
        src.write_text(json.dumps(ds))
        del ds
        tracemalloc.start()
        coco = CocoFile(src)
        cats = CategoryMap().fit(Counter({coco.names[c]: k for c, k in coco.counts.items()}).elements())
        with CocoWriter(tmp_path / f"out{n}.json", cats) as writer:
            for record in coco.records():
                writer.add(record.image.file_name, (record.image.width, record.image.height),
                           coco.detections(record))
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        back = json.loads((tmp_path / f"out{n}.json").read_text())
        assert len(back["images"]) == n and len(back["annotations"]) == coco.annotations
        return top

    small, large = peak(150), peak(900)
    print(f"traced peak {small} B at 150 images, {large} B at 900: {(large - small) / 750:.0f} B per image")
    assert (large - small) / 750 < 1024, (small, large)
