"""Tolerant, string-aware scanning of JSON text that may not parse: where a bracket's value ends, the
children of an array, the member lists of an object. A ``}`` or ``]`` inside a string is not structure.
Nothing here validates or decodes a value."""

from __future__ import annotations

import re

__all__ = ["TOKEN", "WS", "array_children", "matching_close", "member_arrays", "skip_value"]

# A string token (complete), a lone quote (an unterminated string), or a bracket.
# (The string is written as an unrolled loop, ``[^"\\]*(?:\\.[^"\\]*)*``: an alternation per character is
# some 20x slower on long base64 mask strings.)
TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]', re.DOTALL)
# The same, with a run of one bracket kind as one token ("[[[[" is one match, not four): a long run of
# brackets costs one regex step, not a Python loop iteration per bracket.
RUN_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|\[+|\]+|\{+|\}+', re.DOTALL)
WS = re.compile(r"\s*")
_SCALAR_END = re.compile(r"[,\]}\s]")
# After a member's key string: `: [`.
_KEY_THEN_LIST = re.compile(r"\s*:\s*\[")


def matching_close(s: str, i: int) -> int | None:
    """End index (exclusive) of the bracket at ``s[i]``, matching bracket types, or None if the text ends
    first. String-aware; a closer of the wrong type is junk inside the value (``[{...}, }, {...}]``), not
    its end."""
    stack: list[list] = []  # [closer, how many], run-length encoded
    for m in RUN_TOKEN.finditer(s, i):
        tok = m.group()
        kind = tok[0]
        if kind == '"':
            if tok == '"':  # unterminated string: the text ends inside it
                return None
            continue
        if kind in "[{":
            closer = "]" if kind == "[" else "}"
            if stack and stack[-1][0] == closer:
                stack[-1][1] += len(tok)
            else:
                stack.append([closer, len(tok)])
        else:  # a run of closers: each closes the innermost open bracket when it is of its kind, and is
            left, at = len(tok), m.start()  # junk inside the value when it is not
            while left and stack[-1][0] == kind:
                take = min(left, stack[-1][1])
                stack[-1][1] -= take
                left -= take
                at += take
                if not stack[-1][1]:
                    stack.pop()
                    if not stack:
                        return at
    return None


def skip_value(s: str, i: int) -> int | None:
    """End index (exclusive) of the JSON value starting at ``s[i]``, or None if the text ends first.

    String-aware: brackets inside strings are ignored. It does not validate the value.
    """
    ch = s[i]
    if ch in "[{":
        depth = 0
        for m in RUN_TOKEN.finditer(s, i):
            tok = m.group()
            if tok == '"':  # unterminated string: the text ends inside it
                return None
            if tok[0] in "[{":
                depth += len(tok)
            elif tok[0] in "]}":
                if len(tok) >= depth:
                    return m.start() + depth
                depth -= len(tok)
        return None
    if ch == '"':
        m = TOKEN.match(s, i)
        return None if m is None or m.group() == '"' else m.end()
    m = _SCALAR_END.search(s, i)
    if m is None:
        return None
    # A stray `}` where a value should be is a one-character (invalid) value, so the scan moves on.
    return max(m.start(), i + 1)


def array_children(s: str, start: int) -> tuple[list[tuple[int, int]], bool, bool]:
    """Spans of the direct children of the array at ``s[start] == '['``.

    Returns ``(spans, closed, cut_item)``: whether the array's ``]`` was reached, and whether an incomplete
    child was found at the end of the text.
    """
    spans: list[tuple[int, int]] = []
    i = start + 1
    n = len(s)
    while True:
        i = WS.match(s, i).end()
        if i >= n:
            return spans, False, False
        if s[i] == "]":
            return spans, True, False
        if s[i] == ",":
            i += 1
            continue
        end = skip_value(s, i)
        if end is None:
            return spans, False, True
        spans.append((i, end))
        i = end


def member_arrays(s: str) -> list[int]:
    """Where the item list may start: ``[0]`` for a top-level ``[``, else the ``[`` of every member of the
    top-level object whose value is a list (``{"detections": [{...``), in order. One pass over the text."""
    if s.startswith("["):
        return [0]
    out = []
    depth = 0  # 1 = inside the top-level object
    for tok in TOKEN.finditer(s):
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
