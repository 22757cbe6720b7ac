"""The candidate rule: every fenced block and every JSON value in the prose is a candidate, and the one
holding the most detections is the answer (the full rule is in :mod:`visionkit.answers.answer_json`)."""

from __future__ import annotations

import bisect
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import ParseError
from .items import JSON_ERRORS, ItemList, detections, holds_items, to_items
from .repairs import read_text
from .scan import WS, matching_close

__all__ = ["best_candidate"]

# After an opening ```: an optional language tag (json, JSON, ...) and the rest of that line's blanks.
_FENCE_LANG = re.compile(r"[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?")
_MEMBER_LIST = re.compile(r'^\s*"[^"\n]{1,64}"\s*:')
# A JSON literal as a list element: `[null, ...`, `[true]`.
_LITERAL = re.compile(r"(?:null|true|false)\s*[,\]]")
_SCALAR_THEN_COMMA = re.compile(r"(?:null|true|false|-?\d[\d.eE+-]*)\s*,")
_OPEN = re.compile(r"[\[{]")
_BRACE_RUN = re.compile(r"\{+")
# Once the decode budget is spent and an "other" candidate is had, only these brackets can still add a
# candidate (the start of items or of an object, as _looks_like_items says): the scan jumps between them
# with one regex search instead of a loop iteration per bracket ("[[[[...", '["["["...').
_ITEMS_START = re.compile(r'\[(?=\s*(?:\{|(?:null|true|false|-?\d[\d.eE+-]*)\s*,))|\{(?=\s*")')
_DECODER = json.JSONDecoder()
_MISSING = object()
_MAX_DECODE_ATTEMPTS = 32

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
        return to_items(c.value, ItemList([]))
    assert c.body is not None
    return read_text(c.body)


def best_candidate(text: str) -> ItemList:
    """Apply the candidate rule of the :mod:`visionkit.answers.answer_json` docstring."""
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
        key = (detections(found.items), c.rank, -c.start)
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
    return _ITEMS if holds_items(value) else _OTHER


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
        first = WS.match(text, start).end()
        end = text.find("```", start)
        value = _MISSING
        if text[first:first + 1] in ("[", "{"):
            content = text[start:] if end == -1 else text[start:end]
            with contextlib.suppress(*JSON_ERRORS):
                value = json.loads(content)
            if value is _MISSING and string_aware and end != -1:
                close = matching_close(text, first)
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
    nxt = WS.match(text, i + 1).end()
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
    skip_starts = sorted(skip)
    while True:
        if have_other and attempts >= _MAX_DECODE_ATTEMPTS:
            match = _ITEMS_START.search(text, pos)
            k = bisect.bisect_left(skip_starts, pos)
            if k < len(skip_starts) and (match is None or skip_starts[k] < match.start()):
                pos = skip[skip_starts[k]]  # a fenced block that decoded lies between: passed over
                continue
        else:
            match = _OPEN.search(text, pos)
        if match is None:
            break
        i = match.start()
        if i in skip:
            pos = skip[i]
            continue
        pos = i + 1
        nxt = WS.match(text, i + 1).end()
        ch = text[nxt] if nxt < n else ""
        if ch == "{" and match.group() == "{" and nxt == i + 1:
            # a run of "{{{{": none starts an object; one regex match jumps to its last brace
            pos = _BRACE_RUN.match(text, i).end() - 1
            continue
        if match.group() == "{":
            if nxt < n and ch not in '"}':
                continue
        elif nxt < n and not (ch in '[{"]-' or ch.isdigit() or _LITERAL.match(text, nxt)):
            continue
        looks_like_items = _looks_like_items(text, i)
        if attempts < _MAX_DECODE_ATTEMPTS:  # bounds the work on pathological text ("[[[[...")
            attempts += 1
            value = _MISSING
            with contextlib.suppress(*JSON_ERRORS):
                value, end = _DECODER.raw_decode(text, i)
            if value is not _MISSING:
                out.append(_Candidate(i, _rank_decoded(value), value=value))
                pos = end
                continue
        if looks_like_items:
            close = matching_close(text, i)
            out.append(_Candidate(i, _LOOKS_LIKE_ITEMS, body=text[i:close].strip()))
            if close is None:
                break
            pos = close
            continue
        if not have_other:  # only the first is ever read (as a last resort); slicing each would be quadratic
            out.append(_Candidate(i, _OTHER, body=text[i:].strip()))
            have_other = True
    return out
