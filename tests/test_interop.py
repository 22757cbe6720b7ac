"""Outputs loaded by the ecosystem's REAL importers: pycocotools, faster-coco-eval, supervision, datumaro,
label-studio-converter. Counts, classes, boxes, mask areas and IoU are compared with what visionkit wrote.

The heavy libraries come with ``pip install ".[interop]"`` (``.ci/run`` installs it, so nothing here skips
in CI); without them these tests skip and say which package is missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import pytest
from conftest import FIXTURES
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit import Detections, MaskCrop, parse_response, to_results
from visionkit.formats.export import export_dataset
from visionkit.formats.supervision import from_supervision, to_supervision
from visionkit.media.imageio import image_size
from visionkit.run.pipeline import label


def _need(module: str, package: str):
    return pytest.importorskip(module, reason=f"{package} is not installed (pip install '.[interop]')")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    out = {}
    for task in ("segment", "detect"):
        run = root / f"run-{task}"
        assert label([FIXTURES / "images"], run, task=task, replay=FIXTURES / "replay", overlays=False).ok
        out[task] = run
    out["coco"] = root / "coco"
    export_dataset(out["segment"], out["coco"], split={"val": 0.25}, seed=0)
    out["coco-poly"] = root / "coco-poly"
    export_dataset(out["segment"], out["coco-poly"], polygons=True, polygon_holes="fill")
    out["coco-poly-rle"] = root / "coco-poly-rle"
    export_dataset(out["segment"], out["coco-poly-rle"], polygons=True, polygon_holes="rle")
    out["yolo"] = root / "yolo"
    export_dataset(out["segment"], out["yolo"], format="yolo-segment")
    out["yolo-detect"] = root / "yolo-detect"
    export_dataset(out["detect"], out["yolo-detect"], format="yolo")
    return out


def _files(runs):
    """Every COCO instances file the tests write: label outputs and exports."""
    return [runs["segment"] / "annotations.json", runs["detect"] / "annotations.json",
            runs["coco"] / "annotations" / "instances_train.json",
            runs["coco"] / "annotations" / "instances_val.json",
            runs["coco-poly"] / "annotations" / "instances_train.json"]


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools and friends print


def _evaluate(gt_path, results, kind, evaluator=COCOeval, coco_cls=COCO) -> float:
    with _quiet():
        gt = coco_cls(str(gt_path))
        ev = evaluator(gt, gt.loadRes(results), kind)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


# -- pycocotools ---------------------------------------------------------------------------------------
def test_pycocotools_ann_to_mask_on_every_annotation(runs):
    total = 0
    for path in _files(runs):
        with _quiet():
            coco = COCO(str(path))
        for ann in coco.dataset["annotations"]:
            m = coco.annToMask(ann).astype(bool)
            assert m.any(), (path, ann["id"])
            x, y, w, h = ann["bbox"]
            rows, cols = np.nonzero(m)  # every mask pixel inside the bbox
            assert cols.min() >= x and cols.max() < x + w and rows.min() >= y and rows.max() < y + h
            if isinstance(ann["segmentation"], dict):
                assert int(m.sum()) == ann["area"]
            else:  # polygons: pycocotools' rasteriser vs the pixel count
                assert abs(int(m.sum()) - ann["area"]) <= max(2, 0.02 * ann["area"])
            total += 1
    assert total == 30 * 4  # the segment run, the detect run, its export (split in two), its polygon export


@pytest.mark.parametrize("name", ["segment", "detect", "coco-poly"])
@pytest.mark.parametrize("kind", ["segm", "bbox"])
def test_cocoeval_with_the_file_as_ground_truth_and_as_results(runs, name, kind):
    path = (runs[name] / "annotations.json" if name in ("segment", "detect")
            else runs[name] / "annotations" / "instances_train.json")
    ds = json.loads(path.read_text())
    results = to_results(ds, kind)
    assert len(results) == len(ds["annotations"])  # every annotation kept, polygons included
    assert _evaluate(path, results, kind) == pytest.approx(1.0)


def test_polygon_export_scores_like_rle_against_the_truth(runs):
    """The issue's case: segm AP of the polygon export was 0.11 (only RLE masks kept) instead of 0.93."""
    truth = json.loads((FIXTURES / "truth.json").read_text())
    image_ids = {i["file_name"]: i["id"] for i in truth["images"]}
    cat_ids = {c["name"]: c["id"] for c in truth["categories"]}

    def ap(path):
        ours = json.loads(path.read_text())
        imgs = {i["id"]: image_ids[i["file_name"]] for i in ours["images"]}
        cats = {c["id"]: cat_ids[c["name"]] for c in ours["categories"]}
        rows = [dict(r, image_id=imgs[r["image_id"]], category_id=cats[r["category_id"]])
                for r in to_results(ours, "segm")]
        return _evaluate(FIXTURES / "truth.json", rows, "segm")

    rle = ap(runs["segment"] / "annotations.json")
    poly = ap(runs["coco-poly-rle"] / "annotations" / "instances_train.json")
    filled = ap(runs["coco-poly"] / "annotations" / "instances_train.json")
    assert rle > 0.9 and abs(poly - rle) < 0.02, (rle, poly)
    assert rle - 0.1 < filled <= rle, (rle, filled)  # filling holes costs a little against masks with holes


