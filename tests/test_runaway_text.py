"""Issue 19 #10: runaway answer text. An answer over Gemini's output limit is refused before it is
scanned, with a ParseError stating the limit and its source; under it, long runs of brackets cost a few
regex steps, not a Python loop per bracket. No clocks: the tests count the work done.

Before the fix 4 MB of ``[`` took 5.3 s, and every input below was scanned character by character."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionkit.answers import parse
from visionkit.answers.answer_json import candidates, scan
from visionkit.answers.parse import MAX_ANSWER_CHARS, MAX_OUTPUT_TOKENS, parse_response
from visionkit.errors import ParseError

MB4 = 4 * 1024 * 1024
ITEM = '{"box_2d":[1,1,2,2],"label":"a","mask":[[1,1],[2,2],[1,2]]}'


@pytest.mark.parametrize("text", [
    "[" * MB4,
    "{" * MB4,
    "[{" * (MB4 // 2),
    '["' * (MB4 // 2),
    "[" + ",".join([ITEM] * (MB4 // len(ITEM))) + "]",  # tiny polygon items
    "```json\n[]\n```\n" * (MB4 // 14),
    "x" * (MAX_ANSWER_CHARS + 1),                      # one past the limit
], ids=["brackets", "braces", "alternating", "quote-brackets", "tiny-polygons", "fences", "limit+1"])
def test_text_over_the_output_limit_is_refused_unscanned(monkeypatch, text):
    def never(_text):
        raise AssertionError("the text was scanned")

    monkeypatch.setattr(parse, "find_items", never)
    with pytest.raises(ParseError) as info:
        parse_response(text, image_size=(4000, 3000))
    message = str(info.value)
    assert f"{len(text):,} characters" in message and f"{MAX_ANSWER_CHARS:,}" in message
    assert f"{MAX_OUTPUT_TOKENS:,} tokens" in message
    assert "https://ai.google.dev/gemini-api/docs/models" in message


def test_the_same_text_inside_a_full_response_is_refused_too():
    body = {"candidates": [{"content": {"parts": [{"text": "[" * 600_000}, {"text": "[" * 600_000}]},
                            "finishReason": "STOP"}]}
    with pytest.raises(ParseError, match="over the limit of 1,048,576"):
        parse_response(body, image_size=(100, 100))


def test_an_answer_at_the_limit_is_parsed():
    item = '{"box_2d": [10, 10, 500, 500], "label": "cup"}'
    pad = MAX_ANSWER_CHARS - len(item) - 2
    text = "[" + item + "]" + " " * pad
    assert len(text) == MAX_ANSWER_CHARS
    assert parse_response(text, image_size=(100, 100)).labels.tolist() == ["cup"]


class _Counting:
    """A compiled regex whose search/match calls are counted."""

    def __init__(self, pattern: re.Pattern):
        self.pattern, self.calls = pattern, 0

    def search(self, *a):
        self.calls += 1
        return self.pattern.search(*a)

    def match(self, *a):
        self.calls += 1
        return self.pattern.match(*a)

    def finditer(self, *a):
        for m in self.pattern.finditer(*a):
            self.calls += 1
            yield m


N = 1_000_000  # under the limit: scanned


@pytest.mark.parametrize("text", [
    "[" * N, "{" * N, "[" * (N // 2) + "]" * (N // 2), "x [" + "[" * (N // 2) + "{" * (N // 2),
    "[" * (N // 3) + "{" * (N // 3) + "]" * (N // 3),
], ids=["brackets", "braces", "nested", "mixed", "mixed-closed"])
def test_long_runs_of_brackets_cost_a_bounded_number_of_regex_steps(monkeypatch, text):
    counters = {name: _Counting(getattr(candidates, name)) for name in ("_OPEN", "WS")}
    for name, counter in counters.items():
        monkeypatch.setattr(candidates, name, counter)
    token = _Counting(scan.RUN_TOKEN)
    monkeypatch.setattr(scan, "RUN_TOKEN", token)
    parse_response(text, image_size=(100, 100))  # no detections: an empty result, or ParseError
    steps = sum(c.calls for c in counters.values()) + token.calls
    assert steps < 2_000, steps  # was one or more per bracket: millions


# -- the run-aware scanners against the obvious one-bracket-at-a-time ones they replaced ----------------
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]', re.DOTALL)


def _matching_close_oracle(s: str, i: int) -> int | None:
    stack: list[str] = []
    for m in _TOKEN.finditer(s, i):
        tok = m.group()
        if tok == '"':
            return None
        if tok in "[{":
            stack.append("]" if tok == "[" else "}")
        elif tok in "]}" and tok == stack[-1]:
            stack.pop()
            if not stack:
                return m.end()
    return None


def _skip_value_oracle(s: str, i: int) -> int | None:
    depth = 0
    for m in _TOKEN.finditer(s, i):
        tok = m.group()
        if tok == '"':
            return None
        if tok in "[{":
            depth += 1
        elif tok in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
    return None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='[]{}"\\ a,', min_size=1, max_size=60), st.data())
def test_scanners_equal_the_one_bracket_oracles(body, data):
    text = data.draw(st.sampled_from("[{")) + body
    assert scan.matching_close(text, 0) == _matching_close_oracle(text, 0)
    assert scan.skip_value(text, 0) == _skip_value_oracle(text, 0)


@pytest.mark.parametrize("text", ["[]", "[[]]", "[{]}]", "[[[}]]]", '["]"]', "[[[]]", "{[}]}",
                                  "[" * 50 + "]" * 50, "[[" + "}" * 5 + "]]", '["\\"]"]', "[", '["'])
def test_scanners_table(text):
    assert scan.matching_close(text, 0) == _matching_close_oracle(text, 0)
    assert scan.skip_value(text, 0) == _skip_value_oracle(text, 0)


@pytest.mark.parametrize("count", [0, 1, parse.MAX_ANSWER_ITEMS, parse.MAX_ANSWER_ITEMS + 1,
                                   3 * parse.MAX_ANSWER_ITEMS])
def test_items_past_what_the_output_limit_can_hold_are_dropped_with_one_warning(monkeypatch, count):
    """Tiny polygon items under the length cap: each costs validation and a mask, so the item count is
    bounded too (no real answer holds more than MAX_ANSWER_ITEMS items); the first ones are kept."""
    decoded = []
    real = parse.decode_mask

    def counting(value, *a, **kw):
        decoded.append(1)
        return real(value, *a, **kw)

    monkeypatch.setattr(parse, "decode_mask", counting)
    text = "[" + ",".join([ITEM] * count) + "]"
    assert len(text) <= MAX_ANSWER_CHARS
    dets = parse_response(text, image_size=(640, 480))
    kept = min(count, parse.MAX_ANSWER_ITEMS)
    assert len(dets) == kept and len(decoded) <= kept
    notes = [w for w in dets.warnings if "items" in w.reason and "dropped" in w.reason]
    if count > parse.MAX_ANSWER_ITEMS:
        assert len(notes) == 1 and f"{count:,} items" in notes[0].reason
    else:
        assert notes == []
