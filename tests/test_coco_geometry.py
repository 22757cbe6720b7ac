"""COCO geometry: bbox snapped outward holds every mask pixel and stays within 1 px of the model's box;
box-only annotations as 4-point polygons; categories from a file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES
from pycocotools import mask as mask_utils

from visionkit import Detections, ExportError, MaskCrop, parse_response, to_coco
from visionkit.formats.coco import load_categories
from visionkit.formats.instances import box_polygon, clip_crop_to_box, snap_box
from visionkit.media.imageio import image_size


@pytest.mark.parametrize("xyxy, wh, expected", [
    ([0, 0, 0, 0], (10, 10), (0, 0, 0, 0)),                      # a point at the corner
    ([0.0, 0.0, 10.0, 10.0], (10, 10), (0, 0, 10, 10)),          # the whole image
    ([2.4, 3.6, 7.2, 8.9], (10, 10), (2, 3, 8, 9)),              # outward
    ([160.00000000000003, 0, 320.00000000000006, 5], (640, 10), (160, 0, 320, 5)),  # float slack
    ([9.5, 0.2, 10.0, 19.99], (10, 20), (9, 0, 10, 20)),         # non-square, right edge
])
def test_snap_box(xyxy, wh, expected):
    assert snap_box(xyxy, wh) == expected
    x0, y0, x1, y1 = expected
    assert box_polygon(expected) == [x0, y0, x1, y0, x1, y1, x0, y1]


@pytest.mark.parametrize("xyxy", [[np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-np.inf, 0, 1, 1]])
def test_a_non_finite_box_is_refused_not_snapped(xyxy):
    with pytest.raises(ValueError, match="must be finite"):
        snap_box(xyxy, (640, 480))


def _snap_oracle(box, wh):
    """The rule written out for one box with math.floor/ceil: outward, EPS slack, inside the image."""
    import math

    from visionkit.formats.instances import EPS

    (x0, y0, x1, y1), (w, h) = box, wh
    bx0 = min(max(math.floor(x0 + EPS), 0), w)
    by0 = min(max(math.floor(y0 + EPS), 0), h)
    return bx0, by0, min(max(math.ceil(x1 - EPS), bx0), w), min(max(math.ceil(y1 - EPS), by0), h)


def test_snap_boxes_matches_the_rule_written_out():
    from visionkit.formats.instances import snap_boxes

    rng = np.random.default_rng(3)
    boxes = np.sort(rng.uniform(-5, 700, (200, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    boxes[:20] = np.round(boxes[:20])  # whole numbers, where the EPS slack matters
    boxes[20:40] = np.round(boxes[20:40]) + 1e-9
    got = snap_boxes(boxes, (640, 480))
    assert [tuple(r) for r in got.tolist()] == [_snap_oracle(b.tolist(), (640, 480)) for b in boxes]
    assert snap_boxes(np.empty((0, 4)), (640, 480)).shape == (0, 4)


@pytest.mark.parametrize("crop_xy, shape, box, cut", [
    ((0, 0), (0, 0), (0, 0, 5, 5), 0),        # empty crop
    ((1, 1), (3, 3), (0, 0, 5, 5), 0),        # inside: unchanged
    ((3, 3), (4, 4), (0, 0, 5, 5), 12),       # reaches right and bottom
    ((0, 0), (4, 4), (2, 2, 5, 5), 12),       # reaches left and top
    ((6, 6), (2, 2), (0, 0, 5, 5), 4),        # entirely outside
])
def test_clip_crop_to_box(crop_xy, shape, box, cut):
    crop = MaskCrop(np.ones(shape, bool), *crop_xy)
    kept, lost = clip_crop_to_box(crop, box)
    assert lost == cut and kept.area() == crop.area() - cut
    if kept.area():
        x0, y0, x1, y1 = kept.tight_xyxy()
        assert x0 >= box[0] and y0 >= box[1] and x1 <= box[2] and y1 <= box[3]


def _fixture_items():
    items = []
    for answer in sorted((FIXTURES / "replay").iterdir()):
        image = next(p for p in (FIXTURES / "images").iterdir() if p.stem == answer.stem)
        wh = image_size(image)
        items.append((image.name, wh, parse_response(answer.read_text(), wh)))
    return items


@pytest.mark.parametrize("polygons, holes", [(False, "rle"), (True, "rle"), (True, "fill")])
def test_every_mask_pixel_inside_its_bbox_and_bbox_within_1px(polygons, holes):
    items = _fixture_items()
    ds = to_coco(items, polygons=polygons, polygon_holes=holes)
    by_image = {img["id"]: img for img in ds["images"]}
    model_boxes = [d.xyxy[i] for _, _, d in items for i in range(len(d)) if d.box_area[i] > 0]
    assert len(model_boxes) == len(ds["annotations"]) > 20
    seen_masks = 0
    for ann, model in zip(ds["annotations"], model_boxes):
        x, y, w, h = ann["bbox"]
        assert all(float(v).is_integer() for v in ann["bbox"])
        assert np.abs(np.array([x, y, x + w, y + h]) - model).max() < 1.0
        img = by_image[ann["image_id"]]
        seg = ann["segmentation"]
        assert seg, "segmentation is never empty"
        if isinstance(seg, list):  # polygon vertices stay inside the bbox too
            pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in seg])
            assert (pts >= [x, y]).all() and (pts <= [x + w, y + h]).all()
        rle = (mask_utils.merge(mask_utils.frPyObjects(seg, img["height"], img["width"]))
               if isinstance(seg, list) else seg)
        full = mask_utils.decode(rle).astype(bool)
        rows, cols = np.nonzero(full)
        if rows.size:
            seen_masks += 1
            assert cols.min() >= x and cols.max() + 1 <= x + w and rows.min() >= y and rows.max() + 1 <= y + h
    assert seen_masks == len(ds["annotations"])  # box-only annotations are masks of their box


def test_real_answer_masks_inside_bbox(real_dir):
    wh = (1024, 1024)
    d = parse_response((real_dir / "cookbook-cupcakes" / "segment.txt").read_text(), wh)
    ds = to_coco([("c.png", wh, d)])
    assert len(ds["annotations"]) == 15
    for ann in ds["annotations"]:
        x, y, w, h = ann["bbox"]
        full = mask_utils.decode(ann["segmentation"])
        rows, cols = np.nonzero(full)
        assert cols.min() >= x and cols.max() + 1 <= x + w and rows.min() >= y and rows.max() + 1 <= y + h


def test_polygon_mask_beyond_its_box_is_clipped_and_counted():
    crop = MaskCrop(np.ones((10, 10), bool), 5, 5)   # reaches 5 px past the box's right and bottom
    d = Detections([[0, 0, 10, 10]], ["x"], (20, 20), masks=[crop])
    ds = to_coco([("a.png", (20, 20), d)])
    ann = ds["annotations"][0]
    assert ann["bbox"] == [0.0, 0.0, 10.0, 10.0] and ann["area"] == 25.0
    assert ds["info"]["visionkit"]["masks_clipped"] == 1
    assert ds["info"]["visionkit"]["mask_pixels_clipped"] == 75


def test_empty_mask_becomes_box_only():
    d = Detections([[1, 1, 4, 3]], ["x"], (5, 5), masks=[MaskCrop(np.zeros((2, 3), bool), 1, 1)])
    ds = to_coco([("a.png", (5, 5), d)])
    assert ds["annotations"][0]["segmentation"] == [[1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]]
    assert ds["info"]["visionkit"]["empty_masks"] == 1


@pytest.mark.parametrize("name, text, expected", [
    ("names.txt", "# classes\ncup\n\n plate \n", ["cup", "plate"]),
    ("cats.json", json.dumps([{"id": 7, "name": "cup"}, {"id": 3, "name": "plate"}]),
     [{"id": 7, "name": "cup"}, {"id": 3, "name": "plate"}]),
    ("coco.json", json.dumps({"images": [], "categories": [{"id": 2, "name": "cup"}]}),
     [{"id": 2, "name": "cup"}]),
    ("list.json", '["b", "a"]', ["b", "a"]),
])
def test_load_categories(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert load_categories(path) == expected


@pytest.mark.parametrize("name, text, error", [
    ("empty.txt", "\n# nothing\n", "holds no categories"),
    ("bad.json", "{", "not valid JSON"),
    ("dict.json", '{"images": []}', "expected a COCO file"),
    ("dup.txt", "cup\nCups\n", "duplicate"),
    ("missing.txt", None, "cannot read"),
])
def test_load_categories_errors(tmp_path, name, text, error):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ExportError, match=error):
        load_categories(path)


def test_categories_file_fixes_ids_across_runs(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps([{"id": 5, "name": "zebra"}, {"id": 9, "name": "apple"}]))
    cats = load_categories(path)
    run1 = to_coco([("a.png", (10, 10), Detections([[0, 0, 5, 5]], ["apple"], (10, 10)))], cats)
    run2 = to_coco([("b.png", (10, 10), Detections([[0, 0, 5, 5]] * 2, ["zebras", "dog"], (10, 10)))],
                   cats)
    assert run1["categories"] == run2["categories"]
    assert run1["annotations"][0]["category_id"] == 9 and run2["annotations"][0]["category_id"] == 5
    assert run2["info"]["visionkit"]["unmapped_labels"] == {"dog": 1}