# -- faster-coco-eval ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["segm", "bbox"])
def test_faster_coco_eval_agrees_with_pycocotools(runs, kind):
    fce = _need("faster_coco_eval", "faster-coco-eval")
    path = runs["coco-poly"] / "annotations" / "instances_train.json"
    ds = json.loads(path.read_text())
    own = _evaluate(path, to_results(ds, kind), kind, fce.COCOeval_faster, fce.COCO)
    assert own == pytest.approx(1.0)
    # and against the fixtures' truth, the two evaluators give the same AP
    truth = json.loads((FIXTURES / "truth.json").read_text())
    image_ids = {i["file_name"]: i["id"] for i in truth["images"]}
    cat_ids = {c["name"]: c["id"] for c in truth["categories"]}
    imgs = {i["id"]: image_ids[i["file_name"]] for i in ds["images"]}
    cats = {c["id"]: cat_ids[c["name"]] for c in ds["categories"]}
    rows = [dict(r, image_id=imgs[r["image_id"]], category_id=cats[r["category_id"]])
            for r in to_results(ds, kind)]
    ref = _evaluate(FIXTURES / "truth.json", [dict(r) for r in rows], kind)
    fast = _evaluate(FIXTURES / "truth.json", [dict(r) for r in rows], kind, fce.COCOeval_faster, fce.COCO)
    assert fast == pytest.approx(ref, abs=1e-3)


# -- supervision ---------------------------------------------------------------------------------------
def test_supervision_loads_the_coco_export(runs):
    sv = _need("supervision", "supervision")
    for split in ("train", "val"):
        ann_path = runs["coco"] / "annotations" / f"instances_{split}.json"
        ds_json = json.loads(ann_path.read_text())
        ds = sv.DetectionDataset.from_coco(str(runs["coco"] / "images" / split), str(ann_path),
                                           force_masks=True)
        assert ds.classes == [c["name"] for c in ds_json["categories"]]
        assert len(ds) == len(ds_json["images"])
        anns = {i["file_name"]: [a for a in ds_json["annotations"] if a["image_id"] == i["id"]]
                for i in ds_json["images"]}
        for path, _image, dets in ds:
            name = path.replace("\\", "/").rsplit(f"images/{split}/", 1)[1]
            mine = anns[name]
            assert len(dets) == len(mine)
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in mine]).reshape(-1, 4)
            np.testing.assert_allclose(dets.xyxy, boxes, atol=1e-4)
            cat_names = {c["id"]: c["name"] for c in ds_json["categories"]}
            assert [ds.classes[c] for c in dets.class_id] == [cat_names[a["category_id"]] for a in mine]
            for m, a in zip(dets.mask, mine):
                if isinstance(a["segmentation"], dict):
                    assert int(m.sum()) == int(a["area"])
                else:  # a box-only polygon: supervision's cv2.fillPoly also fills the far edge pixels
                    x, y, w, h = a["bbox"]
                    assert int(m.sum()) == (w + 1) * (h + 1)


