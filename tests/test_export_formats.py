"""`visionkit export` round 2 (issue 16): splits that are never empty, a YAML both FiftyOne and Ultralytics
find, polygons whose first part is the object, the Label Studio and Hugging Face layouts.

The real tools (Label Studio, datasets, FiftyOne, Ultralytics) load these outputs in
tests/test_interop_tools.py and tests/test_label_studio.py; here the files themselves are checked."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image
from pycocotools import mask as mask_utils

from visionkit import ExportError
from visionkit.cli import main
from visionkit.core.detections import Detections
from visionkit.core.maskcrop import MaskCrop
from visionkit.core.polygons import MIN_PART_AREA, crop_to_polygons
from visionkit.formats.coco import CategoryMap, to_coco
from visionkit.formats.export import assign_splits, export_dataset
from visionkit.formats.hf import metadata_rows
from visionkit.formats.label_studio import label_config, local_files_url, task
from visionkit.run.pipeline import label


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert label([FIXTURES / "images"], out, task="segment", replay=FIXTURES / "replay", overlays=False).ok
    return out


def _one_image_run(tmp_path, name="solo.png"):
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    Image.new("RGB", (64, 48)).save(images / name)
    (replay / (name.rsplit(".", 1)[0] + ".txt")).write_text(json.dumps([{"box_2d": [100, 100, 600, 500],
                                                                           "label": "mug"}]))
    out = tmp_path / "run"
    assert label([images / name], out, task="detect", replay=replay, overlays=False).ok
    return out


def _seed_where(name, split, want):
    return next(s for s in range(200) if assign_splits([name], split, s)[name] == want)


def _cli(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["export", *map(str, args)], stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


# -- 1. splits never empty -----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["train", "val"])
@pytest.mark.parametrize("fmt", ["yolo", "coco", "hf", "label-studio"])
def test_one_image_split_never_writes_an_empty_split(tmp_path, fmt, where):
    """The issue's case: 1 image, --split val=0.2 wrote an empty images/val that stopped Ultralytics."""
    run = _one_image_run(tmp_path)
    seed = _seed_where("solo.png", {"val": 0.2}, where)
    dest = tmp_path / "d"
    code, out, err = _cli(run, "--to", dest, "--format", fmt, "--split", "val=0.2", "--seed", seed)
    assert code == 0, err
    assert "1 images (1 train, 0 val)" in out
    assert "no image fell into val (1 images, --split val=0.2), so no val split was written" in out
    if where == "val":  # the image hashed into val: it moves, so train is never empty
        assert "no image fell into train with --split val=0.2; solo.png was moved there" in out
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert not any("val" in f for f in files), files  # no empty folder, no empty file
    if fmt == "yolo":
        assert "dataset.yaml points it at images/train" in out
        yaml = (dest / "dataset.yaml").read_text()
        assert 'val: "images/train"  # no image fell into val' in yaml
        assert (dest / "data.yaml").read_text() == yaml
        assert (dest / "images" / "train" / "solo.png").exists()
    if fmt == "coco":
        assert files == ["annotations", "annotations/instances_train.json", "images", "images/train",
                         "images/train/solo.png"]


def test_several_splits_and_enough_images_are_left_alone(run_dir, tmp_path):
    s = export_dataset(run_dir, tmp_path / "y", format="yolo", split="val=0.25", seed=1)
    assert s.images == {"train": 6, "val": 2} and s.empty_splits == [] and s.notes == []
    assert 'val: "images/val"' in (tmp_path / "y" / "dataset.yaml").read_text()


# -- 3. polygons: largest part first, specks dropped ---------------------------------------------------
def test_polygon_parts_are_largest_first_and_specks_are_dropped(monkeypatch):
    from collections import Counter

    from visionkit.core import polygons

    data = np.zeros((30, 40), bool)
    data[1, 30] = True                 # a 1-pixel part, first in scan order
    data[5:25, 10:38] = True           # the body
    data[1:3, 1:4] = True              # 6 pixels
    report = Counter()
    polys, _ = crop_to_polygons(MaskCrop(data, 0, 0), report=report)
    areas = [int(mask_utils.area(mask_utils.frPyObjects([p], 30, 40))[0]) for p in polys]
    assert areas == [560, 6, 1]
    assert report["polygon_specks_dropped"] == 0 and MIN_PART_AREA == 1.0  # a whole pixel is no speck
    monkeypatch.setattr(polygons, "MIN_PART_AREA", 2.0)  # the same mechanism, a bigger threshold
    polys, _ = crop_to_polygons(MaskCrop(data, 0, 0), report=report)
    assert len(polys) == 2 and report["polygon_specks_dropped"] == 1


