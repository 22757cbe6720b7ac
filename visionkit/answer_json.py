"""Find the detection list in a model's answer text: fences, prose, wrappers, truncation, bad items.

What is accepted, on purpose:

* JSON inside a Markdown fence of any form (```` ```json ````, ```` ```JSON ````, a bare ```` ``` ````,
  indented or inline, and an opening fence never closed because the answer was cut off), or no fence.
  A fence ends at the first ```` ``` ```` AFTER its JSON value, so ```` ``` ```` inside a label does not
  end it.
* Prose before or after the JSON.
* A list of items, a single item object, or a wrapping object whose member list holds the items
  (``{"detections": [...]}``, ``{"boxes": [...]}``, ...).
* Truncation: when the item list is cut off mid-item, every complete item is kept and the cut item is
  reported as dropped. The scan is string-aware: a ``}`` or ``]`` inside a label is not structure.
* One malformed item (bad JSON inside an otherwise good list) is skipped and reported; the others are kept.
  So are elements that are not objects (``null``, ``true``, numbers): the parser reports each by index.
* Bare ``<start_of_mask><seg_N>...<end_of_mask>`` tokens (not inside a JSON string) are quoted so the item
  can be read. This repair runs only when the JSON does not parse as it is; tokens already inside a string
  are never touched.
* Lone UTF-16 surrogate escapes (``"cup \\ud83d"``, half an emoji) are replaced with U+FFFD before
  decoding, with a warning (see :mod:`visionkit.textclean`).

**Which JSON is the answer** (the candidate rule). Every fenced block and every JSON value in the prose
is a candidate. The candidate that holds the most detections (objects with a 4-value ``box_2d`` or a
2-value ``point``) wins; on a tie, a candidate that decodes as it is beats one that had to be repaired
or salvaged, then the earlier one wins. So an empty first fence followed by the real list, an example
object in the prose (``Each item looks like {"label": "name"}.``) or a fenced snippet inside a label
never hides the real list. When no candidate holds a detection, the first one that is a list of
objects, an empty list, an item or a wrapper wins, then the first that looks like the start of items,
then the first at all. Inside a wrapper, the member list with the most detections wins (the first list
holding an object on a tie; with no such list, the first list, whose elements are then reported one by
one).

Anything with no JSON at all raises :class:`~visionkit.errors.ParseError`.

Work is linear in the length of the answer: each bracket is scanned a bounded number of times.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .detections import ParseWarning
from .errors import ParseError
from .textclean import repair_json_surrogates, repair_surrogates

__all__ = ["INVALID", "ItemList", "find_items"]

# After an opening ```: an optional language tag (json, JSON, ...) and the rest of that line's blanks.
_FENCE_LANG = re.compile(r"[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?")
# A string token (complete), a lone quote (an unterminated string), or a bracket.
# (The string is written as an unrolled loop, ``[^"\\]*(?:\\.[^"\\]*)*``: an alternation per character is
# some 20x slower on long base64 mask strings.)
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]', re.DOTALL)
_WS = re.compile(r"\s*")
_SCALAR_END = re.compile(r"[,\]}\s]")
# Left to right: a complete JSON string (kept as is), or a bare `<start_of_mask><seg_1>...` token run outside
# any string, with an optional lopsided closing quote (`"mask": <start_of_mask><seg_35>...<seg_22>"`).
_STRING_OR_SEG = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"'
                            r'|<start_of_mask>(?:\s*<seg_\d+>)*(?:\s*<end_of_mask>)?"?', re.DOTALL)
_MEMBER_LIST = re.compile(r'^\s*"[^"\n]{1,64}"\s*:')
_ITEM_KEYS = ("box_2d", "point", "mask", "label")
# After a member's key string: `: [`.
_KEY_THEN_LIST = re.compile(r"\s*:\s*\[")
# A JSON literal as a list element: `[null, ...`, `[true]`.
_LITERAL = re.compile(r"(?:null|true|false)\s*[,\]]")
_SCALAR_THEN_COMMA = re.compile(r"(?:null|true|false|-?\d[\d.eE+-]*)\s*,")
_OPEN = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()
_MISSING = object()
_MAX_DECODE_ATTEMPTS = 32
# What json.loads raises on bad text: JSONDecodeError (a ValueError), ValueError for an integer over
# Python's digit limit, RecursionError for absurdly deep nesting.
_JSON_ERRORS = (ValueError, RecursionError)


class _Invalid:
    """Stands for a list element that is not valid JSON (already reported by :func:`find_items`)."""

    _instance: _Invalid | None = None

    def __new__(cls) -> _Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INVALID"


#: The item placed where a list element was not valid JSON; its warning is already in the ItemList.
INVALID = _Invalid()


@dataclass
class ItemList:
    """The raw items of one answer and what happened while finding them."""

    items: list[Any]
    warnings: list[ParseWarning] = field(default_factory=list)


def find_items(text: str) -> ItemList:
    """Return the raw JSON items of an answer text (each usually a dict), with warnings.

    Item indexes in warnings count every element of the answer's list, including skipped ones. An element
    that is not valid JSON is :data:`INVALID` (and has its warning); other elements are as decoded.
    """
    notes: list[ParseWarning] = []
    text, raw = repair_surrogates(text)
    text, escaped, first = repair_json_surrogates(text)
    if raw or escaped:
        where = f" (first: {first!r})" if first else ""
        notes.append(ParseWarning(None, None, f"{raw + escaped} lone UTF-16 surrogate"
                                  f"{'' if raw + escaped == 1 else 's'} (half of an emoji escape){where} "
                                  "replaced with U+FFFD"))
    out = _best_candidate(text)
    out.warnings[:0] = notes
    return out


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


# -- candidates ----------------------------------------------------------------------------------------

# Ranks, best last: a value that needs no repair and is (or wraps) items; one that looks like the start
# of items but does not decode as it is; anything else.
_OTHER, _LOOKS_LIKE_ITEMS, _ITEMS = 0, 1, 2


@dataclass
class _Candidate:
    start: int
    rank: int
    value: Any = _MISSING      # the decoded value, when it decodes as it is
    body: str | None = None    # otherwise the text to repair or salvage


def _read(c: _Candidate) -> ItemList:
    """The candidate's items; raises ParseError when it holds none that can be read."""
    if c.value is not _MISSING:
        return _to_items(c.value, ItemList([]))
    assert c.body is not None
    return _read_text(c.body)