def test_supervision_loads_the_yolo_export(runs):
    sv = _need("supervision", "supervision")
    for name in ("yolo", "yolo-detect"):
        root = runs[name]
        ds = sv.DetectionDataset.from_yolo(str(root / "images" / "train"), str(root / "labels" / "train"),
                                           str(root / "data.yaml"), force_masks=(name == "yolo"))
        src = json.loads((runs["segment" if name == "yolo" else "detect"] / "annotations.json").read_text())
        assert ds.classes == [c["name"] for c in src["categories"]]
        anns = {i["file_name"]: [a for a in src["annotations"] if a["image_id"] == i["id"]]
                for i in src["images"]}
        assert len(ds) == len(anns)
        for path, _image, dets in ds:
            mine = anns[path.replace("\\", "/").rsplit("images/train/", 1)[1]]
            assert len(dets) == len(mine)
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in mine]).reshape(-1, 4)
            if name == "yolo-detect":
                assert np.abs(dets.xyxy - boxes).max(initial=0) < 1.0
            else:  # polygon bounds lie inside the bbox
                assert (dets.xyxy[:, :2] >= boxes[:, :2] - 1).all()
                assert (dets.xyxy[:, 2:] <= boxes[:, 2:] + 1).all()
                for m, a in zip(dets.mask, mine):
                    # YOLO fills holes: at least the mask's area, never far more
                    assert 0.9 * a["area"] <= m.sum() <= 1.6 * a["area"] + 50


def _fixture_dets():
    out = []
    for answer in sorted((FIXTURES / "replay").iterdir()):
        image = next(p for p in (FIXTURES / "images").iterdir() if p.stem == answer.stem)
        wh = image_size(image)
        out.append(parse_response(answer.read_text(), wh))
    return out


def test_supervision_round_trip_is_exact():
    _need("supervision", "supervision")
    cases = _fixture_dets() + [
        Detections.empty((7, 5)),
        Detections([[0, 0, 3, 2], [1.5, 0.5, 7, 5]], ["a", "b"], (7, 5), scores=[0.2, 0.9],
                   masks=[MaskCrop(np.ones((2, 3), bool), 0, 0), None]),
        Detections([[2, 2, 2, 2]], ["p"], (7, 5), points=[[2, 2]]),
    ]
    for d in cases:
        s = to_supervision(d)
        assert len(s) == len(d)
        back = from_supervision(s, d.image_wh)
        np.testing.assert_array_equal(back.xyxy, d.xyxy)
        assert list(back.labels) == list(d.labels)
        if d.scores is None:
            assert back.scores is None
        else:
            np.testing.assert_array_equal(back.scores, d.scores)
        for i in range(len(d)):
            np.testing.assert_array_equal(back.mask(i), d.mask(i))
            if d.has_mask(i) and d.masks[i].area():
                assert back.has_mask(i)
        if d.points is not None:
            np.testing.assert_array_equal(back.points, d.points)


