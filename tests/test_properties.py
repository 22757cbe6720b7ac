"""Property-based tests (hypothesis): the parser, to_coco and draw_overlay over generated answers.

Properties, for every generated answer:

* nothing but a VisionkitError ever comes out (parser, COCO export, drawing);
* every valid item of a complete answer is kept, whatever the wrapping (fences, prose, wrappers,
  escaping), and a truncated answer keeps exactly its complete valid items;
* every label can be written as UTF-8 and drawn; the COCO file is valid JSON;
* ``draw_overlay`` returns a new image of the right shape and never writes into its input.

The budget is bounded (``max_examples`` per test, no deadline, no example database), so the module adds
a few seconds to the suite, deterministically (``derandomize``).
"""

from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionkit import Detections, parse_response, to_coco
from visionkit.draw.overlay import MissingGlyphWarning, draw_overlay
from visionkit.errors import VisionkitError

FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- strategies ----------------------------------------------------------------------------------------

TRICKY_LABELS = ["cup", "coffee\nmug", "cup \ud83d", "\udc00", "猫", "カップ", "😀 dog", "", "   ", "a ``` b",
                 '"]}', "[1]", "{}", "```json\n[1]\n```", "<start_of_mask><seg_1>", "\x00\x07\x1b", "x" * 300,
                 "\u2028", "\\", '\\"', "null"]

label_st = st.one_of(st.sampled_from(TRICKY_LABELS),
                     st.text(st.characters(codec=None), max_size=20),  # includes lone surrogates
                     st.integers(-5, 5), st.none(), st.lists(st.integers(0, 3), max_size=2))
coord_st = st.one_of(st.integers(-50, 1050), st.floats(-50, 1050, allow_nan=False),
                     st.integers(0, 1000).map(str))
box_st = st.one_of(st.lists(coord_st, min_size=4, max_size=4),
                   st.lists(coord_st, max_size=6), st.just("0,0,10,10"), st.none())


@st.composite
def png_mask_st(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    prob = draw(st.sampled_from([0, 100, 200, 255]))
    arr = np.full((h, w), prob, np.uint8)
    arr[: h // 2] = 255 - prob
    ok, buf = cv2.imencode(".png", arr)
    import base64

    data = base64.b64encode(buf.tobytes()).decode()
    return draw(st.sampled_from(["data:image/png;base64," + data, data, data[: len(data) // 2]]))


mask_st = st.one_of(
    png_mask_st(),
    st.lists(st.lists(st.integers(-10, 1010), min_size=2, max_size=2), min_size=0, max_size=30),
    st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=3),
    st.sampled_from(["<start_of_mask><seg_1><seg_2>", "data:image/png;base64,!!", "", 5, None]),
)


@st.composite
def item_st(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, 1, "cup", True, [1, 2]]))
    item = {}
    if draw(st.booleans()) or draw(st.booleans()):
        item["box_2d"] = draw(box_st)
    elif draw(st.booleans()):
        item["point"] = draw(st.lists(coord_st, min_size=2, max_size=2))
    if draw(st.booleans()):
        item["label"] = draw(label_st)
    if draw(st.booleans()):
        item["mask"] = draw(mask_st)
    if draw(st.integers(0, 3)) == 0:
        item["score"] = draw(st.one_of(st.floats(-1, 2, allow_nan=False), st.just("0.5")))
    return item


def _num(v) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        f = float(v.strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def is_valid(item) -> bool:
    """The oracle: would a careful reader keep this item as a detection?"""
    if not isinstance(item, dict):
        return False
    if "box_2d" in item:
        box = item["box_2d"]
        if not isinstance(box, list) or len(box) != 4:
            return False
        nums = [_num(v) for v in box]
        if any(v is None for v in nums):
            return False
        ymin, ymax = sorted(min(max(v, 0), 1000) for v in (nums[0], nums[2]))
        xmin, xmax = sorted(min(max(v, 0), 1000) for v in (nums[1], nums[3]))
        return ymax > ymin and xmax > xmin
    if "point" in item:
        return all(_num(v) is not None for v in item["point"])
    return False


@st.composite
def answer_st(draw):
    """``(text, items)``: a complete answer in one of the ways models wrap their JSON."""
    items = draw(st.lists(item_st(), max_size=6))
    ascii_only = draw(st.booleans())
    body = draw(st.sampled_from(["list", "wrapper", "wrapper-after-meta"]))
    value = {"list": items, "wrapper": {"detections": items},
             "wrapper-after-meta": {"meta": {"k": [], "n": 1}, "detections": items}}[body]
    if not items and body != "list":
        value = items
    text = json.dumps(value, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, 2])))
    wrap = draw(st.sampled_from(["bare", "fence", "fence-prose", "prose", "empty-fence-first",
                                 "example-first"]))
    text = {"bare": text,
            "fence": f"```json\n{text}\n```",
            "fence-prose": f"Here are the objects [as asked]:\n```json\n{text}\n```\nDone.",
            "prose": f"Sure! {text} Hope this helps.",
            "empty-fence-first": f"```json\n[]\n```\nActually:\n```json\n{text}\n```",
            "example-first": f'Each item looks like {{"label": "name"}}.\n{text}'}[wrap]
    return text, items


IMAGE_WH = st.tuples(st.integers(1, 400), st.integers(1, 300))


# -- properties ----------------------------------------------------------------------------------------

def _check_outputs(d: Detections, image_wh: tuple[int, int]) -> None:
    """to_coco and draw_overlay accept whatever the parser returned, and the files can be written."""
    for label in d.labels:
        label.encode("utf-8")  # no lone surrogate survives parsing
    coco = to_coco([("img.jpg", image_wh, d)])
    text = json.dumps(coco, ensure_ascii=False)
    assert json.loads(text.encode("utf-8"))["images"][0]["width"] == image_wh[0]
    w, h = image_wh
    image = np.full((h, w, 3), 77, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingGlyphWarning)
        out = draw_overlay(image, d)
    assert out.shape == image.shape and out is not image and (image == 77).all()


@FUZZ
@given(answer=answer_st(), image_wh=IMAGE_WH)
def test_a_complete_answer_keeps_every_valid_item_and_exports(answer, image_wh):
    text, items = answer
    d = parse_response(text, image_wh)
    assert len(d) == sum(is_valid(it) for it in items)
    _check_outputs(d, image_wh)


@FUZZ
@given(items=st.lists(item_st(), min_size=1, max_size=5), cut=st.floats(0, 1), image_wh=IMAGE_WH,
       fenced=st.booleans())
def test_a_truncated_answer_keeps_exactly_its_complete_valid_items(items, cut, image_wh, fenced):
    parts = [json.dumps(it) for it in items]
    text = "[" + ", ".join(parts) + "]"
    offset = int(cut * len(text))
    ends, pos = [], 1
    for p in parts:
        pos += len(p)
        ends.append(pos)
        pos += 2
    complete = [it for it, end in zip(items, ends) if end <= offset]
    answer = ("```json\n" if fenced else "") + text[:offset]
    try:
        d = parse_response(answer, image_wh)
    except VisionkitError:
        assert offset < 2 or not any(isinstance(it, (dict, list)) for it in items[:1])
        return
    if offset < len(text):
        assert len(d) == sum(is_valid(it) for it in complete)
    _check_outputs(d, image_wh)


JSONISH = st.lists(st.sampled_from(list('[]{}",:0123456789.-e \n`\\u') + [
    "null", "true", "false", '"box_2d"', '"label"', '"mask"', "```json", "\\ud83d", "<start_of_mask>"]),
    max_size=60).map("".join)


@FUZZ
@given(text=st.one_of(JSONISH, st.text(st.characters(codec=None), max_size=60)), image_wh=IMAGE_WH)
def test_any_text_gives_detections_or_a_visionkit_error(text, image_wh):
    try:
        d = parse_response(text, image_wh)
    except VisionkitError:
        return
    _check_outputs(d, image_wh)


json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                    inner, max_size=3),
                          max_leaves=8)


