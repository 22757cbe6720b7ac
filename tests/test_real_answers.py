"""Real recorded Gemini answers (../shared/gemini-real) against the slow published recipe.

Skipped when ../shared is absent (a user's fresh clone).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from visionkit import parse_response, to_coco
from visionkit.testing.recipe import recipe_parse

SIZES = [(1024, 1024), (620, 620), (640, 480), (4000, 3000), (333, 777)]


@pytest.mark.parametrize("image_wh", SIZES)
@pytest.mark.parametrize("name", ["cookbook-cupcakes/segment.txt", "pasted/door-segment.txt",
                                  "pasted/fire-extinguisher-segment.txt"])
def test_segmentation_matches_the_recipe(real_dir, name, image_wh):
    text = (real_dir / name).read_text()
    ref = recipe_parse(text, image_wh)
    d = parse_response(text, image_wh)
    assert len(d) == len(ref) and d.warnings == ()
    ious = []
    for i, (label, box, full) in enumerate(ref):
        assert d.labels[i] == label
        assert np.abs(d.xyxy[i] - np.asarray(box)).max() <= 1.0
        mine = d.mask(i)
        ious.append((mine & full).sum() / max((mine | full).sum(), 1))
    assert min(ious) >= 0.9, ious
    assert np.mean(ious) >= 0.97, ious


def test_cupcakes_facts(real_dir):
    d = parse_response((real_dir / "cookbook-cupcakes/segment.txt").read_text(), (1024, 1024))
    assert len(d) == 15 and all(d.has_mask(i) for i in range(15))
    assert d.xyxy.max() <= 1024 and d.xyxy.min() >= 0
    ds = to_coco([("cupcakes.png", (1024, 1024), d)])
    assert len(ds["annotations"]) == 15
    # duplicate labels share one category
    assert len(ds["categories"]) == len(set(d.labels))


@pytest.mark.parametrize("name, n, image_wh", [
    ("cookbook-cupcakes/detect.txt", 15, (1024, 1024)),
    ("cookbook-socks/detect.txt", 2, (640, 482)),
    ("cookbook-spill/detect.txt", 4, (640, 480)),
    ("robotics-er/detect.txt", 6, (800, 600)),
])
def test_detection_boxes_match_the_recipe(real_dir, name, n, image_wh):
    text = (real_dir / name).read_text()
    ref = recipe_parse(text, image_wh)
    d = parse_response(text, image_wh)
    assert len(d) == n == len(ref) and d.masks is None
    assert np.abs(d.xyxy - np.asarray([b for _, b, _ in ref], float)).max() <= 1.0


def test_spill_prose_and_sentence_labels(real_dir):
    d = parse_response((real_dir / "cookbook-spill/detect.txt").read_text(), (640, 480))
    assert list(d.labels) == ["pink cloth", "sugar bowl", "spill", "sugar container"]
    np.testing.assert_allclose(d.xyxy[0], [0, 447 * 0.48, 418 * 0.64, 480])


@pytest.mark.parametrize("name, n", [("robotics-er/points.txt", 7), ("robotics-er/trajectory.txt", 12)])
def test_points(real_dir, name, n):
    text = (real_dir / name).read_text()
    d = parse_response(text, (1000, 500))
    raw = json.loads(text.split("```json")[1].split("```")[0])
    assert len(d) == n
    np.testing.assert_allclose(d.points, [[p["point"][1], p["point"][0] / 2] for p in raw])


# -- fragments: each has a documented result, never an exception ------------------------------------------

BOX = '"box_2d": [100, 200, 500, 600], "label": "thing"'


def test_fragment_seg_tokens_keep_the_box(real_dir):
    for name in ("seg-tokens-a.txt", "seg-tokens-b.txt"):
        fragment = (real_dir / "fragments" / name).read_text().strip()
        # As quoted: a member (a) or an object (b); inside a real answer each sits in an item with a box.
        member = fragment.rstrip(".") if fragment.startswith('"') else fragment.strip("{}")
        d = parse_response("[{" + BOX + ", " + member + "}]", (640, 480))
        assert len(d) == 1 and not d.has_mask(0)
        (w,) = d.warnings
        assert w.field == "mask" and "no public decoder" in w.reason and "box kept" in w.reason
        # Alone, the fragment has no box: reported, not raised.
        alone = parse_response(fragment, (640, 480))
        assert len(alone) == 0 and len(alone.warnings) == 1


def test_fragment_polygon_mask(real_dir):
    fragment = json.loads((real_dir / "fragments/polygon-mask.txt").read_text())
    item = {"box_2d": [320, 405, 410, 540], "label": "x", **fragment}
    d = parse_response(json.dumps([item]), (1000, 1000))
    crop = d.masks[0]
    # y first: the polygon spans y 325-408 and x 411-534 (on a 1000 px image, 1 px = 1 unit)
    x0, y0, x1, y1 = crop.xyxy
    assert abs(x0 - 411) <= 1 and abs(x1 - 534) <= 1 and abs(y0 - 325) <= 1 and abs(y1 - 408) <= 1
    assert crop.area() > 0.6 * (x1 - x0) * (y1 - y0)
    assert len(parse_response(json.dumps(fragment), (1000, 1000))) == 0  # no box: skipped, warned


def test_fragment_wrapper_with_swapped_box(real_dir):
    d = parse_response((real_dir / "fragments/wrapper-swapped-box.txt").read_text(), (1000, 1000))
    assert len(d) == 1
    np.testing.assert_allclose(d.xyxy[0], [209, 196, 437, 600])
    reasons = {w.field: w.reason for w in d.warnings}
    assert "swapped" in reasons["box_2d"] and "not valid base64" in reasons["mask"]
    assert "no label" in reasons["label"]


def test_fragment_runaway_base64(real_dir):
    fragment = (real_dir / "fragments/runaway-base64.txt").read_text()
    answer = "```json\n[{" + BOX + "},\n{" + BOX + ", " + fragment
    d = parse_response(answer, (640, 480))
    assert len(d) == 1 and d.masks is None
    assert any("1 incomplete item dropped" in w.reason for w in d.warnings)
    alone = parse_response(fragment, (640, 480))
    assert len(alone) == 0 and "cut off" in alone.warnings[0].reason