# -- datumaro ------------------------------------------------------------------------------------------
def test_datumaro_imports_coco_and_exports_cvat_and_yolo(runs, tmp_path):
    dm = _need("datumaro", "datumaro")
    logging.getLogger().setLevel(logging.ERROR)  # datumaro warns per item about COCO's is_crowd attribute
    ds = dm.Dataset.import_from(str(runs["coco"]), "coco_instances")
    src = {s: json.loads((runs["coco"] / "annotations" / f"instances_{s}.json").read_text())
           for s in ("train", "val")}
    names = [c["name"] for c in src["train"]["categories"]]
    assert [c.name for c in ds.categories()[dm.AnnotationType.label]] == names
    assert len(ds) == sum(len(s["images"]) for s in src.values())
    masks = boxes = 0
    for item in ds:
        entry = next(i for i in src[item.subset]["images"] if i["file_name"].rsplit(".", 1)[0] == item.id)
        # the upright copies: the pixels datumaro decodes agree with the width/height of the file
        assert item.media.size == (entry["height"], entry["width"])
        assert item.media.data.shape[:2] == (entry["height"], entry["width"])
        mine = [a for a in src[item.subset]["annotations"] if a["image_id"] == entry["id"]]
        shapes = (dm.AnnotationType.mask, dm.AnnotationType.polygon)
        got_masks = [a for a in item.annotations if a.type in shapes]
        got_boxes = [a for a in item.annotations if a.type == dm.AnnotationType.bbox]
        assert len(got_masks) == len(got_boxes) == len(mine)
        by_id = {a["id"]: a for a in mine}
        for a in got_masks:
            ann = by_id[a.id]
            assert names[a.label] == names[ann["category_id"] - 1]
            assert abs(a.get_area() - ann["area"]) <= max(2, 0.01 * ann["area"])
        for a in got_boxes:
            np.testing.assert_allclose(a.get_bbox(), by_id[a.id]["bbox"], atol=1e-3)
        masks, boxes = masks + len(got_masks), boxes + len(got_boxes)
    assert masks == boxes == 30
    ds.export(str(tmp_path / "cvat"), "cvat", save_media=False)
    xml = (tmp_path / "cvat" / "train.xml").read_text()
    assert xml.count("<box ") == len(src["train"]["annotations"])
    ds.export(str(tmp_path / "yolo"), "yolo", save_media=False)
    files = (tmp_path / "yolo").glob("obj_*_data/*.txt")
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 30 and all(len(line.split()) == 5 for line in lines)
    assert (tmp_path / "yolo" / "obj.names").read_text().split("\n")[:len(names)] == names


# -- label-studio-converter ----------------------------------------------------------------------------
def test_label_studio_converter_loads_the_polygon_export(runs, tmp_path):
    _need("label_studio_converter", "label-studio-converter")
    from label_studio_converter.imports.coco import convert_coco_to_ls

    path = runs["coco-poly"] / "annotations" / "instances_train.json"
    ds = json.loads(path.read_text())
    with _quiet():
        convert_coco_to_ls(str(path), str(tmp_path / "ls.json"))
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert len(tasks) == len(ds["images"])
    results = [r for t in tasks for a in t.get("annotations", []) for r in a["result"]]
    polys = [r for r in results if r["type"] == "polygonlabels"]
    rects = [r for r in results if r["type"] == "rectanglelabels"]
    assert len(polys) == len(rects) == len(ds["annotations"])
    names = sorted(c["name"] for c in ds["categories"])
    assert sorted({r["value"]["polygonlabels"][0] for r in polys}) == names
    # label studio boxes are percentages of the image size
    sizes = {i["id"]: (i["width"], i["height"]) for i in ds["images"]}
    want = sorted(round(a["bbox"][2] / sizes[a["image_id"]][0] * 100, 2) for a in ds["annotations"])
    assert sorted(round(r["value"]["width"], 2) for r in rects) == pytest.approx(want, abs=0.02)


def test_mask_area_of_every_rle_equals_pycocotools(runs):
    ds = json.loads((runs["segment"] / "annotations.json").read_text())
    for ann in ds["annotations"]:
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            assert int(mask_utils.area(dict(seg, counts=seg["counts"].encode()))) == ann["area"]


def test_supervision_missing_is_a_clear_error(monkeypatch):
    import sys

    from visionkit import ConfigError

    monkeypatch.setitem(sys.modules, "supervision", None)  # as if not installed: import raises
    d = Detections([[0, 0, 1, 1]], ["a"], (2, 2))
    with pytest.raises(ConfigError, match=r'pip install "visionkit\[supervision\]"'):
        to_supervision(d)
    with pytest.raises(ConfigError, match="supervision"):
        from_supervision(object(), (2, 2))