def _read_text(body: str) -> ItemList:
    """Items of JSON text that may need the bare-token repair, or salvage when it does not decode."""
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


def _detections(items: list[Any]) -> int:
    """How many items look like detections: objects with a 4-element ``box_2d`` or a 2-element ``point``."""
    return sum(isinstance(v, dict) and (_sized(v.get("box_2d"), 4) or _sized(v.get("point"), 2))
               for v in items)


def _sized(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def _best_candidate(text: str) -> ItemList:
    """Apply the candidate rule of the module docstring."""
    fenced, decoded = _fence_candidates(text)
    candidates = sorted(fenced + _prose_candidates(text, decoded), key=lambda c: c.start)
    if _MEMBER_LIST.match(text):
        # A fragment like `"box_2d": [...], "mask": ...` that lost its opening brace.
        candidates.insert(0, _Candidate(0, _LOOKS_LIKE_ITEMS, body="{" + text.strip()))
    if not candidates:
        raise ParseError("no JSON list or object found in the answer; expected a JSON list of "
                         "{\"box_2d\": [ymin, xmin, ymax, xmax], \"label\": ...} items", snippet=text[:80])
    if len(candidates) == 1:  # the usual answer; what the rule below comes to for one candidate
        return _read(candidates[0])
    best: tuple[tuple[int, int, int], ItemList] | None = None
    read: dict[int, ItemList | ParseError] = {}  # candidate index -> what reading it gave
    for k, c in enumerate(candidates):
        if c.rank == _OTHER and c.value is _MISSING:
            continue  # read only as a last resort (below): salvaging prose is not free
        try:
            found = read[k] = _read(c)
        except ParseError as exc:
            read[k] = exc
            continue
        key = (_detections(found.items), c.rank, -c.start)
        if key[0] and (best is None or key > best[0]):
            best = (key, found)
    if best is not None:
        return best[1]
    # No candidate holds a detection: the first items-like one, the first that looks like items, the first.
    for rank in (_ITEMS, _LOOKS_LIKE_ITEMS, _OTHER):
        for k, c in enumerate(candidates):
            if c.rank == rank:
                result = read[k] if k in read else _read(c)
                if isinstance(result, ParseError):
                    raise result
                return result
    raise AssertionError("unreachable")  # pragma: no cover


def _rank_decoded(value: Any) -> int:
    return _ITEMS if _holds_items(value) else _OTHER


def _fence_candidates(text: str) -> tuple[list[_Candidate], dict[int, int]]:
    """Candidates of the fenced blocks, and ``{start: end}`` of those that decoded (the prose scan skips
    them rather than decoding them twice)."""
    out, decoded = [], {}
    for start, content, value in _fenced_blocks(text):
        stripped = content.strip()
        start += len(content) - len(content.lstrip())
        if value is _MISSING:
            looks = _looks_like_items(stripped, 0)
            out.append(_Candidate(start, _LOOKS_LIKE_ITEMS if looks else _OTHER, body=stripped))
        else:
            out.append(_Candidate(start, _rank_decoded(value), value=value))
            decoded[start] = start + len(stripped)
    return out, decoded


def _fenced_blocks(text: str):
    """``(start, content, value)`` of the Markdown code fences whose content starts with ``[`` or ``{``, in
    order; an unclosed last fence runs to the end. ``value`` is the decoded content, or ``_MISSING``.

    A fence ends at the first ```` ``` ```` after its JSON value's closing bracket, so a label holding
    ```` ``` ```` does not end it. The plain reading (the next ```` ``` ````) is tried first: when its
    content decodes, the value ended before that fence. Otherwise the value's end is found string-aware;
    when it does not close, the fence ends at the next ```` ``` ````, and from then on every fence does (the
    text is cut off or unbalanced, and scanning it again for each later fence would be quadratic).
    """
    pos = text.find("```")
    string_aware = True
    while pos != -1:
        start = _FENCE_LANG.match(text, pos + 3).end()
        first = _WS.match(text, start).end()
        end = text.find("```", start)
        value = _MISSING
        if text[first:first + 1] in ("[", "{"):
            content = text[start:] if end == -1 else text[start:end]
            with contextlib.suppress(*_JSON_ERRORS):
                value = json.loads(content)
            if value is _MISSING and string_aware and end != -1:
                close = _matching_close(text, first)
                if close is None:
                    string_aware = False
                else:
                    end = text.find("```", close)
                    content = text[start:] if end == -1 else text[start:end]
            yield start, content, value
        if end == -1:
            return
        pos = text.find("```", end + 3)


def _looks_like_items(text: str, i: int) -> bool:
    """``[`` then ``{`` (or a literal or number, then a comma: ``[null, {...``), or ``{`` then ``"``: the
    start of a list of items or of an object."""
    nxt = _WS.match(text, i + 1).end()
    ch = text[nxt:nxt + 1]
    if text[i] == "{":
        return ch == '"'
    return ch == "{" or _SCALAR_THEN_COMMA.match(text, nxt) is not None


def _prose_candidates(text: str, skip: dict[int, int]) -> list[_Candidate]:
    """JSON values in the text, left to right: brackets followed by a value, key or close.

    A candidate that decodes is kept with its value and the scan goes on after it. One that does not
    decode but looks like the start of items is kept with its text up to its closing bracket, and the scan
    goes on after it; if it never closes (cut off), it runs to the end of the text and the scan stops.
    The first of anything else is kept as a last resort and the scan goes on inside it. Only the first
    few candidates are decoded; later ones are judged by their look alone. A value at a ``skip`` start
    (a fenced block that decoded) is passed over to its end.
    """
    out: list[_Candidate] = []
    pos = attempts = 0
    n = len(text)
    have_other = False
    while True:
        match = _OPEN.search(text, pos)
        if match is None:
            break
        i = match.start()
        if i in skip:
            pos = skip[i]
            continue
        pos = i + 1
        nxt = _WS.match(text, i + 1).end()
        ch = text[nxt] if nxt < n else ""
        if match.group() == "{":
            if nxt < n and ch not in '"}':
                continue
        elif nxt < n and not (ch in '[{"]-' or ch.isdigit() or _LITERAL.match(text, nxt)):
            continue
        looks_like_items = _looks_like_items(text, i)
        if attempts < _MAX_DECODE_ATTEMPTS:  # bounds the work on pathological text ("[[[[...")
            attempts += 1
            value = _MISSING
            with contextlib.suppress(*_JSON_ERRORS):
                value, end = _DECODER.raw_decode(text, i)
            if value is not _MISSING:
                out.append(_Candidate(i, _rank_decoded(value), value=value))
                pos = end
                continue
        if looks_like_items:
            close = _matching_close(text, i)
            out.append(_Candidate(i, _LOOKS_LIKE_ITEMS, body=text[i:close].strip()))
            if close is None:
                break
            pos = close
            continue
        if not have_other:  # only the first is ever read (as a last resort); slicing each would be quadratic
            out.append(_Candidate(i, _OTHER, body=text[i:].strip()))
            have_other = True
    return out


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
        return _is_item_list(value)
    if isinstance(value, dict):
        if not value or any(k in value for k in _ITEM_KEYS):
            return True
        return any(isinstance(v, list) and _is_item_list(v) for v in value.values())
    return False


def _is_item_list(value: list) -> bool:
    """An empty list, or one holding at least one object (other elements are reported one by one)."""
    return not value or any(isinstance(v, dict) for v in value)


def _to_items(value: Any, out: ItemList) -> ItemList:
    """Normalise a decoded JSON value (list, single item, wrapper object) into the item list."""
    if isinstance(value, list):
        out.items = value
        return out
    if isinstance(value, dict):
        if any(k in value for k in _ITEM_KEYS):
            out.items = [value]
            return out
        lists = ([v for v in value.values() if isinstance(v, list) and _is_item_list(v)]
                 or [v for v in value.values() if isinstance(v, list)][:1])  # [null], [1, 2]: reported
        if lists:
            # the member list with the most detections; the first holding an object, then the first, on a tie
            out.items = max(lists, key=lambda v: (_detections(v), bool(v)))
            return out
        if not value:
            out.items = []
            return out
        keys = ", ".join(repr(k) for k in list(value)[:5])
        raise ParseError(f"the answer is a JSON object with keys ({keys}) but no list of detections; "
                         "expected a list of items or an object wrapping one", snippet=_dumps(value)[:80])
    raise ParseError(f"the answer's JSON is a {type(value).__name__}, not a list of detections",
                     snippet=_dumps(value)[:80])


def _dumps(value: Any) -> str:
    """JSON text of a decoded value for a message; never raises."""
    try:
        return json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        return type(value).__name__


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


def _member_arrays(s: str) -> list[int]:
    """Where the item list may start: ``[0]`` for a top-level ``[``, else the ``[`` of every member of the
    top-level object whose value is a list (``{"detections": [{...``), in order. One pass over the text."""
    if s.startswith("["):
        return [0]
    out = []
    depth = 0  # 1 = inside the top-level object
    for tok in _TOKEN.finditer(s):
        t = tok.group()
        if t in "[{":
            depth += 1
        elif t in "]}":
            depth -= 1
            if depth <= 0:
                break
        elif t == '"':
            break  # the text ends inside a string
        elif depth == 1:
            m = _KEY_THEN_LIST.match(s, tok.end())
            if m is not None:
                out.append(m.end() - 1)
    return out


def _salvage(body: str) -> ItemList:
    """Recover items from JSON that does not parse as a whole (truncated, or one malformed item)."""
    best: tuple[tuple[int, bool], ItemList] | None = None
    for start in _member_arrays(body):
        spans, closed, cut = _array_children(body, start)
        # A member list qualifies when it holds an object, is empty, or is cut off before its first element
        # (so a cut-off item's own "box_2d": [1, 2 is not read as the item list).
        if start and spans and not any(body[a] == "{" for a, _ in spans):
            continue
        found = _salvage_array(body, spans, closed, cut)
        key = (_detections(found.items), bool(found.items))
        if best is None or key > best[0]:
            best = (key, found)
    if best is not None:
        return best[1]
    # A single object that is cut off or malformed: nothing complete to keep.
    out = ItemList([])
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


def _salvage_array(body: str, spans: list[tuple[int, int]], closed: bool, cut: bool) -> ItemList:
    out = ItemList([])
    for index, (a, b) in enumerate(spans):
        try:
            out.items.append(json.loads(body[a:b]))
        except _JSON_ERRORS as exc:
            out.items.append(INVALID)
            out.warnings.append(ParseWarning(index, None,
                                             f"item is not valid JSON ({_error_message(exc)}); skipped"))
    if cut or not closed:
        dropped = 1 if cut else 0
        out.warnings.append(ParseWarning(
            len(spans) if cut else None, None,
            f"the answer was cut off after {len(spans)} complete items; {dropped} incomplete item"
            f"{'' if dropped == 1 else 's'} dropped"))
    return out
