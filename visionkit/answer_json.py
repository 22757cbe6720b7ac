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
* Bare ``<start_of_mask><seg_N>...`` tokens (not inside a JSON string) are quoted so the item can be read.

Anything with no JSON at all raises :class:`~visionkit.errors.ParseError`.
"""

from __future__ import annotations

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
# `"mask": <start_of_mask><seg_1>...` with missing or lopsided quotes.
_BARE_SEG = re.compile(r'(:\s*)"?(<start_of_mask>(?:\s*<seg_\d+>)*)"?')
_MEMBER_LIST = re.compile(r'^\s*"[^"\n]{1,64}"\s*:')
_ITEM_KEYS = ("box_2d", "point", "mask", "label")
# `"key": [` where the list is empty or holds objects.
_LIST_MEMBER = re.compile(r'"(?:[^"\\]|\\.)*"\s*:\s*\[(?=\s*(?:[{\]]|$))')


@dataclass
class ItemList:
    """The raw items of one answer and what happened while finding them."""

    items: list[Any]
    warnings: list[ParseWarning] = field(default_factory=list)
    truncated: bool = False


def find_items(text: str) -> ItemList:
    """Return the raw JSON items of an answer text (each usually a dict), with warnings.

    Item indexes in warnings count every element of the answer's list, including skipped ones.
    """
    if "<start_of_mask>" in text:
        text = _BARE_SEG.sub(lambda m: f'{m.group(1)}"{m.group(2)}"', text)
    body = _json_body(text)
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return _salvage(body)
    return _to_items(value, ItemList([]))


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
    """Index of the first ``[`` or ``{`` that opens JSON (is followed by a value, key or close)."""
    for match in re.finditer(r"[\[{]", text):
        i = match.end()
        nxt = _WS.match(text, i).end()
        if nxt >= len(text):
            return match.start()
        ch = text[nxt]
        if match.group() == "{" and ch in '"}':
            return match.start()
        if match.group() == "[" and (ch in '[{"]-' or ch.isdigit()):
            return match.start()
    return None


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
    return None if m is None else m.start()


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
                return _to_items(json.loads(body[:end]), out)
            except json.JSONDecodeError as exc:
                raise ParseError(f"the answer's JSON object is malformed ({exc.msg}); expected one "
                                 "detection or a list of them", snippet=body[:80]) from exc
        out.truncated = True
        out.warnings.append(ParseWarning(0, None, "the answer was cut off inside its only item; "
                                         "1 incomplete item dropped"))
        return out
    spans, closed, cut = _array_children(body, start)
    for index, (a, b) in enumerate(spans):
        try:
            out.items.append(json.loads(body[a:b]))
        except json.JSONDecodeError as exc:
            out.items.append(None)
            out.warnings.append(ParseWarning(index, None, f"item is not valid JSON ({exc.msg}); skipped"))
    if cut or not closed:
        out.truncated = True
        dropped = 1 if cut else 0
        out.warnings.append(ParseWarning(
            len(spans) if cut else None, None,
            f"the answer was cut off after {len(spans)} complete items; {dropped} incomplete item"
            f"{'' if dropped == 1 else 's'} dropped"))
    return out
