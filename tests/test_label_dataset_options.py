"""`visionkit label` dataset options: --polygon-holes, --categories, points as COCO keypoints."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
from conftest import png_b64
from PIL import Image
from pycocotools.coco import COCO

from visionkit.cli import main


def _ring(h, w):
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 255, -1)
    cv2.circle(m, (w // 2, h // 2), min(h, w) // 4, 0, -1)
    return m


def _run(tmp_path, answer, *extra):
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir(exist_ok=True)
    replay.mkdir(exist_ok=True)
    Image.new("RGB", (300, 200), (90, 90, 90)).save(images / "a.png")
    (replay / "a.txt").write_text(json.dumps(answer))
    out = tmp_path / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["label", str(images), "--out", str(out), "--replay", str(replay), "-q", *extra],
                stdout=stdout, stderr=stderr)
    return code, out, stdout.getvalue(), stderr.getvalue()


def test_polygon_holes_fill_from_the_cli(tmp_path):
    answer = [{"box_2d": [100, 100, 900, 900], "mask": png_b64(_ring(64, 64)), "label": "donut"}]
    for holes, kind in (("rle", dict), ("fill", list)):
        code, out, _, err = _run(tmp_path, answer, "--polygons", "--polygon-holes", holes)
        assert code == 0, err
        ds = json.loads((out / "annotations.json").read_text())
        assert isinstance(ds["annotations"][0]["segmentation"], kind)
        key = "polygon_rle_fallback" if holes == "rle" else "holes_filled"
        assert ds["info"]["visionkit"][key] == 1


def test_categories_file_and_unmapped_report(tmp_path):
    cats = tmp_path / "names.txt"
    cats.write_text("plate\ncup\n")
    answer = [{"box_2d": [0, 0, 500, 500], "label": "cups"}, {"box_2d": [500, 500, 900, 900], "label": "dog"}]
    code, out, stdout, err = _run(tmp_path, answer, "--task", "detect", "--categories", str(cats))
    assert code == 0, err
    ds = json.loads((out / "annotations.json").read_text())
    assert ds["categories"] == [{"id": 1, "name": "plate", "supercategory": "object"},
                                {"id": 2, "name": "cup", "supercategory": "object"}]
    assert [a["category_id"] for a in ds["annotations"]] == [2]
    assert "dropped 1 detections with labels outside --categories: {'dog': 1}" in stdout


def test_bad_categories_file_is_a_usage_error(tmp_path):
    code, out, _, err = _run(tmp_path, [], "--categories", str(tmp_path / "nope.txt"))
    assert code == 2 and "cannot read categories file" in err and "nope.txt" in err


def test_points_go_to_keypoints_json_and_the_summary(tmp_path):
    answer = [{"point": [500, 250], "label": "handle"}, {"point": [100, 900], "label": "handle"},
              {"box_2d": [0, 0, 500, 500], "label": "mug"}]
    code, out, stdout, err = _run(tmp_path, answer, "--task", "detect")
    assert code == 0, err
    assert f"2 points (pointing answers, no box) are not COCO instances: written as COCO keypoints to " \
           f"{out / 'keypoints.json'}" in stdout
    ds = json.loads((out / "annotations.json").read_text())
    assert len(ds["annotations"]) == 1 and ds["info"]["visionkit"]["points_skipped"] == 2
    kp = json.loads((out / "keypoints.json").read_text())
    assert kp["categories"] == [{"id": 1, "name": "handle", "supercategory": "object",
                                 "keypoints": ["point"], "skeleton": []}]
    assert [a["keypoints"] for a in kp["annotations"]] == [[75.0, 100.0, 2], [270.0, 20.0, 2]]
    assert all(a["num_keypoints"] == 1 for a in kp["annotations"])
    coco = COCO(str(out / "keypoints.json"))  # loads in pycocotools
    assert len(coco.getAnnIds(catIds=[1])) == 2
    # a rerun without points removes the stale keypoints file
    code, out, stdout, _ = _run(tmp_path, answer[2:], "--task", "detect")
    assert code == 0 and not (out / "keypoints.json").exists() and "pointing answers" not in stdout
