"""Issue 11's fuzz findings in the parser, one table per finding. Each row failed before the fix.

#2 lone surrogates, #3 typed errors, #4-#8 silent losses, #9 linear item-array finding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import png_b64
from opcount import growth

from visionkit import InputError, ParseError, parse_response, to_coco, write_json_atomic
from visionkit.answers.answer_json import find_items
from visionkit.answers.response import load_response
from visionkit.errors import VisionkitError

ITEM = {"box_2d": [100, 100, 500, 500], "label": "cup"}
IT = json.dumps(ITEM)


def labels(d) -> list[str]:
    return list(d.labels)


def reasons(d) -> list[str]:
    return [str(w) for w in d.warnings]


# -- #2 lone UTF-16 surrogates -------------------------------------------------------------------------

@pytest.mark.parametrize("answer, label", [
    ('[{"box_2d": [1, 1, 9, 9], "label": "cup \\ud83d"}]', "cup \ufffd"),          # high half alone
    ('[{"box_2d": [1, 1, 9, 9], "label": "\\udE00 cup"}]', "\ufffd cup"),           # low half alone
    ('[{"box_2d": [1, 1, 9, 9], "label": "a \\ud83d\\ude00 b"}]', "a \U0001f600 b"),  # a pair is kept
    ('[{"box_2d": [1, 1, 9, 9], "label": "a \\\\ud83d"}]', "a \\ud83d"),             # an escaped backslash
    ('[{"box_2d": [1, 1, 9, 9], "label": "cup \ud83d"}]', "cup \ufffd"),  # raw code point in str
    ({"candidates": [{"content": {"parts": [{"text": '[{"box_2d": [1, 1, 9, 9], "label": "c\ud83d"}]'}]}}]},
     "c\ufffd"),
], ids=["high", "low", "pair", "escaped-backslash", "raw-code-point", "response-dict"])
def test_lone_surrogates_are_repaired_at_parse_time_with_a_warning(answer, label, tmp_path):
    d = parse_response(answer, (64, 48))
    assert labels(d) == [label]
    repaired = "\ufffd" in label
    assert any("surrogate" in r for r in reasons(d)) == repaired
    # what used to raise UnicodeEncodeError: the COCO file and the overlay
    path = write_json_atomic(tmp_path / "a.json", to_coco([("a.jpg", (64, 48), d)]))
    assert json.loads(path.read_text(encoding="utf-8"))["categories"][0]["name"] == label
    from visionkit import draw_overlay

    assert draw_overlay(np.zeros((48, 64, 3), np.uint8), d).shape == (48, 64, 3)


# -- #3 every failure is a VisionkitError naming what was expected -------------------------------------

def _resp(candidate: dict) -> dict:
    return {"candidates": [candidate]}


@pytest.mark.parametrize("call, error, expected", [
    (lambda: parse_response("[]", (float("inf"), 100)), InputError, "whole numbers of pixels"),
    (lambda: parse_response("[]", (float("nan"), 100)), InputError, "whole numbers of pixels"),
    (lambda: parse_response("[]", (10**20, 100)), InputError, "up to 2147483647"),
    (lambda: parse_response(json.dumps([{**ITEM, "mask": [[1, 1], [1, 5], [5, 5]]}]), (10**20, 100)),
     InputError, "up to 2147483647"),
    (lambda: parse_response("[]", (10.5, 100)), InputError, "whole numbers"),
    (lambda: parse_response("[]", (10, 100, 3)), InputError, "(width, height)"),
    (lambda: parse_response("[]", (True, 100)), InputError, "(width, height)"),
    (lambda: parse_response(_resp({"finishReason": ["STOP"], "content": {"parts": [{"text": "[]"}]}}),
                            (10, 10)), ParseError, "finishReason is a JSON list; expected a string"),
    (lambda: parse_response(_resp({"finishReason": {"a": 1}, "content": {"parts": [{"text": "[]"}]}}),
                            (10, 10)), ParseError, "finishReason is a JSON object; expected a string"),
    (lambda: parse_response(_resp({"content": {"parts": 5}}), (10, 10)), ParseError,
     "parts is a JSON number; expected a list of parts"),
    (lambda: parse_response(_resp({"content": [1]}), (10, 10)), ParseError, "content is a JSON list"),
    (lambda: parse_response({"candidates": {"a": 1}}, (10, 10)), ParseError, "candidates is a JSON object"),
    (lambda: parse_response({"promptFeedback": [1], "candidates": []}, (10, 10)), ParseError,
     "promptFeedback is a JSON list"),
    (lambda: parse_response("[]", (10, 10), threshold=None), InputError, "threshold must be a number"),
    (lambda: parse_response("[]", (10, 10), threshold="127"), InputError, "threshold must be a number"),
    (lambda: parse_response("[]", (10, 10), threshold=float("nan")), InputError, "threshold"),
    (lambda: load_response("[" * 200_000), ParseError, "nested too deeply"),
    (lambda: load_response('{"candidates": ' + "[" * 200_000), ParseError, "nested too deeply"),
    (lambda: parse_response('{"candidates": ' + "[" * 200_000, (10, 10)), ParseError, "nested too deeply"),
], ids=["inf", "nan", "1e20", "1e20-polygon", "fraction", "three-values", "bool", "finish-list",
        "finish-dict", "parts-int", "content-list", "candidates-dict", "feedback-list", "threshold-None",
        "threshold-str", "threshold-nan", "load-deep", "load-deep-response", "parse-deep-response"])
def test_bad_values_raise_typed_errors_naming_what_was_expected(call, error, expected):
    with pytest.raises(error, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
        call()
    assert isinstance(info.value, VisionkitError)


def test_a_float_threshold_and_integral_float_sizes_still_work():
    d = parse_response(json.dumps([ITEM]), (64.0, np.int64(48)), threshold=127.5)
    assert d.image_wh == (64, 48) and labels(d) == ["cup"]


# -- #4 an unfenced list that starts with a literal ----------------------------------------------------

@pytest.mark.parametrize("first, kind", [("null", "null"), ("true", "a boolean"), ("false", "a boolean")])
def test_an_unfenced_list_starting_with_a_literal_keeps_every_item(first, kind):
    d = parse_response(f"Here you go: [{first}, {IT}, {IT}] done.", (100, 100))
    assert labels(d) == ["cup", "cup"]
    assert reasons(d) == [f"item 0: item is {kind}, expected an object; skipped"]


@pytest.mark.parametrize("first", ["null", "true", "1"])
def test_a_cut_off_list_starting_with_a_scalar_keeps_its_complete_items(first):
    bad = json.dumps({"box_2d": "0,0,10,10"})
    d = parse_response(f"[{first}, {bad}, {IT}, {IT}, {{\"box_2d\": [1, ", (100, 100))
    assert labels(d) == ["cup", "cup"] and [w.index for w in d.warnings] == [0, 1, 4]


# -- #5 ``` inside a label -----------------------------------------------------------------------------

def test_a_fence_inside_a_label_does_not_end_the_fence():
    items = [{"box_2d": [1, 1, 9, 9], "label": "code ``` block"}, ITEM]
    d = parse_response(f"```json\n{json.dumps(items)}\n```\nDone.", (100, 100))
    assert labels(d) == ["code ``` block", "cup"] and d.warnings == ()


def test_a_fence_inside_a_label_of_a_cut_off_answer_keeps_the_complete_items():
    items = [{"box_2d": [1, 1, 9, 9], "label": "code ``` block"}, ITEM]
    d = parse_response(f"```json\n{json.dumps(items)[:-1]}, {{\"box_2d\": [1, ", (100, 100))
    assert labels(d) == ["code ``` block", "cup"]


@pytest.mark.parametrize("fenced", [False, True])
def test_a_fenced_snippet_inside_a_label_is_not_the_answer(fenced):
    items = [{"box_2d": [1, 1, 9, 9], "label": "see ```[1]``` or ```{}```"}, ITEM]
    text = f"```json\n{json.dumps(items)}\n```" if fenced else json.dumps(items)
    d = parse_response(text, (100, 100))
    assert labels(d) == ["see ```[1]``` or ```{}```", "cup"]


# -- #6 the candidate that holds detections wins --------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (f"```json\n[]\n```\nActually:\n```json\n[{IT}, {IT}]\n```", ["cup", "cup"]),
    (f'Each item looks like {{"label": "name"}}. [{IT}, {IT}]', ["cup", "cup"]),
    (f'Format: {{"box_2d": [ymin, xmin, ymax, xmax]}}.\n```json\n[{IT}]\n```', ["cup"]),
    (f"```json\n[{{\"label\": \"x\"}}]\n```\n```json\n[{IT}]\n```", ["cup"]),
    # ties: the first wins
    (f'```json\n[{IT}]\n```\n```json\n[{json.dumps({**ITEM, "label": "b"})}]\n```', ["cup"]),
    # a candidate that holds nothing is still read when it is all there is
    ("```json\n[]\n```", []),
], ids=["empty-first-fence", "example-in-prose", "format-in-prose", "no-detection-fence", "tie", "empty"])
def test_the_candidate_holding_detections_wins(text, expected):
    assert labels(parse_response(text, (100, 100))) == expected


# -- #7 a wrapper whose first element is not an object -------------------------------------------------

@pytest.mark.parametrize("body, expected, warned", [
    ({"detections": [None, ITEM, ITEM]}, ["cup", "cup"], [0]),
    ({"detections": [1, "x", ITEM]}, ["cup"], [0, 1]),
    ({"legend": [{"label": "cup"}], "detections": [ITEM]}, ["cup"], []),
    ({"ids": [1, 2], "detections": [ITEM]}, ["cup"], []),
], ids=["null-first", "scalars-first", "legend-first", "ids-first"])
def test_a_wrapper_keeps_its_valid_items(body, expected, warned):
    d = parse_response(json.dumps(body), (100, 100))
    assert labels(d) == expected and [w.index for w in d.warnings] == warned


def test_a_cut_off_wrapper_whose_first_element_is_null_keeps_the_complete_items():
    d = parse_response('{"detections": [null, ' + IT + ", " + IT + ', {"box_2d": [1, ', (100, 100))
    assert labels(d) == ["cup", "cup"] and [w.index for w in d.warnings] == [0, 3]


# -- #8 nothing dropped without a warning --------------------------------------------------------------

@pytest.mark.parametrize("items, n, warning", [
    ([ITEM, None, ITEM], 2, "item 1: item is null, expected an object; skipped"),
    ([{"point": [500, 500], "label": "p", "mask": png_b64(np.full((4, 4), 255, np.uint8))}], 1,
     "item 0 'mask': a point-only item has no box for its mask to cover; mask dropped, point kept"),
    ([{**ITEM, "mask": png_b64(np.zeros((8, 8), np.uint8))}], 1,
     "item 0 'mask': mask has no pixel above the threshold 127; box kept without a mask"),
], ids=["null-item", "point-mask", "empty-mask"])
def test_every_drop_is_warned(items, n, warning):
    d = parse_response(json.dumps(items), (100, 80))
    assert len(d) == n and reasons(d) == [warning]
    assert d.masks is None


# -- #9 finding the item array is linear ---------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda n: '{"meta": {' + '"k": [], ' * n,                      # the reported case (cut off)
    lambda n: '{"meta": {' + '"k": [], ' * n + '}, "detections": [' + IT + ", {",
    lambda n: "[" + ", ".join([IT] * n) + ", {",                    # a long truncated list
    lambda n: "I see [1] " * n + "[" + IT,                          # many prose candidates
    lambda n: "```json\n[\n```\n" * n,                              # many unbalanced fences
], ids=["nested-members", "nested-then-wrapper", "truncated-list", "prose-candidates", "fences"])
def test_finding_the_items_is_linear_in_the_answer_length(make):
    ratio = growth(lambda n: lambda: find_items(make(n)), 100)
    assert ratio < 6, f"work grew {ratio:.1f}x for 4x the input (linear: ~4x, quadratic: ~16x)"


def test_the_nested_members_answer_is_reported_as_cut_off():
    d = parse_response('{"meta": {' + '"k": [], ' * 2000, (10, 10))
    assert len(d) == 0 and "cut off" in reasons(d)[0]


def test_a_hand_built_label_with_a_lone_surrogate_is_an_export_error_not_a_crash(tmp_path):
    from visionkit import Detections, ExportError

    d = Detections(np.array([[1.0, 1.0, 5.0, 5.0]]), ["cup \ud83d"], (10, 10))
    with pytest.raises(ExportError, match="surrogates not allowed"):
        write_json_atomic(tmp_path / "a.json", to_coco([("a.jpg", (10, 10), d)]))
    assert list(tmp_path.iterdir()) == []  # no half file, no temp file


@pytest.mark.parametrize("text, expected", [
    ('"box_2d": [100, 100, 500, 500], "label": "cup"}', ["cup"]),
    ('  "box_2d": [100, 100, 500, 500], "label": "cup", "mask": "<start_of_mask><seg_1>"}', ["cup"]),
])
def test_a_fragment_that_lost_its_opening_brace_is_read_as_an_item(text, expected):
    assert labels(parse_response(text, (100, 100))) == expected
