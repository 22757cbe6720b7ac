"""to_coco: fields, categories, polygons, pycocotools round trip, atomic writing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from visionkit import Detections, ExportError, MaskCrop, to_coco, write_json_atomic
from visionkit.core.text import normalize_label
from visionkit.formats.coco import CategoryMap, to_results


def blob(h, w, holes=False):
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1, -1)
    if holes:
        cv2.circle(m, (w // 2, h // 2), min(h, w) // 5, 0, -1)
    return m.astype(bool)


def dets(wh=(320, 200)):
    xyxy = [[10, 20, 110, 80], [200, 0, 320, 200], [0, 150, 40, 200]]
    masks = (MaskCrop(blob(60, 100), 10, 20), MaskCrop(blob(200, 120, holes=True), 200, 0), None)
    return Detections(xyxy, ["Cup", "plates", "napkin"], wh, scores=[0.9, np.nan, 0.5], masks=masks)


def load(dataset, tmp_path):
    path = write_json_atomic(tmp_path / "a.json", dataset)
    return COCO(str(path))


def test_fields_and_pycocotools_round_trip_exact_for_rle(tmp_path):
    d = dets()
    ds = to_coco([("x/a.jpg", (320, 200), d), ("b.png", (50, 40), Detections.empty((50, 40)))])
    assert set(ds) == {"info", "licenses", "images", "categories", "annotations"}
    assert [c["name"] for c in ds["categories"]] == ["Cup", "napkin", "plates"]
    assert [c["id"] for c in ds["categories"]] == [1, 2, 3]
    coco = load(ds, tmp_path)
    anns = ds["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3] and all(a["iscrowd"] == 0 for a in anns)
    assert ds["info"]["visionkit"]["box_only"] == 1
    assert anns[0]["bbox"] == [10.0, 20.0, 100.0, 60.0] and anns[0]["score"] == 0.9
    assert "score" not in anns[1]
    assert isinstance(anns[0]["segmentation"]["counts"], str)
    for i, ann in enumerate(anns[:2]):
        assert np.array_equal(coco.annToMask(ann).astype(bool), d.mask(i))
        assert ann["area"] == float(d.mask_area(i))
    assert anns[2]["segmentation"] == [[0.0, 150.0, 40.0, 150.0, 40.0, 200.0, 0.0, 200.0]]
    assert anns[2]["area"] == 40 * 50 and coco.annToMask(anns[2]).sum() == 40 * 50
    assert ds["images"][1] == {"id": 2, "file_name": "b.png", "width": 50, "height": 40}


def test_polygons_iou_and_honest_holes(tmp_path):
    d = dets()
    ds = to_coco([("a.jpg", (320, 200), d)], polygons=True)
    coco = load(ds, tmp_path)
    first, holed = ds["annotations"][:2]
    assert isinstance(first["segmentation"], list)
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in first["segmentation"])
    got = coco.annToMask(first).astype(bool)
    iou = (got & d.mask(0)).sum() / (got | d.mask(0)).sum()
    assert iou >= 0.9
    # The mask with a hole cannot be a COCO polygon: it stays RLE, and the report says so.
    assert isinstance(holed["segmentation"], dict)
    assert ds["info"]["visionkit"]["polygon_rle_fallback"] == 1
    filled = to_coco([("a.jpg", (320, 200), d)], polygons=True, polygon_holes="fill")
    assert isinstance(filled["annotations"][1]["segmentation"], list)
    assert filled["info"]["visionkit"]["holes_filled"] == 1


def test_category_list_maps_labels_and_reports_unmapped():
    d = Detections([[0, 0, 5, 5]] * 4, ["Cups ", "PLATE", "tea  cups", "dog"], (10, 10))
    ds = to_coco([("a.jpg", (10, 10), d)], categories=["cup", "plate", "tea cup"], aliases={"dog": "plate"})
    assert [a["category_id"] for a in ds["annotations"]] == [1, 2, 3, 2]
    ds = to_coco([("a.jpg", (10, 10), d)], categories=["cup", "plate"])
    assert [a["category_id"] for a in ds["annotations"]] == [1, 2]
    assert ds["info"]["visionkit"]["unmapped_labels"] == {"dog": 1, "tea  cups": 1}


def test_category_ids_are_stable_across_images():
    a = Detections([[0, 0, 5, 5]], ["zebra"], (10, 10))
    b = Detections([[0, 0, 5, 5], [0, 0, 5, 5]], ["apple", "zebras"], (10, 10))
    ds = to_coco([("a.jpg", (10, 10), a), ("b.jpg", (10, 10), b)])
    assert ds["categories"] == [{"id": 1, "name": "apple", "supercategory": "object"},
                                {"id": 2, "name": "zebra", "supercategory": "object"}]
    assert [a["category_id"] for a in ds["annotations"]] == [2, 1, 2]


@pytest.mark.parametrize("label, expected", [
    ("Cups", "cup"), ("boxes", "box"), ("berries", "berry"), ("glass", "glass"), ("  Red\tCUPS ", "red cup"),
    ("bus", "bus"), ("寿司 🍣", "寿司 🍣"), ("dishes", "dish"), ("", ""), ("camera lens", "camera lens"),
    ("glasses", "glasses"), ("cans", "can"),
])
def test_normalize_label(label, expected):
    assert normalize_label(label) == expected


@pytest.mark.parametrize("cats, error", [
    (["cup", "Cups"], "duplicate"),
    ([{"id": 0, "name": "bg"}], "ids must be >= 1"),
    ([{"name": "x"}], "needs"),
])
def test_bad_categories(cats, error):
    with pytest.raises(ExportError, match=error):
        CategoryMap(cats)


def test_size_mismatch_and_duplicates_are_refused():
    d = Detections.empty((10, 10))
    with pytest.raises(ExportError, match="differs"):
        to_coco([("a.jpg", (11, 10), d)])
    with pytest.raises(ExportError, match="twice"):
        to_coco([("a.jpg", (10, 10), d), ("a.jpg", (10, 10), d)])


def test_points_are_skipped_and_counted():
    d = Detections([[3, 3, 3, 3], [0, 0, 5, 5]], ["p", "b"], (10, 10), points=[[3, 3], [np.nan, np.nan]])
    ds = to_coco([("a.jpg", (10, 10), d)])
    assert len(ds["annotations"]) == 1 and ds["info"]["visionkit"]["points_skipped"] == 1


@pytest.mark.parametrize("polygons, holes", [(False, "rle"), (True, "rle"), (True, "fill")])
def test_results_keep_every_mask_and_drop_bbox_for_segm(tmp_path, polygons, holes):
    ds = to_coco([("a.jpg", (320, 200), dets())], polygons=polygons, polygon_holes=holes)
    res = to_results(ds)
    assert len(res) == 3 and all("bbox" not in r for r in res)
    assert [r["score"] for r in res] == [0.9, 1.0, 0.5]
    assert all(isinstance(r["segmentation"]["counts"], str) for r in res)
    assert len(to_results(ds, "bbox")) == 3
    # the same masks as the dataset's, so the dataset scores AP 1 against itself
    coco = load(ds, tmp_path)
    pred = coco.loadRes(res)
    for gt_ann, row in zip(ds["annotations"], pred.dataset["annotations"]):
        assert np.array_equal(coco.annToMask(gt_ann), pred.annToMask(row))


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"ok": 1})
    written = []

    def failing_replace(src, dst):
        with open(src) as fh:  # the new text was written; the rename fails
            written.append(json.load(fh))
        raise OSError("disk on fire")

    monkeypatch.setattr("visionkit.media.atomic.os.replace", failing_replace)
    with pytest.raises(ExportError, match="disk on fire"):
        write_json_atomic(path, {"new": 2})
    assert written == [{"new": 2}]
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_unserializable_json_is_an_export_error(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(ExportError):
        write_json_atomic(path, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_empty_dataset_loads(tmp_path):
    ds = to_coco([])
    assert ds["images"] == [] and ds["annotations"] == [] and ds["categories"] == []
    load(ds, tmp_path)