def test_real_cupcakes_first_polygon_is_the_object(real_dir):
    """The rolling pin was a 2-pixel speck first and its 6,014-pixel body second (IoU 0.0003)."""
    from visionkit.answers.parse import parse_response

    d = parse_response((real_dir / "cookbook-cupcakes" / "segment.txt").read_text(), (1024, 1024))
    poly = to_coco([("c.png", (1024, 1024), d)], polygons=True, polygon_holes="fill")
    rle = to_coco([("c.png", (1024, 1024), d)])
    for p, r in zip(poly["annotations"], rle["annotations"]):
        first = mask_utils.decode(mask_utils.frPyObjects(p["segmentation"][:1], 1024, 1024))[..., 0]
        truth = mask_utils.decode(r["segmentation"]).astype(bool)
        iou = (first.astype(bool) & truth).sum() / (first.astype(bool) | truth).sum()
        assert iou >= 0.8, (p["id"], iou)


# -- 4. Label Studio: the files ------------------------------------------------------------------------
def test_label_config_escapes_names_and_matches_the_results():
    xml = label_config(['cup "a" & <b>', "寿司"], polygons=True)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    controls = {c.tag: c.attrib["name"] for c in root if c.tag != "Image"}
    assert controls == {"BrushLabels": "mask", "PolygonLabels": "polygon", "RectangleLabels": "box"}
    assert [lab.attrib["value"] for lab in root.find("BrushLabels")] == ['cup "a" & <b>', "寿司"]
    assert local_files_url("images/train/a b#.jpg") == "/data/local-files/?d=images/train/a%20b%23.jpg"


@pytest.mark.parametrize("wh", [(7, 5), (40, 30)])  # non-square; edge boxes
def test_label_studio_task_regions(wh):
    brush = pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter not installed")
    w, h = wh
    crop = MaskCrop(np.ones((2, 3), bool), w - 3, h - 2)  # touches the right and bottom edges
    d = Detections([[w - 3, h - 2, w, h], [0, 0, 2, 1], [1, 1, 1, 1]], ["cup", "plate", "pt"], wh,
                   scores=[0.5, 0.9, 0.1], masks=[crop, None, None], points=[[np.nan, np.nan]] * 2 + [[1, 1]])
    cats = CategoryMap(["cup", "plate"])
    t = task("/data/local-files/?d=x.png", wh, d, cats)
    res = t["predictions"][0]["result"]
    assert [r["type"] for r in res] == ["brushlabels", "rectanglelabels"]  # the point is not a region
    back = brush.decode_rle(res[0]["value"]["rle"]).reshape(h, w, 4)[..., 3] > 0
    np.testing.assert_array_equal(back, d.mask(0))
    assert res[1]["value"] == {"x": 0.0, "y": 0.0, "width": round(200 / w, 4),
                               "height": round(100 / h, 4), "rotation": 0, "rectanglelabels": ["plate"]}
    assert [r["score"] for r in res] == [0.5, 0.9] and t["predictions"][0]["score"] == 0.7
    assert all(r["original_width"] == w and r["original_height"] == h for r in res)
    empty = task("u", wh, Detections.empty(wh), cats)
    assert empty["predictions"][0]["result"] == []


