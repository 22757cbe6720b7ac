"""visionkit eval: join by file name and class name; known AP on hand-made truth, checked against
pycocotools directly."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit import ConfigError, InputError
from visionkit.cli import main
from visionkit.formats.coco_checks import ImageEntry
from visionkit.quality.evaluate import evaluate

SIZES = {"a.png": (200, 100), "sub/b.jpg": (100, 150)}
# (file, label, x0, y0, x1, y1): edge boxes included (touching the right and bottom borders)
OBJECTS = [("a.png", "cat", 10, 10, 60, 60), ("a.png", "dog", 120, 20, 200, 100),
           ("sub/b.jpg", "cat", 0, 0, 40, 50), ("sub/b.jpg", "dog", 30, 70, 100, 150)]


def rle(box, wh):
    x0, y0, x1, y1 = box
    m = np.zeros((wh[1], wh[0]), np.uint8)
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


def dataset(objects, categories, image_ids=(1, 2), scores=None, masks=True):
    files = list(SIZES)
    images = [{"id": i, "file_name": f, "width": SIZES[f][0], "height": SIZES[f][1]}
              for i, f in zip(image_ids, files)]
    ids = {f: i for i, f in zip(image_ids, files)}
    cat_id = {c["name"].lower().rstrip("s"): c["id"] for c in categories}
    anns = []
    for k, (f, label, *box) in enumerate(objects):
        x0, y0, x1, y1 = box
        ann = {"id": k + 1, "image_id": ids[f], "category_id": cat_id[label.lower().rstrip("s")],
               "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0,
               "segmentation": rle(box, SIZES[f]) if masks else []}
        if scores is not None:
            ann["score"] = scores[k]
        anns.append(ann)
    return {"info": {}, "licenses": [], "images": images, "categories": categories, "annotations": anns}


TRUTH = dataset(OBJECTS, [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
# visionkit's own ids differ: images in another order, categories named differently
PRED_CATS = [{"id": 7, "name": "Dogs"}, {"id": 3, "name": "cat"}]


def shifted(objects, dx):
    return [(f, lab, x0 + dx, y0, min(x1 + dx, SIZES[f][0]), y1) for f, lab, x0, y0, x1, y1 in objects]


def direct(truth, pred, iou_type):
    """pycocotools by hand: results in the truth's ids (a file-name and name join done here)."""
    names = {c["id"]: c["name"].lower().rstrip("s") for c in pred["categories"]}
    tcat = {c["name"]: c["id"] for c in truth["categories"]}
    timg = {i["file_name"]: i["id"] for i in truth["images"]}
    pimg = {i["id"]: i["file_name"] for i in pred["images"]}
    rows = []
    for a in pred["annotations"]:
        row = {"image_id": timg[pimg[a["image_id"]]], "category_id": tcat[names[a["category_id"]]],
               "score": a.get("score", 1.0)}
        row["bbox" if iou_type == "bbox" else "segmentation"] = a["bbox" if iou_type == "bbox" else
                                                                    "segmentation"]
        rows.append(row)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(truth)
        gt.createIndex()
        if not rows:
            return [0.0 if k in (0, 1, 2, 4, 6, 7, 8, 10) else -1.0 for k in range(12)]  # all medium
        ev = COCOeval(gt, gt.loadRes(rows), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


CASES = {  # name: (objects, scores, expected AP @[.5:.95])
    "perfect": (OBJECTS, None, 1.0),
    "half missing": (OBJECTS[::2], None, 0.5),  # recall 1/2 per class: 51 of 101 recall points
    "shifted": (shifted(OBJECTS, 8), None, None),
    "wrong labels": ([(f, {"cat": "dog", "dog": "cat"}[lab], *b) for f, lab, *b in OBJECTS], None, 0.0),
    "ranked extra": (OBJECTS + [("a.png", "cat", 150, 0, 190, 30)], [0.9, 0.8, 0.7, 0.6, 0.1], 1.0),
    "empty": ([], None, 0.0),
}


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("case", list(CASES))
def test_known_ap_and_agreement_with_pycocotools(case, iou_type):
    objects, scores, expected = CASES[case]
    pred = dataset([(f, "Dogs" if lab == "dog" else lab, *b) for f, lab, *b in objects], PRED_CATS,
                   image_ids=(12, 11), scores=scores)
    before = json.dumps(TRUTH)
    result = evaluate(pred, TRUTH, iou_type=iou_type, backend="pycocotools")
    assert json.dumps(TRUTH) == before  # the caller's truth is not modified
    assert result["stats"] == pytest.approx(direct(TRUTH, pred, iou_type), abs=1e-12)
    if expected is not None:
        assert result["summary"]["AP"] == pytest.approx(expected, abs=0.006)
    if case == "shifted":  # IoU 42/58 = 0.72 per cat box: passes .50-.70, fails .75+
        assert result["summary"]["AP50"] == 1.0 and result["summary"]["AP75"] < 1.0
    if case == "wrong labels":
        assert {(c["truth"], c["predicted"]): c["count"] for c in result["confusions"]} == {
            ("cat", "dog"): 2, ("dog", "cat"): 2}
    else:
        assert result["confusions"] == []
    noted = any("no score" in n for n in result["notes"])
    assert noted == (scores is None and bool(objects))


def test_per_class_and_per_image():
    pred = dataset(OBJECTS[:3], PRED_CATS[::-1], image_ids=(5, 6))
    result = evaluate(pred, TRUTH, iou_type="bbox", backend="pycocotools")
    per = {c["name"]: c for c in result["per_class"]}
    assert per["cat"]["AP"] == pytest.approx(1.0) and per["dog"]["AP"] == pytest.approx(0.5, abs=0.006)
    assert (per["dog"]["truth"], per["dog"]["predicted"]) == (2, 1)
    worst = result["images"][0]
    assert (worst["file_name"], worst["tp"], worst["fn"], worst["fp"]) == ("sub/b.jpg", 1, 1, 0)
    assert worst["f1"] == pytest.approx(2 / 3) and result["images"][1]["f1"] == 1.0
    json.dumps(result)  # JSON-ready


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_faster_coco_eval_agrees(iou_type):
    pytest.importorskip("faster_coco_eval")
    objects = shifted(OBJECTS, 5)[:3] + [("a.png", "dog", 0, 50, 50, 100)]
    pred = dataset(objects, PRED_CATS, scores=[0.9, 0.3, 0.6, 0.5])
    slow = evaluate(pred, TRUTH, iou_type=iou_type, backend="pycocotools")
    fast = evaluate(pred, TRUTH, iou_type=iou_type, backend="faster-coco-eval")
    assert fast["backend"] == "faster-coco-eval"
    assert fast["stats"] == pytest.approx(slow["stats"], abs=1e-9)
    assert fast["per_class"] == slow["per_class"]


def test_join_by_base_name_unmatched_and_unmapped():
    pred = dataset(OBJECTS, [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    pred["images"][1]["file_name"] = "elsewhere/b.jpg"  # base name matches one truth image
    pred["images"].append({"id": 9, "file_name": "zzz.png", "width": 10, "height": 10})
    pred["categories"].append({"id": 3, "name": "horse"})
    pred["annotations"].append({"id": 99, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]})
    result = evaluate(pred, TRUTH, iou_type="bbox")
    assert result["summary"]["AP"] == pytest.approx(1.0)
    assert result["unmatched_images"] == ["zzz.png"] and result["unmapped_labels"] == {"horse": 1}
    assert result["counts"]["joined_images"] == 2


def test_aliases_map_labels():
    objects = [(f, "kitty" if lab == "cat" else lab, *b) for f, lab, *b in OBJECTS]
    pred = dataset(objects, [{"id": 1, "name": "kitty"}, {"id": 2, "name": "dog"}])
    assert evaluate(pred, TRUTH, iou_type="bbox")["unmapped_labels"] == {"kitty": 2}
    result = evaluate(pred, TRUTH, iou_type="bbox", aliases={"kitty": "cat"})
    assert result["summary"]["AP"] == pytest.approx(1.0) and not result["unmapped_labels"]


def test_segm_skips_boxes_without_masks():
    result = evaluate(dataset(OBJECTS, PRED_CATS, masks=False), TRUTH, iou_type="segm")
    assert result["counts"]["no_mask"] == 4 and result["summary"]["AP"] == 0.0
    assert any("no mask" in n for n in result["notes"])


@pytest.mark.parametrize("mutate, match", [
    (lambda p, t: p["images"][0].update(width=201), r"annotations\[0\]\.segmentation\.size: expected the "
     r"image's \[height, width\] \[100, 201\]"),
    (lambda p, t: (p["images"][0].update(width=201), [a.pop("segmentation") for a in p["annotations"]]),
     "a.png: predicted on a 201x100 image"),
    (lambda p, t: t["annotations"][0].pop("area"), r"annotations\[0\]\.area: expected a value"),
    (lambda p, t: p.pop("categories"), r"annotations\[0\]\.category_id: expected the id of a category"),
    (lambda p, t: t["annotations"][2].update(id=t["annotations"][0]["id"]),
     r"annotations\[2\]\.id: expected an id no other annotation has; \d+ is also the id of annotations\[0\]"),
])
def test_bad_inputs_are_named(mutate, match):
    pred, truth = dataset(OBJECTS, PRED_CATS), copy.deepcopy(TRUTH)
    mutate(pred, truth)
    with pytest.raises(InputError, match=match):
        evaluate(pred, truth)


def test_bad_files_and_options(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="results list"):
        evaluate(tmp_path / "results.json", TRUTH)
    with pytest.raises(InputError, match="broken.json is not valid JSON"):
        evaluate(tmp_path / "broken.json", TRUTH)
    with pytest.raises(InputError, match="a run folder needs annotations.json"):
        evaluate(tmp_path, TRUTH)
    with pytest.raises(ConfigError, match="iou_type"):
        evaluate(TRUTH, TRUTH, iou_type="keypoints")


def test_cli_writes_eval_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "annotations.json").write_text(json.dumps(dataset(OBJECTS[::2], PRED_CATS)))
    (tmp_path / "gt.json").write_text(json.dumps(TRUTH))
    stdout = io.StringIO()
    code = main(["eval", str(run), "--truth", str(tmp_path / "gt.json"), "--iou-type", "bbox"],
                stdout=stdout, stderr=io.StringIO())
    assert code == 0
    saved = json.loads((run / "eval.json").read_text())
    assert saved["summary"]["AP"] == pytest.approx(0.5, abs=0.006)
    text = stdout.getvalue()
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in text
    assert "cat" in text and "no score" in text and str(run / "eval.json") in text
    err = io.StringIO()
    assert main(["eval", str(tmp_path / "nope"), "--truth", str(tmp_path / "gt.json")],
                stdout=io.StringIO(), stderr=err) == 2
    assert "does not exist" in err.getvalue()


def test_polygon_and_uncompressed_rle_predictions_match_compressed_rle():
    """A run written with --polygons (or another tool's uncompressed RLE) evaluates like compressed RLE."""
    rle_pred = dataset(shifted(OBJECTS, 3), PRED_CATS)
    poly_pred, raw_pred = copy.deepcopy(rle_pred), copy.deepcopy(rle_pred)
    for ann_p, ann_r in zip(poly_pred["annotations"], raw_pred["annotations"]):
        x, y, w, h = ann_p["bbox"]
        ann_p["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        m = mask_utils.decode({"size": ann_r["segmentation"]["size"],
                               "counts": ann_r["segmentation"]["counts"].encode()})
        flat = m.flatten(order="F")
        edges = np.flatnonzero(np.diff(np.concatenate(([0], flat, [0]))))
        runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
        ann_r["segmentation"] = {"size": list(m.shape), "counts": runs if runs[-1] else runs[:-1]}
    want = evaluate(rle_pred, TRUTH, backend="pycocotools")["stats"]
    assert evaluate(raw_pred, TRUTH, backend="pycocotools")["stats"] == pytest.approx(want)
    # polygons rasterise box corners slightly differently from a filled box: close, not equal
    assert evaluate(poly_pred, TRUTH, backend="pycocotools")["stats"][1] == pytest.approx(want[1], abs=0.02)


