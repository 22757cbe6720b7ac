"""Find the detection list in a model's answer text: fences, prose, wrappers, truncation, bad items.

What is accepted, on purpose:

* JSON inside a Markdown fence of any form (```` ```json ````, ```` ```JSON ````, a bare ```` ``` ````,
  indented or inline, and an opening fence never closed because the answer was cut off), or no fence.
* Prose before or after the JSON.
* A list of items, a single item object, or a wrapping object whose first list of objects holds the items
  (``{"detections": [...]}``, ``{"boxes": [...]}``, ...).
* Truncation: when the item list is cut off mid-item, every complete item is kept and the cut item is
  reported as dropped. The scan is string-aware: a ``}`` or ``]`` inside a label is not structure.
* One malformed item (bad JSON inside an otherwise good list) is skipped and reported; the others are kept.
* Bare ``<start_of_mask><seg_N>...<end_of_mask>`` tokens (not inside a JSON string) are quoted so the item
  can be read. This repair runs only when the JSON does not parse as it is; tokens already inside a string
  are never touched.
* Prose before the JSON that contains brackets of its own (``I found [2] objects: [...]``).

Anything with no JSON at all raises :class:`~visionkit.errors.ParseError`.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .detections import ParseWarning
from .errors import ParseError

__all__ = ["ItemList", "find_items"]

# After an opening ```: an optional language tag (json, JSON, ...) and the rest of that line's blanks.
_FENCE_LANG = re.compile(r"[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?")
# A string token (complete), a lone quote (an unterminated string), or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|"|[\[\]{}]', re.DOTALL)
_WS = re.compile(r"\s*")
_SCALAR_END = re.compile(r"[,\]}\s]")
# Left to right: a complete JSON string (kept as is), or a bare `<start_of_mask><seg_1>...` token run outside
# any string, with an optional lopsided closing quote (`"mask": <start_of_mask><seg_35>...<seg_22>"`).
_STRING_OR_SEG = re.compile(r'"(?:[^"\\]|\\.)*"|<start_of_mask>(?:\s*<seg_\d+>)*(?:\s*<end_of_mask>)?"?',
                            re.DOTALL)
_MEMBER_LIST = re.compile(r'^\s*"[^"\n]{1,64}"\s*:')
_ITEM_KEYS = ("box_2d", "point", "mask", "label")
# `"key": [` where the list is empty or holds objects.
_LIST_MEMBER = re.compile(r'"(?:[^"\\]|\\.)*"\s*:\s*\[(?=\s*(?:[{\]]|$))')
_OPEN = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()
_MISSING = object()
_MAX_DECODE_ATTEMPTS = 32
# What json.loads raises on bad text: JSONDecodeError (a ValueError), ValueError for an integer over
# Python's digit limit, RecursionError for absurdly deep nesting.
_JSON_ERRORS = (ValueError, RecursionError)


@dataclass
class ItemList:
    """The raw items of one answer and what happened while finding them."""

    items: list[Any]
    warnings: list[ParseWarning] = field(default_factory=list)


def find_items(text: str) -> ItemList:
    """Return the raw JSON items of an answer text (each usually a dict), with warnings.

    Item indexes in warnings count every element of the answer's list, including skipped ones.
    """
    body = _json_body(text)
    try:
        value = json.loads(body)
    except _JSON_ERRORS:
        if "<start_of_mask>" not in body:
            return _salvage(body)
        body = _quote_bare_tokens(body)
        try:
            value = json.loads(body)
        except _JSON_ERRORS:
            return _salvage(body)
    return _to_items(value, ItemList([]))


def _error_message(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0]


def _quote_bare_tokens(body: str) -> str:
    """Quote ``<start_of_mask>...`` token runs standing outside JSON strings; strings are kept as they are."""
    def repl(m: re.Match) -> str:
        tok = m.group()
        if not tok.startswith("<"):
            return tok
        return '"' + "".join(tok.rstrip('"').split()) + '"'

    return _STRING_OR_SEG.sub(repl, body)


def _json_body(text: str) -> str:
    """The part of the answer that holds the JSON: a fenced block, or from the first bracket on."""
    for content in _fenced_blocks(text):
        content = content.strip()
        if content[:1] in ("[", "{"):
            return content
    start = _first_json_start(text)
    if start is not None:
        return text[start:].strip()
    if _MEMBER_LIST.match(text):
        # A fragment like `"box_2d": [...], "mask": ...` that lost its opening brace.
        return "{" + text.strip()
    raise ParseError("no JSON list or object found in the answer; expected a JSON list of "
                     "{\"box_2d\": [ymin, xmin, ymax, xmax], \"label\": ...} items", snippet=text[:80])


def _fenced_blocks(text: str):
    """Contents of Markdown code fences, in order; an unclosed last fence runs to the end of the text."""
    pos = text.find("```")
    while pos != -1:
        lang = _FENCE_LANG.match(text, pos + 3)
        start = lang.end()
        end = text.find("```", start)
        yield text[start:] if end == -1 else text[start:end]
        if end == -1:
            return
        pos = text.find("```", end + 3)


def _first_json_start(text: str) -> int | None:
    """Index of the ``[`` or ``{`` where the answer's JSON starts, or None.

    Candidates are brackets followed by a value, key or close. Scanning left to right:

    1. A candidate that decodes to a list that is empty or holds objects, or to an object that is an
       item or wraps one (what :func:`_to_items` accepts), wins at once.
    2. A candidate that decodes to something else (``[2]`` in ``I found [2] objects``) is skipped whole.
    3. A candidate that does not decode but looks like the start of items (``[`` then ``{``, or ``{`` then
       ``"``) wins if it runs to the end of the text (cut off); if it closes (one malformed item, bare mask
       tokens), it is remembered and the scan goes on after it.
    4. Otherwise: the first such remembered candidate, else the first candidate at all (the old rule).

    Only the first few candidates are decoded; later ones are judged by rule 3's look alone.
    """
    strong: int | None = None
    weak: int | None = None
    pos = attempts = 0
    n = len(text)
    while True:
        match = _OPEN.search(text, pos)
        if match is None:
            break
        i = match.start()
        pos = i + 1
        nxt = _WS.match(text, i + 1).end()
        ch = text[nxt] if nxt < n else ""
        if match.group() == "{":
            if nxt < n and ch not in '"}':
                continue
            looks_like_items = ch == '"'
        else:
            if nxt < n and not (ch in '[{"]-' or ch.isdigit()):
                continue
            looks_like_items = ch == "{"
        value = _MISSING
        if attempts < _MAX_DECODE_ATTEMPTS:  # bounds the work on pathological text ("[[[[...")
            attempts += 1
            with contextlib.suppress(*_JSON_ERRORS):
                value, end = _DECODER.raw_decode(text, i)
        if value is not _MISSING:
            if _holds_items(value):
                return i
            weak = i if weak is None else weak
            pos = end
            continue
        if looks_like_items:
            close = _matching_close(text, i)
            if close is None:
                return strong if strong is not None else i
            strong = i if strong is None else strong
            pos = close
            continue
        weak = i if weak is None else weak
    return strong if strong is not None else weak


def _matching_close(s: str, i: int) -> int | None:
    """End index (exclusive) of the bracket at ``s[i]``, matching bracket types, or None if the text ends
    first. String-aware; a closer of the wrong type is junk inside the value (``[{...}, }, {...}]``), not
    its end."""
    stack: list[str] = []
    for m in _TOKEN.finditer(s, i):
        tok = m.group()
        if tok == '"':  # unterminated string: the text ends inside it
            return None
        if tok in "[{":
            stack.append("]" if tok == "[" else "}")
        elif tok in "]}" and tok == stack[-1]:
            stack.pop()
            if not stack:
                return m.end()
    return None


def _holds_items(value: Any) -> bool:
    """True for a decoded value that :func:`_to_items` turns into items without an error."""
    if isinstance(value, list):
        return not value or all(isinstance(v, dict) for v in value)
    if isinstance(value, dict):
        if not value or any(k in value for k in _ITEM_KEYS):
            return True
        return any(isinstance(v, list) and (not v or isinstance(v[0], dict)) for v in value.values())
    return False


def _to_items(value: Any, out: ItemList) -> ItemList:
    """Normalise a decoded JSON value (list, single item, wrapper object) into the item list."""
    if isinstance(value, list):
        out.items = value
        return out
    if isinstance(value, dict):
        if any(k in value for k in _ITEM_KEYS):
            out.items = [value]
            return out
        for inner in value.values():
            if isinstance(inner, list) and (not inner or isinstance(inner[0], dict)):
                out.items = inner
                return out
        if not value:
            out.items = []
            return out
        keys = ", ".join(list(value)[:5])
        raise ParseError(f"the answer is a JSON object with keys ({keys}) but no list of detections; "
                         "expected a list of items or an object wrapping one", snippet=json.dumps(value)[:80])
    raise ParseError(f"the answer's JSON is a {type(value).__name__}, not a list of detections",
                     snippet=str(value)[:80])


# -- tolerant scanning ---------------------------------------------------------------------------------

def _skip_value(s: str, i: int) -> int | None:
    """End index (exclusive) of the JSON value starting at ``s[i]``, or None if the text ends first.

    String-aware: brackets inside strings are ignored. It does not validate the value.
    """
    ch = s[i]
    if ch in "[{":
        depth = 0
        pos = i
        while True:
            m = _TOKEN.search(s, pos)
            if m is None:
                return None
            tok = m.group()
            if tok == '"':  # unterminated string: the text ends inside it
                return None
            if tok in "[{":
                depth += 1
            elif tok in "]}":
                depth -= 1
                if depth == 0:
                    return m.end()
            pos = m.end()
    if ch == '"':
        m = _TOKEN.match(s, i)
        return None if m is None or m.group() == '"' else m.end()
    m = _SCALAR_END.search(s, i)
    if m is None:
        return None
    # A stray `}` where a value should be is a one-character (invalid) value, so the scan moves on.
    return max(m.start(), i + 1)


def _array_children(s: str, start: int) -> tuple[list[tuple[int, int]], bool, bool]:
    """Spans of the direct children of the array at ``s[start] == '['``.

    Returns ``(spans, closed, cut_item)``: whether the array's ``]`` was reached, and whether an incomplete
    child was found at the end of the text.
    """
    spans: list[tuple[int, int]] = []
    i = start + 1
    n = len(s)
    while True:
        i = _WS.match(s, i).end()
        if i >= n:
            return spans, False, False
        if s[i] == "]":
            return spans, True, False
        if s[i] == ",":
            i += 1
            continue
        end = _skip_value(s, i)
        if end is None:
            return spans, False, True
        spans.append((i, end))
        i = end


def _items_array_start(s: str) -> int | None:
    """Where the item list starts: the top-level ``[``, or the ``[`` of the first member of the top-level
    object whose value is a list of objects (``{"detections": [{...``)."""
    if s.startswith("["):
        return 0
    for m in _LIST_MEMBER.finditer(s):
        depth = 0  # depth of the match inside the text; 1 = a member of the top-level object
        for tok in _TOKEN.finditer(s, 0, m.start()):
            t = tok.group()
            depth += 1 if t in "[{" else -1 if t in "]}" else 0
        if depth == 1:
            return m.end() - 1
    return None


def _salvage(body: str) -> ItemList:
    """Recover items from JSON that does not parse as a whole (truncated, or one malformed item)."""
    out = ItemList([])
    start = _items_array_start(body)
    if start is None:
        # A single object that is cut off or malformed: nothing complete to keep.
        end = _skip_value(body, 0)
        if end is not None:
            try:
                value = json.loads(body[:end])
            except _JSON_ERRORS as exc:
                raise ParseError(f"the answer's JSON object is malformed ({_error_message(exc)}); expected "
                                 "one detection or a list of them", snippet=body[:80]) from exc
            return _to_items(value, out)
        out.warnings.append(ParseWarning(0, None, "the answer was cut off inside its only item; "
                                         "1 incomplete item dropped"))
        return out
    spans, closed, cut = _array_children(body, start)
    for index, (a, b) in enumerate(spans):
        try:
            out.items.append(json.loads(body[a:b]))
        except _JSON_ERRORS as exc:
            out.items.append(None)
            out.warnings.append(ParseWarning(index, None,
                                             f"item is not valid JSON ({_error_message(exc)}); skipped"))
    if cut or not closed:
        dropped = 1 if cut else 0
        out.warnings.append(ParseWarning(
            len(spans) if cut else None, None,
            f"the answer was cut off after {len(spans)} complete items; {dropped} incomplete item"
            f"{'' if dropped == 1 else 's'} dropped"))
    return out
