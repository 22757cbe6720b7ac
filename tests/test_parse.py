"""parse_response: wrapping, truncation, bad items, box values, points, masks, warnings."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import disk, png_b64

from visionkit import BlockedError, Detections, EmptyResponseError, ParseError, parse_response

ITEMS = [
    {"box_2d": [100, 200, 500, 600], "label": "cup"},
    {"box_2d": [0, 0, 1000, 1000], "label": "table"},
]
BODY = json.dumps(ITEMS)


def labels(d: Detections) -> list[str]:
    return list(d.labels)


@pytest.mark.parametrize("text", [
    BODY,
    f"```json\n{BODY}\n```",
    f"```JSON\n{BODY}\n```",
    f"```\n{BODY}\n```",
    f"    ```json\n    {BODY}\n    ```",
    f"```json {BODY}```",
    f"Here are the boxes [as asked]:\n```json\n{BODY}\n```\nLet me know if you need more.",
    f"Sure! {BODY} Hope this helps {{not json}}.",
    json.dumps({"detections": ITEMS}),
    json.dumps({"boxes": ITEMS}),
    f"```json\n{json.dumps({'results': ITEMS}, indent=2)}\n```",
    json.dumps(ITEMS, indent=4),
], ids=["bare", "fence-json", "fence-JSON", "fence-bare", "fence-indented", "fence-inline", "prose-fenced",
        "prose-unfenced", "wrapper-detections", "wrapper-boxes", "wrapper-fenced", "pretty"])
def test_wrappings_give_the_same_detections(text):
    d = parse_response(text, (640, 480))
    assert labels(d) == ["cup", "table"]
    np.testing.assert_allclose(d.xyxy, [[128, 48, 384, 240], [0, 0, 640, 480]])
    assert d.warnings == ()


def test_single_object_answer():
    d = parse_response(json.dumps(ITEMS[0]), (1000, 1000))
    assert labels(d) == ["cup"]
    np.testing.assert_allclose(d.xyxy, [[200, 100, 600, 500]])


@pytest.mark.parametrize("text, n", [
    ("[]", 0), ("```json\n[]\n```", 0), ('{"detections": []}', 0), ("{}", 0),
])
def test_empty_answers_are_empty_without_warnings(text, n):
    d = parse_response(text, (10, 20))
    assert len(d) == n and d.xyxy.shape == (0, 4) and d.warnings == ()


@pytest.mark.parametrize("text", ["", "I cannot help with that.", "no boxes here: (1, 2)"])
def test_no_json_raises_a_clear_error(text):
    with pytest.raises(ParseError, match="no JSON list or object"):
        parse_response(text, (10, 10))


def test_object_without_a_list_raises():
    with pytest.raises(ParseError, match="no list of detections"):
        parse_response('{"answer": 42}', (10, 10))


def _truncated(n_complete: int, cut_inside: str) -> str:
    items = [{"box_2d": [10 * i, 10, 10 * i + 50, 90], "label": f"thing ] }} {i}"} for i in range(n_complete)]
    body = json.dumps(items)[:-1]
    return f"```json\n{body}, {cut_inside}"


@pytest.mark.parametrize("cut", [
    '{"box_2d": [1, 2, 3',
    '{"box_2d": [100, 100, 200, 200], "label": "half a lab',
    '{"box_2d": [100, 100, 200, 200], "mask": "data:image/png;base64,iVBORw0KGgo',
    '{"box_2d": [100, 100, 200, 200], "label": "x" ',
    '{',
])
def test_truncation_keeps_every_complete_item(cut):
    d = parse_response(_truncated(3, cut), (100, 100))
    # Labels contain ']' and '}' characters: the salvage must not take them for structure.
    assert labels(d) == ["thing ] } 0", "thing ] } 1", "thing ] } 2"]
    assert any("cut off after 3 complete items; 1 incomplete item dropped" in str(w) for w in d.warnings)


def test_truncation_between_items_drops_nothing_but_says_so():
    text = json.dumps(ITEMS)[:-1] + ",\n"
    d = parse_response(text, (100, 100))
    assert len(d) == 2
    assert any("0 incomplete items dropped" in str(w) for w in d.warnings)


def test_truncation_inside_a_wrapper():
    text = json.dumps({"detections": ITEMS})[:-3]
    d = parse_response(text, (100, 100))
    assert labels(d) == ["cup"]
    assert any("1 incomplete item dropped" in str(w) for w in d.warnings)


def test_truncated_full_response_keeps_items_and_notes_max_tokens():
    text = json.dumps(ITEMS)[:-10]
    resp = {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "MAX_TOKENS"}]}
    d = parse_response(resp, (100, 100))
    assert labels(d) == ["cup"]
    assert str(d.warnings[0]).startswith("answer: finishReason MAX_TOKENS")


def test_one_malformed_item_is_skipped_and_the_rest_kept():
    text = '[{"box_2d": [1, 2, 30, 40], "label": "a"}, {"box_2d": [1, 2, 3 4], "label": "b"}, ' \
           '{"box_2d": [5, 6, 70, 80], "label": "c"}]'
    d = parse_response(text, (100, 100))
    assert labels(d) == ["a", "c"]
    assert [w.index for w in d.warnings] == [1]
    assert "not valid JSON" in d.warnings[0].reason


@pytest.mark.parametrize("item, expected_xyxy, warning", [
    ({"box_2d": ["100", "200", "500", "600"], "label": "s"}, [200, 100, 600, 500], None),
    ({"box_2d": [100.5, 200.25, 500, 600], "label": "f"}, [200.25, 100.5, 600, 500], None),
    ({"box_2d": [500, 600, 100, 200], "label": "sw"}, [200, 100, 600, 500], "swapped"),
    ({"box_2d": [-20, 200, 1200, 600], "label": "clip"}, [200, 0, 600, 1000], "clipped"),
    ({"box_2d": [0, 0, 1000, 1000], "label": "edge"}, [0, 0, 1000, 1000], None),
])
def test_box_values(item, expected_xyxy, warning):
    d = parse_response(json.dumps([item]), (1000, 1000))
    np.testing.assert_allclose(d.xyxy, [expected_xyxy])
    if warning is None:
        assert d.warnings == ()
    else:
        assert warning in d.warnings[0].reason and d.warnings[0].field == "box_2d"


@pytest.mark.parametrize("item, reason", [
    ({"box_2d": [100, 100, 100, 500], "label": "flat"}, "zero area"),
    ({"box_2d": [1, 2, 3], "label": "short"}, "expected [ymin, xmin, ymax, xmax]"),
    ({"box_2d": [1, "two", 3, 4], "label": "word"}, "expected 4 numbers"),
    ({"box_2d": [1, None, 3, 4], "label": "null"}, "expected 4 numbers"),
    ({"box_2d": "1, 2, 3, 4", "label": "str"}, "expected [ymin, xmin, ymax, xmax]"),
    ({"box_2d": [1, True, 3, 4], "label": "bool"}, "expected 4 numbers"),
    ({"label": "nobox"}, "neither 'box_2d' nor 'point'"),
    (["not", "an", "object"], "expected an object"),
    (7, "expected an object"),
])
def test_bad_items_are_skipped_with_their_index(item, reason):
    good = {"box_2d": [1, 1, 50, 50], "label": "good"}
    d = parse_response(json.dumps([good, item, good]), (100, 100))
    assert labels(d) == ["good", "good"]
    assert len(d.warnings) == 1 and d.warnings[0].index == 1 and reason in d.warnings[0].reason


def test_missing_label_uses_default_and_warns():
    d = parse_response('[{"box_2d": [1, 1, 50, 50]}]', (100, 100), default_label="thing")
    assert labels(d) == ["thing"] and d.warnings[0].field == "label"


def test_scores_are_kept_and_bad_scores_reported():
    items = [{"box_2d": [1, 1, 50, 50], "label": "a", "score": 0.9},
             {"box_2d": [1, 1, 50, 50], "label": "b", "confidence": "0.25"},
             {"box_2d": [1, 1, 50, 50], "label": "c", "score": 7}]
    d = parse_response(json.dumps(items), (100, 100))
    np.testing.assert_allclose(d.scores, [0.9, 0.25, np.nan])
    assert [w.index for w in d.warnings] == [2]


def test_points_are_y_first():
    items = [{"point": [250, 750], "label": "p"}, {"box_2d": [0, 0, 500, 500], "label": "b"}]
    d = parse_response(json.dumps(items), (400, 200))
    np.testing.assert_allclose(d.points[0], [300, 50])
    assert np.isnan(d.points[1]).all()
    np.testing.assert_allclose(d.xyxy[0], [300, 50, 300, 50])


def test_unicode_labels_survive():
    d = parse_response('[{"box_2d": [1, 1, 50, 50], "label": "寿司 🍣"}]', (100, 100))
    assert labels(d) == ["寿司 🍣"]


# -- full responses ------------------------------------------------------------------------------------

def _response(parts, **cand):
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, **cand}],
            "usageMetadata": {"totalTokenCount": 1}}


def test_full_response_skips_thought_parts_and_accepts_json_text():
    resp = _response([{"text": "[{\"box_2d\": [9, 9, 9, 9]}] thinking", "thought": True},
                      {"text": "```json\n" + BODY[:40]}, {"text": BODY[40:] + "\n```"}], finishReason="STOP")
    for answer in (resp, json.dumps(resp), json.dumps(resp).encode()):
        d = parse_response(answer, (640, 480))
        assert labels(d) == ["cup", "table"] and d.warnings == ()


@pytest.mark.parametrize("resp, error", [
    ({"promptFeedback": {"blockReason": "SAFETY"}}, BlockedError),
    (_response([{"text": "[]"}], finishReason="RECITATION"), BlockedError),
    ({"candidates": []}, EmptyResponseError),
    (_response([], finishReason="MAX_TOKENS"), EmptyResponseError),
])
def test_unusable_responses_raise_typed_errors(resp, error):
    with pytest.raises(error):
        parse_response(resp, (10, 10))


# -- masks ---------------------------------------------------------------------------------------------

def _seg(mask, box=(100, 200, 500, 600)):
    return json.dumps([{"box_2d": list(box), "mask": mask, "label": "m"}])


def test_png_mask_is_resized_to_the_truncated_box_and_thresholded():
    prob = np.zeros((256, 256), np.uint8)
    prob[:, :128] = 200  # left half in
    prob[:, 128:] = 127  # exactly the threshold: out
    d = parse_response(_seg(png_b64(prob)), (1000, 800))
    crop = d.masks[0]
    assert (crop.x0, crop.y0, crop.shape) == (200, 80, (320, 400))
    assert crop.data[:, :199].all() and not crop.data[:, 201:].any()


@pytest.mark.parametrize("convert", [
    lambda m: png_b64(m, prefix=False),
    lambda m: png_b64(m).replace("base64,", "base64,\n"),
    lambda m: png_b64(cv2.cvtColor(m, cv2.COLOR_GRAY2BGR)),
    lambda m: png_b64(np.dstack([np.full_like(m, 255)] * 3 + [m])),  # white on transparency
    lambda m: png_b64(np.dstack([m] * 3 + [np.full_like(m, 255)])),  # opaque RGBA
    lambda m: png_b64(m.astype(np.uint16) * 257),
], ids=["no-prefix", "wrapped-lines", "rgb", "rgba-alpha", "rgba-opaque", "16-bit"])
def test_png_modes_decode_to_the_same_mask(convert):
    m = disk(64, 64)
    ref = parse_response(_seg(png_b64(m)), (500, 500)).mask(0)
    got = parse_response(_seg(convert(m)), (500, 500)).mask(0)
    assert ref.sum() > 1000 and np.array_equal(ref, got)


def test_palette_png_decodes():
    from io import BytesIO

    from PIL import Image
    img = Image.fromarray(disk(64, 64)).convert("P")
    buf = BytesIO()
    img.save(buf, format="PNG")
    import base64
    d = parse_response(_seg(base64.b64encode(buf.getvalue()).decode()), (500, 500))
    assert d.mask_area(0) > 1000


def _png_header(width: int, height: int) -> str:
    import base64
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()


@pytest.mark.parametrize("mask, reason", [
    (_png_header(5000, 10), "over the 4096x4096 limit"),
    (_png_header(100, 100), "ends before its IEND chunk"),
    ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAYYAAAGGAgMAAABo696+...", "not valid base64"),
    ("data:image/png;base64,", "empty"),
    ("data:image/png;base64,/9j/4AAQSkZJRg==", "not a PNG"),
    ("<start_of_mask><seg_4><seg_20><seg_4>", "3 tokens"),
    ("<end_of_mask>", "no public decoder"),
    ("gimme_mask_for_this", "not a PNG"),
    ([[1, 2], [3, 4]], "at least 3 are needed"),
    ([], "empty list"),
    ({"counts": "x"}, "expected a base64 PNG string"),
    ([True] * 10, "not a square grid"),
])
def test_undecodable_masks_keep_the_box(mask, reason):
    good = {"box_2d": [0, 0, 500, 500], "mask": png_b64(disk(32, 32)), "label": "good"}
    bad = {"box_2d": [100, 200, 500, 600], "mask": mask, "label": "bad"}
    d = parse_response(json.dumps([good, bad]), (400, 300))
    assert labels(d) == ["good", "bad"]
    assert d.has_mask(0) and not d.has_mask(1)
    (w,) = d.warnings
    assert w.index == 1 and w.field == "mask" and reason in w.reason and "box kept" in w.reason


def test_bare_seg_tokens_outside_a_string_are_read():
    text = '[{"box_2d": [100, 200, 500, 600], "mask": <start_of_mask><seg_35><seg_65>, "label": "x"}]'
    d = parse_response(text, (100, 100))
    assert labels(d) == ["x"] and not d.has_mask(0) and "2 tokens" in d.warnings[0].reason


def test_masks_false_ignores_masks():
    d = parse_response(_seg("garbage"), (100, 100), masks=False)
    assert d.masks is None and d.warnings == ()


@pytest.mark.parametrize("order", ["yx", "xy"])
def test_polygon_mask_axis_order_is_decided_by_the_box(order):
    # A tall thin box: only one reading of the points fits inside it.
    box = [100, 400, 900, 500]  # ymin, xmin, ymax, xmax
    yx = [[100, 400], [100, 500], [900, 500], [900, 400]]
    pts = yx if order == "yx" else [[x, y] for y, x in yx]
    d = parse_response(json.dumps([{"box_2d": box, "mask": pts, "label": "p"}]), (1000, 1000))
    crop = d.masks[0]
    assert crop.xyxy == (400, 100, 500, 900)
    assert crop.data.all()


def test_polygon_without_a_box_match_defaults_to_y_first():
    square = [[0, 0], [0, 200], [100, 200], [100, 0]]  # y, x
    item = {"box_2d": [0, 0, 1000, 1000], "mask": square, "label": "p"}
    d = parse_response(json.dumps([item]), (1000, 1000))
    assert d.masks[0].xyxy == (0, 0, 200, 100)


def test_flat_polygon_and_boolean_grid():
    flat = [0, 0, 0, 500, 500, 500, 500, 0]
    grid = [[True, False], [False, True]]
    items = [{"box_2d": [0, 0, 500, 500], "mask": flat, "label": "flat"},
             {"box_2d": [0, 0, 500, 500], "mask": grid, "label": "grid"}]
    d = parse_response(json.dumps(items), (100, 100))
    assert d.mask_area(0) == 50 * 50
    g = d.masks[1].data
    assert g.shape == (50, 50) and g[:20, :20].all() and not g[:20, 30:].any()


@pytest.mark.parametrize("threshold, expected", [(0, 50 * 50), (127, 50 * 50 // 2), (254, 0)])
def test_threshold_parameter(threshold, expected):
    prob = np.zeros((50, 50), np.uint8)
    prob[:25] = 200
    prob[25:] = 100
    d = parse_response(_seg(png_b64(prob), box=(0, 0, 500, 500)), (100, 100), threshold=threshold)
    assert d.mask_area(0) == expected if expected else not d.has_mask(0) or d.mask_area(0) == 0


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (1, 2, 3), None])
def test_bad_image_size_is_refused(size):
    with pytest.raises(ValueError, match="image_size"):
        parse_response("[]", size)


# -- mask tokens inside and outside strings ------------------------------------------------------------

def test_seg_tokens_inside_a_string_are_left_alone():
    items = [{"box_2d": [100, 100, 300, 400], "label": "a",
              "mask": "<start_of_mask><seg_1><seg_2><end_of_mask>"},
             {"box_2d": [1, 2, 300, 400], "label": "b"}]
    d = parse_response(json.dumps(items), (100, 100))
    assert labels(d) == ["a", "b"] and not d.has_mask(0)
    (w,) = d.warnings
    assert w.index == 0 and w.field == "mask" and "no public decoder" in w.reason
    assert not any("cut off" in str(w) for w in d.warnings)


def test_seg_tokens_in_a_label_are_kept_verbatim():
    label = "odd label: <start_of_mask><seg_3>"
    d = parse_response(json.dumps([{"box_2d": [1, 2, 300, 400], "label": label}]), (100, 100))
    assert labels(d) == [label] and d.warnings == ()


def test_bare_seg_tokens_with_end_token_and_lopsided_quote_are_read():
    text = ('[{"box_2d": [100, 200, 500, 600], "mask": <start_of_mask><seg_35> <seg_65><end_of_mask>", '
            '"label": "x: <start_of_mask>"}, {"box_2d": [1, 2, 300, 400], "label": "y"}]')
    d = parse_response(text, (100, 100))
    assert labels(d) == ["x: <start_of_mask>", "y"] and not d.has_mask(0)
    (w,) = d.warnings
    assert w.index == 0 and "2 tokens" in w.reason


# -- nothing but visionkit errors escapes the parser ----------------------------------------------------

GOOD = {"box_2d": [1, 1, 50, 50], "label": "good"}
HUGE = "9" * 5000  # over Python's int digit limit: json.loads raises ValueError
BIG = "9" * 400  # fits an int, not a float: float() raises OverflowError


def _with_raw(value: str, field: str = "box_2d") -> str:
    """[GOOD, item with `value` spliced into `field`, GOOD] as JSON text."""
    bad = json.dumps({**GOOD, "label": "bad", field: "@@"}).replace('"@@"', value)
    return f"[{json.dumps(GOOD)}, {bad}, {json.dumps(GOOD)}]"


def test_an_integer_over_the_digit_limit_skips_only_its_item():
    d = parse_response(_with_raw(f"[1, 2, 3, {HUGE}]"), (100, 100))
    assert labels(d) == ["good", "good"]
    (w,) = d.warnings
    assert w.index == 1 and "not valid JSON" in w.reason and "4300 digits" in w.reason


def test_an_integer_over_the_digit_limit_in_a_truncated_answer():
    d = parse_response(_with_raw(f"[1, 2, 3, {HUGE}]")[:-1] + ', {"box_2d": [1, 2', (100, 100))
    assert labels(d) == ["good", "good"]
    assert [w.index for w in d.warnings] == [1, 3]
    assert "4300 digits" in d.warnings[0].reason and "cut off after 3 complete items" in d.warnings[1].reason


def test_an_integer_over_the_digit_limit_after_prose():
    d = parse_response("I found [3] objects: " + _with_raw(f"[1, 2, 3, {HUGE}]"), (100, 100))
    assert labels(d) == ["good", "good"] and [w.index for w in d.warnings] == [1]


def test_an_integer_over_the_digit_limit_in_a_single_object_raises_parse_error():
    with pytest.raises(ParseError, match="malformed"):
        parse_response(f'{{"box_2d": [1, 2, 3, {HUGE}], "label": "x"}}', (100, 100))


def test_deep_nesting_is_not_a_recursion_error():
    d = parse_response("[" + json.dumps(GOOD) + ", " + "[" * 100000 + "]" * 100000 + "]", (100, 100))
    assert labels(d) == ["good"] and d.warnings[0].index == 1


def test_a_stray_closing_brace_in_the_list_is_skipped_not_a_hang():
    d = parse_response(f"[{json.dumps(GOOD)}, }}, {json.dumps(GOOD)}]", (100, 100))
    assert labels(d) == ["good", "good"] and [w.index for w in d.warnings] == [1]


@pytest.mark.parametrize("field, value, reason", [
    ("box_2d", f"[1, 2, {BIG}, 4]", "expected 4 numbers"),
    ("point", f"[{BIG}, 4]", "expected [y, x] numbers"),
    ("score", BIG, "is not a number in [0, 1]"),
])
def test_an_integer_too_large_for_a_float_is_a_bad_value(field, value, reason):
    d = parse_response(_with_raw(value, field), (100, 100))
    # A bad box skips the item; a bad point or score is ignored and the item keeps its box.
    assert labels(d) == (["good", "good"] if field == "box_2d" else ["good", "bad", "good"])
    (w,) = d.warnings
    assert w.index == 1 and w.field == field and reason in w.reason


@pytest.mark.parametrize("polygon, reason", [
    (f"[[100, 200], [300, 200], [300, {BIG}]]", "too large"),
    (f"[100, 200, 300, 200, 300, {BIG}]", "too large"),
    ("[[100, 200], [300, 200], [NaN, 400]]", "NaN or infinite"),
    ("[[100, 200], [300, 200], [300, Infinity]]", "NaN or infinite"),
    ("[[[100, 200], [300, 200], [300, -Infinity]]]", "NaN or infinite"),
])
def test_bad_polygon_numbers_drop_only_the_mask(polygon, reason):
    d = parse_response(_with_raw(polygon, "mask"), (100, 100))
    assert labels(d) == ["good", "bad", "good"] and d.masks is None
    (w,) = d.warnings
    assert w.index == 1 and w.field == "mask" and reason in w.reason and "box kept" in w.reason


def test_polygon_to_crop_refuses_non_finite_points():
    from visionkit.core.masks import polygon_to_crop
    from visionkit.errors import MaskDecodeError
    with pytest.raises(MaskDecodeError, match="NaN or infinite"):
        polygon_to_crop([np.array([[1.0, 1.0], [5.0, 1.0], [np.nan, 5.0]])], (10, 10))


# -- where the JSON starts -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    'I found [2] objects: [{"box_2d": [1, 2, 300, 400], "label": "a"}]',
    'Objects [1, 2] and ["x"]: [{"box_2d": [1, 2, 300, 400], "label": "a"}] done [3].',
    'Format {"note": 1} then {"detections": [{"box_2d": [1, 2, 300, 400], "label": "a"}]}',
    'I found [2] objects: [{"box_2d": [1, 2, 300, 400], "label": "a"}, {"box_2d": [1, 2',
])
def test_brackets_in_prose_before_the_json(text):
    d = parse_response(text, (100, 100))
    assert labels(d) == ["a"]
    assert not any("expected an object" in w.reason for w in d.warnings)


def test_a_broken_response_body_is_a_parse_error_not_model_text():
    resp = json.dumps(_response([{"text": BODY}], finishReason="STOP"))
    with pytest.raises(ParseError, match="looks like a generateContent response body but is not valid JSON"):
        parse_response(resp[:-5], (100, 100))
    with pytest.raises(ParseError, match="generateContent"):
        parse_response('{"promptFeedback": {"blockReason": "SAFETY"}, "x": ' + HUGE + "}", (100, 100))


# -- dead attributes are gone --------------------------------------------------------------------------

def test_parse_error_carries_only_a_snippet():
    err = ParseError("bad", snippet="abc")
    assert err.snippet == "abc" and not hasattr(err, "index")
    with pytest.raises(TypeError):
        ParseError("bad", index=1)


def test_item_list_has_no_truncated_flag():
    from visionkit.answers.answer_json import find_items
    found = find_items(json.dumps(ITEMS)[:-3])
    assert not hasattr(found, "truncated")


@pytest.mark.parametrize("image_wh", [(2007, 2011), (4093, 3), (1001, 997)])
def test_full_image_boxes_and_points_stay_inside_the_image(image_wh):
    items = [{"box_2d": [0, 0, 1000, 1000], "label": "all"}, {"point": [1000, 1000], "label": "corner"}]
    d = parse_response(json.dumps(items), image_wh)
    width, height = image_wh
    assert len(d) == 2 and (d.xyxy[:, [0, 2]] <= width).all() and (d.xyxy[:, [1, 3]] <= height).all()
    np.testing.assert_array_equal(d.points[1], d.xyxy[1, :2])


def _damaged_png(how: str) -> str:
    import base64
    ok, buf = cv2.imencode(".png", disk(40, 40))
    raw = bytearray(buf.tobytes())
    if how == "cut":
        raw = raw[: len(raw) // 2]
    else:  # one flipped byte inside the image data
        raw[raw.find(b"IDAT") + 6] ^= 0xFF
    return "data:image/png;base64," + base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("how, reason", [("cut", "ends before its IEND chunk"),
                                         ("flipped", "CRC of its 'IDAT' chunk does not match")])
def test_a_damaged_png_is_refused_before_libpng_prints_to_stderr(capfd, how, reason):
    good = {"box_2d": [0, 0, 500, 500], "mask": png_b64(disk(32, 32)), "label": "good"}
    bad = {"box_2d": [100, 200, 500, 600], "mask": _damaged_png(how), "label": "bad"}
    d = parse_response(json.dumps([good, bad]), (400, 300))
    assert d.has_mask(0) and not d.has_mask(1)
    (w,) = d.warnings
    assert w.index == 1 and reason in w.reason
    assert "libpng" not in capfd.readouterr().err  # libpng writes to fd 2 itself; capfd sees it