# ---- joining predicted images onto truth images: never two predicted images onto one truth image ----

def _named(names):
    return [ImageEntry(k + 1, n, 10, 10, k) for k, n in enumerate(names)]


@pytest.mark.parametrize("pred_names, truth_names, joined, unmatched", [
    ([], ["a.png"], {}, []),                                                    # nothing predicted
    (["a.png"], ["a.png"], {"a.png": "a.png"}, []),                            # exact
    (["x/a.png"], ["a.png"], {"x/a.png": "a.png"}, []),                        # unique base name
    (["a.png", "x/a.png"], ["a.png"], {"a.png": "a.png"}, ["x/a.png"]),        # the reviewer's repro
    (["x/a.png", "a.png"], ["a.png"], {"a.png": "a.png"}, ["x/a.png"]),        # exact wins in any order
    (["x/a.png", "y/a.png"], ["a.png"], {}, ["x/a.png", "y/a.png"]),           # two want it: neither
    (["b.jpg"], ["s/b.jpg", "t/b.jpg"], {}, ["b.jpg"]),                        # two truth images have it
    (["x/a.png", "s/b.jpg"], ["a.png", "s/b.jpg"], {"x/a.png": "a.png", "s/b.jpg": "s/b.jpg"}, []),
    (["A.png"], ["a.png"], {}, ["A.png"]),                                     # names are exact
])
def test_join_images_table(pred_names, truth_names, joined, unmatched):
    from visionkit.quality.evaluate import _join_images
    pred, truth = _named(pred_names), _named(truth_names)
    got, left = _join_images(pred, truth)
    by_pred = {i.pos: i.file_name for i in pred}
    by_truth = {i.pos: i.file_name for i in truth}
    assert {by_pred[p]: by_truth[t] for p, t in got.items()} == joined
    assert len(set(got.values())) == len(got)  # each truth image joined at most once
    assert left == unmatched