def test_label_studio_export_layout(run_dir, tmp_path):
    pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter not installed")
    dest = tmp_path / "ls"
    s = export_dataset(run_dir, dest, format="label-studio", split="val=0.25", seed=1, polygons=True)
    tasks = {p: json.loads((dest / f"tasks_{p}.json").read_text()) for p in ("train", "val")}
    assert [len(t) for t in tasks.values()] == [6, 2]
    for part, ts in tasks.items():
        for t in ts:
            rel = t["data"]["image"].split("?d=", 1)[1]
            assert rel == f"images/{part}/{t['data']['file_name']}" and (dest / rel).exists()
    results = [r for ts in tasks.values() for t in ts for r in t["predictions"][0]["result"]]
    assert len(results) == s.annotations == 30
    assert {r["type"] for r in results} == {"polygonlabels", "rectanglelabels"}
    assert "<PolygonLabels" in (dest / "config.xml").read_text()


# -- 5. Hugging Face: the files ------------------------------------------------------------------------
def test_hf_rows_one_per_image_one_box_per_annotation(run_dir, tmp_path):
    dest = tmp_path / "hf"
    s = export_dataset(run_dir, dest, format="hf", split="val=0.25", seed=1)
    src = json.loads((run_dir / "annotations.json").read_text())
    rows = [json.loads(line) for p in ("train", "val") for line in (dest / p / "metadata.jsonl").open()]
    assert len(rows) == len(src["images"]) == 8 and s.annotations == len(src["annotations"])
    names = [c["name"] for c in src["categories"]]
    by_name = {i["file_name"]: i["id"] for i in src["images"]}
    for row in rows:
        mine = [a for a in src["annotations"] if a["image_id"] == by_name[row["file_name"]]]
        obj = row["objects"]
        assert obj["bbox"] == [a["bbox"] for a in mine] and obj["area"] == [a["area"] for a in mine]
        assert [names[c] for c in obj["category"]] == [names[a["category_id"] - 1] for a in mine]
        for seg, a in zip(obj["segmentation"], mine):
            want = a["segmentation"]
            want = mask_utils.merge(mask_utils.frPyObjects(want, row["height"], row["width"])) \
                if isinstance(want, list) else want
            assert mask_utils.decode(dict(seg, counts=seg["counts"].encode())).sum() == \
                mask_utils.decode(want).sum()
    assert all(f"- {i}: {n}" in (dest / "README.md").read_text() for i, n in enumerate(names))


def test_hf_refuses_split_names_datasets_would_skip(run_dir, tmp_path):
    with pytest.raises(ExportError, match="holdout.*split names are"):
        export_dataset(run_dir, tmp_path / "hf", format="hf", split="holdout=0.2")
    assert not (tmp_path / "hf").exists()


def test_hf_rows_of_an_empty_image_and_unmapped_labels():
    from collections import Counter

    report = Counter()
    d = Detections([[0, 0, 2, 2]], ["ghost"], (3, 2))
    rows = metadata_rows([("a.png", (3, 2), Detections.empty((3, 2))), ("b.png", (3, 2), d)],
                         CategoryMap(["cup"]), report)
    assert [r["objects"]["id"] for r in rows] == [[], []] and report["unmapped:ghost"] == 1


# -- 6. run folders say what they are ------------------------------------------------------------------
def test_a_run_with_exif_rotated_images_says_once_that_loaders_need_export(tmp_path):
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["label", str(FIXTURES / "images"), "--out", str(tmp_path / "run"), "--replay",
            str(FIXTURES / "replay"), "--no-overlays", "-q"]
    assert main(argv, stdout=stdout, stderr=stderr) == 0
    said = [line for line in stdout.getvalue().splitlines() if "EXIF rotation" in line]
    assert said == ["1 images carry an EXIF rotation: annotations.json describes them upright, but loaders "
                    "that read the original files through this run folder (torchvision's CocoDetection, "
                    "datumaro) see them sideways; `visionkit export` writes upright copies for them"]
    assert "EXIF" not in stderr.getvalue()
    upright = label([FIXTURES / "images" / "wide_640x480.jpg"], tmp_path / "run2", task="segment",
                    replay=FIXTURES / "replay", overlays=False)
    assert upright.rotated == 0 and upright.rotation_notice() is None


def test_ls_root_must_hold_the_export(run_dir, tmp_path):
    with pytest.raises(ExportError, match="is not inside it"):
        export_dataset(run_dir, tmp_path / "a" / "ls", format="label-studio", ls_root=tmp_path / "b")
    assert not (tmp_path / "a").exists()  # refused before anything was written