@FUZZ
@given(candidates=json_value, content=json_value, parts=json_value, finish=json_value,
       feedback=json_value, shape=st.integers(0, 3))
def test_any_response_shape_gives_detections_or_a_visionkit_error(candidates, content, parts, finish,
                                                                  feedback, shape):
    response = [
        {"candidates": candidates},
        {"candidates": [{"content": content, "finishReason": finish}]},
        {"candidates": [{"content": {"parts": parts}, "finishReason": finish}]},
        {"promptFeedback": feedback, "candidates": [{"content": {"parts": [{"text": "[]"}]}}]},
    ][shape]
    try:
        d = parse_response(response, (64, 48))
    except VisionkitError:
        return
    _check_outputs(d, (64, 48))


@FUZZ
@given(labels=st.lists(st.one_of(st.sampled_from(TRICKY_LABELS), st.text(st.characters(codec=None),
                                                                          max_size=30)), max_size=8),
       image_wh=IMAGE_WH, data=st.data())
def test_draw_overlay_draws_any_label(labels, image_wh, data):
    w, h = image_wh
    boxes = []
    for _ in labels:
        x0, x1 = sorted(data.draw(st.tuples(st.floats(0, w), st.floats(0, w))))
        y0, y1 = sorted(data.draw(st.tuples(st.floats(0, h), st.floats(0, h))))
        boxes.append([x0, y0, x1, y1])
    d = Detections(np.array(boxes, dtype=np.float64).reshape(-1, 4), labels, image_wh)
    image = np.zeros((h, w, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingGlyphWarning)
        out = draw_overlay(image, d)
    assert out.shape == image.shape


REPLAYS = sorted((FIXTURES / "replay").glob("*.txt"))


@FUZZ
@given(which=st.integers(0, len(REPLAYS) - 1), data=st.data())
def test_mutated_recorded_answers_give_detections_or_a_visionkit_error(which, data):
    """Deletions, insertions and cuts of the fixture answers (every mask form, seg tokens, fences)."""
    text = REPLAYS[which].read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "cut"]))
        if op == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 40)):]
        elif op == "insert":
            text = text[:at] + data.draw(st.sampled_from(['"', "[", "]", "{", "}", ",", "\\ud83d", "\n",
                                                          "```", "null", "\ud800"])) + text[at:]
        else:
            text = text[:at]
    try:
        d = parse_response(text, (320, 240))
    except VisionkitError:
        return
    _check_outputs(d, (320, 240))