def test_two_predicted_images_are_not_joined_onto_one_truth_image():
    truth = dataset(OBJECTS, [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    pred = dataset(OBJECTS, PRED_CATS)
    extra = {"id": 3, "file_name": "elsewhere/a.png", "width": 200, "height": 100}
    pred["images"].append(extra)
    for k in range(5):  # five wrong boxes on another image that shares a.png's base name
        pred["annotations"].append({"id": 100 + k, "image_id": 3, "category_id": 3, "bbox": [0, 0, 5, 5],
                                    "segmentation": rle((0, 0, 5, 5), (200, 100))})
    result = evaluate(pred, truth, iou_type="bbox", backend="pycocotools")
    assert result["counts"]["joined_images"] == 2
    assert result["unmatched_images"] == ["elsewhere/a.png"]
    assert {i["file_name"]: i["predicted"] for i in result["images"]} == {"a.png": 2, "sub/b.jpg": 2}
    assert result["summary"]["AP"] == pytest.approx(1.0)


def test_a_file_name_listed_twice_is_refused():
    pred = dataset(OBJECTS, PRED_CATS)
    pred["images"][1]["file_name"] = "a.png"
    with pytest.raises(InputError, match=r"the predictions dict: images\[1\]\.file_name: .*'a.png' is listed "
                       r"twice"):
        evaluate(pred, TRUTH)


# ---- truth categories: the truth's ids as they are (0 included), errors name the truth file ----

ROBOFLOW_CATS = {  # Roboflow exports put a supercategory at id 0 with no objects of its own
    "project name": [{"id": 0, "name": "pets-xyz", "supercategory": "none"},
                     {"id": 1, "name": "cat", "supercategory": "pets-xyz"},
                     {"id": 2, "name": "dog", "supercategory": "pets-xyz"}],
    "named like a class": [{"id": 0, "name": "cats", "supercategory": "none"},
                           {"id": 1, "name": "cat", "supercategory": "cats"},
                           {"id": 2, "name": "dog", "supercategory": "cats"}],
    "class at id 0": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
}


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("kind", list(ROBOFLOW_CATS))
def test_truth_with_category_id_0(kind, iou_type):
    truth = dataset(OBJECTS, ROBOFLOW_CATS[kind])
    pred = dataset([(f, "Dogs" if lab == "dog" else lab, *b) for f, lab, *b in shifted(OBJECTS, 8)],
                   PRED_CATS, image_ids=(12, 11), scores=[0.9, 0.8, 0.7, 0.6])
    result = evaluate(pred, truth, iou_type=iou_type, backend="pycocotools")
    assert result["stats"] == pytest.approx(direct(truth, pred, iou_type), abs=1e-12)
    assert result["unmapped_labels"] == {} and result["counts"]["results"] == 4
    assert 0.0 < result["summary"]["AP"] < 1.0
    per = {c["name"]: c for c in result["per_class"]}
    assert per["cat"]["truth"] == 2 and per["cat"]["predicted"] == 2
    assert evaluate(dataset(OBJECTS, PRED_CATS), truth, iou_type=iou_type)["summary"]["AP"] == \
        pytest.approx(1.0)


@pytest.mark.parametrize("categories, match", [
    ([{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}], r"categories\[1\]\.id: expected an id no other "
     r"category has \(1 is 'cat' too\)"),
    ([{"id": "one", "name": "cat"}, {"id": 2, "name": "dog"}], r"categories\[0\]\.id: expected an integer; "
     "got 'one'"),
    ([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "Cats"}], None),
])
def test_bad_truth_categories_name_the_truth_file(tmp_path, categories, match):
    truth = dataset(OBJECTS, [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    truth["categories"] = categories
    if match is None:  # one cat object moves to "Cats" (id 3): two categories with objects, one name
        truth["annotations"][0]["category_id"] = 3
        match = "categories 'cat' \\(id 1\\) and 'Cats' \\(id 3\\) are one name"
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(truth))
    with pytest.raises(InputError, match=match) as exc:
        evaluate(dataset(OBJECTS, PRED_CATS), path)
    assert str(path) in str(exc.value)
    err = io.StringIO()
    assert main(["eval", str(path), "--truth", str(path)], stdout=io.StringIO(), stderr=err) == 2
    assert str(path) in err.getvalue() and "Traceback" not in err.getvalue()


def test_alias_to_a_missing_truth_category_is_a_config_error():
    with pytest.raises(ConfigError, match="alias 'kitty' points to 'lion'"):
        evaluate(dataset(OBJECTS, PRED_CATS), TRUTH, aliases={"kitty": "lion"})


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_truth_of_a_tenth_of_the_images_equals_cocoeval(iou_type):
    """Eval reads only the predictions of the images the truth names (the run is streamed); AP equals
    pycocotools' COCOeval run by hand on those images' predictions."""
    import visionkit as vk
    from visionkit.core.maskcrop import MaskCrop

    rng = np.random.default_rng(3)

    def run(shift, with_scores):
        items = []
        for k in range(40):
            wh = (64 + k % 3, 48)
            boxes, labels, crops = [], [], []
            for j in range(1 + k % 4):
                x0, y0 = 4 + 9 * j + shift, 5 + 3 * j
                boxes.append([x0, y0, x0 + 12, y0 + 10])
                crops.append(MaskCrop(rng.random((10, 12)) > 0.3, x0, y0))
                labels.append(["cat", "dog"][(j + k) % 2])
            scores = rng.random(len(boxes)) if with_scores else None
            items.append((f"d/img{k:02d}.png", wh, vk.Detections(np.array(boxes, float), labels, wh,
                                                                  scores=scores, masks=tuple(crops))))
        return vk.to_coco(items)

    pred, full_truth = run(1, True), run(0, False)
    keep = {i["id"] for i in full_truth["images"][::10]}
    truth = {**full_truth, "images": [i for i in full_truth["images"] if i["id"] in keep],
             "annotations": [a for a in full_truth["annotations"] if a["image_id"] in keep]}
    got = evaluate(pred, truth, iou_type=iou_type, backend="pycocotools")
    assert got["counts"]["joined_images"] == 4 and got["counts"]["predicted_images"] == 40

    by_name = {i["file_name"]: i["id"] for i in truth["images"]}
    pred_name = {i["id"]: i["file_name"] for i in pred["images"]}
    rows = [{"image_id": by_name[pred_name[a["image_id"]]], "category_id": a["category_id"],
             "score": a["score"], **({"bbox": a["bbox"]} if iou_type == "bbox" else
                                     {"segmentation": a["segmentation"]})}
            for a in pred["annotations"] if pred_name[a["image_id"]] in by_name]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(truth)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(rows), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert got["stats"] == pytest.approx(list(ev.stats), abs=1e-12)
    assert 0 < got["summary"]["AP"] < 1


def _scene(seed, n_images=13):
    """A truth and predictions over ``n_images`` images of different sizes: 0-4 truth objects of three
    classes each (some crowd), predictions jittered from the truth with random (sometimes tied) scores,
    false positives, images with truth but no predictions and predicted images that the truth lacks."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "bird"}]
    truth = {"images": [], "categories": cats, "annotations": []}
    pred = {"images": [], "categories": [{"id": 9, "name": "birds"}, {"id": 3, "name": "Dog"},
                                         {"id": 4, "name": "cat"}], "annotations": []}
    pred_cat = {1: 4, 2: 3, 5: 9}

    def ann(anns, image_id, cat, box, wh, **extra):
        x0, y0, x1, y1 = box
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                     "segmentation": rle(box, wh), **extra})

    for k in range(n_images + 3):
        wh = (60 + 7 * (k % 4), 40 + 5 * (k % 3))
        name = f"img{k:02d}.png"
        pred["images"].append({"id": 100 + k, "file_name": name, "width": wh[0], "height": wh[1]})
        if k < n_images:  # the last three are predicted only
            truth["images"].append({"id": 1 + (k * 7) % 50, "file_name": name, "width": wh[0],
                                    "height": wh[1]})
        for _ in range(int(rng.integers(0, 5))):
            x0, y0 = int(rng.integers(0, wh[0] - 12)), int(rng.integers(0, wh[1] - 10))
            box = (x0, y0, min(wh[0], x0 + int(rng.integers(5, 30))),
                   min(wh[1], y0 + int(rng.integers(5, 25))))
            cat = int(rng.choice([1, 2, 5]))
            if k < n_images:
                ann(truth["annotations"], truth["images"][-1]["id"], cat, box, wh,
                    iscrowd=int(rng.random() < 0.1))
            if k % 5 == 3 and k < n_images:
                continue  # truth but no predictions
            dx, dy = (int(v) for v in rng.integers(-3, 4, 2))
            moved = (max(0, box[0] + dx), max(0, box[1] + dy), min(wh[0], box[2] + dx),
                     min(wh[1], box[3] + dy))
            if moved[2] > moved[0] and moved[3] > moved[1]:
                ann(pred["annotations"], 100 + k, pred_cat[cat], moved, wh, iscrowd=0,
                    score=float(rng.choice([0.5, 0.9, rng.random()])))
        if k % 4 == 1:  # a false positive
            ann(pred["annotations"], 100 + k, pred_cat[int(rng.choice([1, 2, 5]))], (1, 1, 15, 12), wh,
                iscrowd=0, score=float(rng.random()))
    return pred, truth


def _whole_cocoeval(pred, truth, iou_type, backend):
    """One COCOeval over the whole truth, by hand: its stats and printed summary."""
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO as Coco
        from faster_coco_eval import COCOeval_faster as Evaluator
    else:
        Coco, Evaluator = COCO, COCOeval
    ids = {i["file_name"]: i["id"] for i in truth["images"]}
    pred_names = {i["id"]: i["file_name"] for i in pred["images"]}
    cat = {4: 1, 3: 2, 9: 5}
    rows = [{"image_id": ids[pred_names[a["image_id"]]], "category_id": cat[a["category_id"]],
             "score": a["score"], **({"bbox": a["bbox"]} if iou_type == "bbox" else
                                     {"segmentation": a["segmentation"]})}
            for a in pred["annotations"] if pred_names[a["image_id"]] in ids]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = Coco()
        gt.dataset = copy.deepcopy(truth)
        gt.createIndex()
        kwargs = {"print_function": print} if backend == "faster-coco-eval" else {}
        ev = Evaluator(gt, gt.loadRes(rows), iou_type, **kwargs)
        ev.evaluate()
        ev.accumulate()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ev.summarize()
    return list(ev.stats[:12]), text.getvalue(), np.asarray(ev.eval["precision"])


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_cocoeval_equals_one_whole_cocoeval(monkeypatch, seed, iou_type, backend):
    """The truth is evaluated a few images at a time and merged before one accumulate(): the numbers,
    the printed summary and the per-class and per-image results are those of one COCOeval over the
    whole truth, and the same as with one chunk."""
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    from visionkit.quality import _cocoeval_chunks

    pred, truth = _scene(seed)
    stats, text, precision = _whole_cocoeval(pred, truth, iou_type, backend)
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_IMAGES", 10**6)
    one = evaluate(pred, truth, iou_type=iou_type, backend=backend)
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_IMAGES", 3)  # five chunks of the 13 truth images
    got = evaluate(pred, truth, iou_type=iou_type, backend=backend)
    assert got["stats"] == stats and got["summary_text"] == text
    assert got == one
    assert got["counts"]["joined_images"] == 13 and len(got["unmatched_images"]) == 3
    per_class = {c["category_id"]: c for c in got["per_class"]}
    for k, cat_id in enumerate((1, 2, 5)):
        p = precision[:, :, k, 0, -1]
        assert per_class[cat_id]["AP"] == (float(p[p > -1].mean()) if (p > -1).any() else None)
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_OBJECTS", 1)  # a chunk per image
    assert evaluate(pred, truth, iou_type=iou_type, backend=backend) == one


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
def test_chunked_cocoeval_without_predictions(monkeypatch, backend):
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    from visionkit.quality import _cocoeval_chunks

    pred, truth = _scene(4)
    pred["annotations"] = []
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_IMAGES", 4)
    got = evaluate(pred, truth, iou_type="segm", backend=backend)
    assert got["stats"][:3] == [0.0, 0.0, 0.0] and got["counts"]["results"] == 0
    assert all(c["AP"] in (0.0, None) for c in got["per_class"])
    empty_truth = {**truth, "images": [], "annotations": []}
    got = evaluate(pred, empty_truth, iou_type="bbox", backend=backend)
    assert got["stats"] == [-1.0] * 12 and got["images"] == []


def test_cocoeval_sees_a_chunk_of_the_truth_at_a_time(monkeypatch):
    """Memory follows a chunk, not the truth: COCOeval never evaluates more than 100 truth images at once,
    and the truth is streamed (never loaded whole). Fails on the whole-truth evaluation."""
    from visionkit.formats.coco_stream import CocoFile

    seen = []
    evaluate_images = COCOeval.evaluate

    def spy(self):
        seen.append(len(self.params.imgIds))
        return evaluate_images(self)

    monkeypatch.setattr(COCOeval, "evaluate", spy)
    monkeypatch.setattr(CocoFile, "load", lambda self: pytest.fail("the truth was loaded whole"))
    images = [{"id": k + 1, "file_name": f"{k}.png", "width": 32, "height": 24} for k in range(250)]
    anns = [{"id": k + 1, "image_id": k + 1, "category_id": 1, "bbox": [2, 2, 10, 8], "area": 80.0,
             "iscrowd": 0} for k in range(250)]
    truth = {"images": images, "categories": [{"id": 1, "name": "cat"}], "annotations": anns}
    pred = {**truth, "annotations": [{**a, "score": 0.5} for a in anns[::2]]}
    got = evaluate(pred, truth, iou_type="bbox", backend="pycocotools")
    assert seen and max(seen) <= 100 and sum(seen) == 250
    assert got["summary"]["AR100"] == pytest.approx(0.5) and got["counts"]["joined_images"] == 250


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 14), objects=st.integers(1, 40))
def test_chunked_cocoeval_property(monkeypatch, seed, chunk, objects):
    """Any scene, any chunk size: the numbers and the summary are one whole-truth COCOeval's."""
    from visionkit.quality import _cocoeval_chunks  # noqa: PLC0415

    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_IMAGES", chunk)
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_OBJECTS", objects)
    pred, truth = _scene(seed, n_images=9)
    stats, text, _ = _whole_cocoeval(pred, truth, "segm", "pycocotools")
    got = evaluate(pred, truth, iou_type="segm", backend="pycocotools")
    assert got["stats"] == stats and got["summary_text"] == text


@pytest.mark.filterwarnings("ignore:Found annotation id 0")  # faster-coco-eval warns of it
@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
def test_chunked_cocoeval_with_a_truth_object_of_id_0(monkeypatch, backend):
    """pycocotools records a match as the truth object's id, so a match with id 0 counts as none; the
    chunks keep whatever each backend recorded."""
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    from visionkit.quality import _cocoeval_chunks  # noqa: PLC0415

    pred, truth = _scene(6)
    for ann in truth["annotations"]:
        ann["id"] -= 1
    monkeypatch.setattr(_cocoeval_chunks, "CHUNK_IMAGES", 2)
    stats, text, _ = _whole_cocoeval(pred, truth, "bbox", backend)
    got = evaluate(pred, truth, iou_type="bbox", backend=backend)
    assert got["stats"] == stats and got["summary_text"] == text
