"""Fixtures -> `visionkit label --replay` -> COCOeval against the ground truth."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, REPO
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.formats.coco import to_results


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    out = tmp_path_factory.mktemp("roundtrip")
    proc = subprocess.run([sys.executable, "-m", "visionkit", "label", str(FIXTURES / "images"), "--out",
                           str(out), "--task", "segment", "--replay", str(FIXTURES / "replay")],
                          capture_output=True, text=True, cwd=REPO)
    return out, proc


def evaluate(kind: str, out) -> float:
    truth = json.loads((FIXTURES / "truth.json").read_text())
    ours = json.loads((out / "annotations.json").read_text())
    # Map our ids onto the truth's by file name and category name.
    image_ids = {i["file_name"]: i["id"] for i in truth["images"]}
    cat_ids = {c["name"]: c["id"] for c in truth["categories"]}
    our_images = {i["id"]: image_ids[i["file_name"]] for i in ours["images"]}
    our_cats = {c["id"]: cat_ids[c["name"]] for c in ours["categories"]}
    results = []
    for row in to_results(ours, kind):
        row["image_id"] = our_images[row["image_id"]]
        row["category_id"] = our_cats[row["category_id"]]
        results.append(row)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        gt = COCO(str(FIXTURES / "truth.json"))
        ev = COCOeval(gt, gt.loadRes(results), kind)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_cli_succeeds_and_reports_the_broken_answers(labelled):
    out, proc = labelled
    assert proc.returncode == 0, proc.stderr
    assert "8/8 images labelled" in proc.stdout
    assert "portrait_480x720.png: item 3: the answer was cut off after 3 complete items" in proc.stderr
    assert "segtokens_900x600.png: item 0 'mask': mask is <start_of_mask>" in proc.stderr
    ds = json.loads((out / "annotations.json").read_text())
    truth = json.loads((FIXTURES / "truth.json").read_text())
    dims = {i["file_name"]: (i["width"], i["height"]) for i in truth["images"]}
    assert {i["file_name"]: (i["width"], i["height"]) for i in ds["images"]} == dims  # EXIF applied
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        f.rsplit(".", 1)[0] + ".jpg" for f in dims)


def test_segm_ap_against_truth(labelled):
    out, _ = labelled
    ap = evaluate("segm", out)
    assert ap >= 0.9, ap


def test_bbox_ap_against_truth(labelled):
    out, _ = labelled
    assert evaluate("bbox", out) >= 0.9
