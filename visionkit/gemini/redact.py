"""Key echoes: every run of 8+ characters of the API key is redacted from what the server sends, in
clear and in the encodings a server (or a model) may choose.

* **In clear**: every ``min_run``-long piece of the key is searched for (``str.find``/``bytes.find``, C
  speed, so a 60 MB body costs a few hundred ms at worst).
* **Encoded**: one character of the key may be written ``\\uXXXX`` (JSON; ``\\\\uXXXX`` when the answer
  text is itself JSON inside the JSON body, as labels are), ``\\xXX``, ``%XX`` (URL encoding; ``%25XX``
  when encoded twice, or thrice), or ``&#NN;`` / ``&#xXX;`` (HTML; the ``;`` may be left out, as browsers
  allow: the digits then run as far as they go), each mixed freely with plain characters. Around every
  encoded character the text is decoded and searched again; the hit is redacted in its original, encoded
  form.
* **Encoded whole**: base64 (standard or URL-safe alphabet) or hex (lower or upper case) of the key's UTF-8
  bytes. A run of ``min_run`` key characters holds at least ``(min_run - 2) // 3`` whole 3-byte groups of
  base64 wherever it starts in the encoded stream, so each 4-character group pair of the key's base64 at
  its three byte alignments is searched for in clear, and each ``2 * min_run`` hex digits at even offsets.
  (A key shorter than ``min_run``, a test stand-in, is not searched for in these forms.)
* **Split**: a key cut into pieces over several text ``parts`` of a candidate (each shorter than
  ``min_run``) is whole in the answer text the parts make: :func:`redact_split_parts` searches the joined
  text and redacts the pieces in every part they fall in.

Overlapping or touching hits merge into one ``[redacted]``.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["MIN_KEY_FRAGMENT", "REDACTED", "key_spans", "redact_key", "redact_split_parts"]

#: Shortest run of key characters that is redacted wherever it appears.
MIN_KEY_FRAGMENT = 8
REDACTED = "[redacted]"

# An encoded character: JSON \uXXXX (any number of backslashes), \xXX, %XX (%25XX: twice), &#NN; or &#xXX;
# (the ";" optional). Written to
# start with a character class, which the regex engine scans for at C speed (an alternation of the forms
# is 3-4x slower on a 64 MB body without any).
_ENCODED = (r"[\\%&](?:(?<=\\)\\*(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2})|(?<=%)(?:25){0,2}[0-9a-fA-F]{2}"
            r"|(?<=&)#(?:[xX][0-9a-fA-F]{1,6}|[0-9]{1,7});?)")
# A region is read as encoded characters and runs of plain text (one token each, so a long run is cheap).
_TOKEN = re.compile(rf"(?P<e>{_ENCODED})|[^\\%&]+|.", re.DOTALL)
_LONGEST_UNIT = 12  # "&#x0010FFFF;"; more backslashes only make a unit longer


def _unit_char(token: str) -> str:
    """The character an encoded unit stands for."""
    try:
        if token[0] == "%":
            digits = token[1:]
            while len(digits) > 2 and digits.startswith("25"):  # %2541: "%41" encoded again
                digits = digits[2:]
            return chr(int(digits, 16))
        if token[0] == "&":
            body = token[2:].rstrip(";")
            return chr(int(body[1:], 16) if body[:1] in "xX" else int(body))
        return chr(int(token.lstrip("\\")[1:], 16))
    except (ValueError, OverflowError):  # past U+10FFFF
        return "\0"


def _merge(hits: list[tuple[int, int]]) -> list[tuple[int, int]]:
    hits.sort()
    merged: list[list[int]] = []
    for start, end in hits:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _plain_hits(text: Any, key: Any, run: int) -> list[tuple[int, int]]:
    if len(key) < run:  # not a real key (test stand-ins): only the whole key, as a whole
        run = len(key)
    hits = []
    for gram in {key[i:i + run] for i in range(len(key) - run + 1)}:
        at = text.find(gram)
        while at != -1:
            hits.append((at, at + run))
            at = text.find(gram, at + 1)
    return hits


@functools.lru_cache(maxsize=8)
def _key_char_pattern(key: str, as_bytes: bool) -> re.Pattern:
    """An encoded character that stands for a character of ``key`` (JSON's ``\\u003c``, ``\\u003d`` ...,
    in every answer, stand for none and cost nothing: they never match)."""
    hexes = "|".join(sorted({f"{ord(c):02x}" for c in key}))
    decs = "|".join(sorted({str(ord(c)) for c in key}))
    text = (rf"[\\%&](?:(?<=\\)\\*(?:u00(?:{hexes})|x(?:{hexes}))|(?<=%)(?:25){{0,2}}(?:{hexes})"
            rf"|(?<=&)#(?:0*(?:{decs})|x0*(?:{hexes})))")
    return re.compile(text.encode() if as_bytes else text, re.IGNORECASE)


def _regions(text: str | bytes, key: str) -> list[list[int]]:
    """Spans of ``text`` around every encoded character that stands for a key character, wide enough to
    hold a whole key of encoded characters on either side; overlapping ones merged."""
    reach = (len(key) + 1) * _LONGEST_UNIT
    regions: list[list[int]] = []
    for m in _key_char_pattern(key, isinstance(text, (bytes, bytearray))).finditer(text):
        start, end = max(0, m.start() - reach), m.end() + reach
        if regions and start <= regions[-1][1]:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return regions


def _encoded_hits(text: str | bytes, key: str, run: int) -> list[tuple[int, int]]:
    """Hits of the key written with encoded characters, as spans of ``text``."""
    hits = []
    for start, end in _regions(text, key):
        region = text[start:end]
        if isinstance(region, (bytes, bytearray)):
            region = region.decode("latin-1")  # one character per byte: offsets stay byte offsets
        decoded, at, tokens = [], 0, []  # tokens: (decoded start, original start, original end, plain)
        for m in _TOKEN.finditer(region):
            piece = _unit_char(m.group()) if m.lastgroup == "e" else m.group()
            tokens.append((at, m.start(), m.end(), m.lastgroup != "e"))
            decoded.append(piece)
            at += len(piece)
        starts = [t[0] for t in tokens]
        for a, b in _plain_hits("".join(decoded), key, run):
            hits.append((start + _original(tokens, starts, a, False),
                         start + _original(tokens, starts, b, True)))
    return hits


def _original(tokens: list, starts: list[int], pos: int, end: bool) -> int:
    """The offset in the region of decoded offset ``pos`` (``end``: an exclusive end, which takes the
    whole of an encoded character)."""
    first, o_start, o_end, plain = tokens[bisect.bisect_right(starts, pos - end) - 1]
    return o_start + (pos - first) if plain else (o_end if end else o_start)


@functools.lru_cache(maxsize=8)
def _whole_grams(key: str, run: int) -> tuple[str, ...]:
    """The pieces of the key's base64 and hex encodings searched for (module docstring)."""
    raw = key.encode("utf-8")
    if len(key) < run:
        return ()
    grams: set[str] = set()
    for digits in (raw.hex(), raw.hex().upper()):
        grams.update(digits[i:i + 2 * run] for i in range(0, len(digits) - 2 * run + 1, 2))
    width = 4 * max(1, (run - 2) // 3)
    for shift in range(3):
        tail = raw[shift:]
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            coded = encode(tail)[:len(tail) // 3 * 4].decode("ascii")  # whole groups only
            grams.update(coded[i:i + width] for i in range(0, len(coded) - width + 1, 4))
    return tuple(sorted(grams))


def _whole_hits(text: Any, key: str, run: int) -> list[tuple[int, int]]:
    hits = []
    as_bytes = isinstance(text, (bytes, bytearray))
    for gram in _whole_grams(key, run):
        needle: Any = gram.encode("ascii") if as_bytes else gram
        at = text.find(needle)
        while at != -1:
            hits.append((at, at + len(needle)))
            at = text.find(needle, at + 1)
    return hits


def key_spans(text: str | bytes, key: str, min_run: int = MIN_KEY_FRAGMENT) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` spans of ``text`` that hold a run of ``min_run``+ key characters, in clear
    or encoded (see the module docstring)."""
    if not text or not key:
        return []
    as_bytes = isinstance(text, (bytes, bytearray))
    hits = _plain_hits(text, key.encode("utf-8") if as_bytes else key, min_run)
    hits += _encoded_hits(text, key, min_run)
    hits += _whole_hits(text, key, min_run)
    return _merge(hits) if hits else []


def redact_key(text: str | bytes, key: str, min_run: int = MIN_KEY_FRAGMENT) -> Any:
    """``text`` (str or bytes) with every run of ``min_run``+ characters that also occurs in ``key``
    replaced by ``[redacted]``, in clear or encoded; the same object when there was none."""
    spans = key_spans(text, key, min_run)
    if not spans:
        return text
    mark: Any = REDACTED.encode() if isinstance(text, (bytes, bytearray)) else REDACTED
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], mark]
        last = end
    out.append(text[last:])
    return text[:0].join(out)


def _part_lists(data: Any) -> Iterator[list]:
    """Every ``parts`` list of text parts in a decoded JSON value (iterative: no recursion limit)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            parts = value.get("parts")
            if isinstance(parts, list) and sum(isinstance(p, dict) and isinstance(p.get("text"), str)
                                               for p in parts) > 1:
                yield parts
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _redact_joined(parts: list, key: str, min_run: int) -> bool:
    """Redact the key where it is whole only in the joined text of ``parts``; True when something was."""
    texts = [p for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
    changed = False
    # the answer is made of the parts that are not thoughts; the key may also be whole across all of them
    for group in ([p for p in texts if not p.get("thought")], texts):
        joined = "".join(p["text"] for p in group)
        spans = key_spans(joined, key, min_run)
        if not spans:
            continue
        offset, cuts = 0, []
        for p in group:
            n = len(p["text"])
            # the mark goes where the hit starts; the parts it runs on into lose their share of it
            cuts.append([(max(s, offset) - offset, min(e, offset + n) - offset, s >= offset)
                         for s, e in spans if s < offset + n and e > offset])
            offset += n
        for p, own in zip(group, cuts):
            text, out, last = p["text"], [], 0
            for s, e, first in own:
                out += [text[last:s], REDACTED if first else ""]
                last = e
            p["text"] = "".join(out) + text[last:]
        changed = True
    return changed


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _UNREADABLE


_UNREADABLE = object()


def redact_split_parts(body: bytes, key: str, min_run: int = MIN_KEY_FRAGMENT) -> bytes:
    """``body`` (a JSON response, or JSON lines of batch results) with the key redacted where it is whole
    only once a candidate's text parts are joined; the same object when there was none. A line that is not
    JSON is left as it is (no text parts can be joined in it)."""
    if len(key) < min_run or body.count(b'"text"') < 2:
        return body
    whole = _loads(body)
    lines = [whole] if whole is not _UNREADABLE else [_loads(line) for line in body.split(b"\n")]
    changed = [any([_redact_joined(parts, key, min_run) for parts in _part_lists(doc)])
               if doc is not _UNREADABLE else False for doc in lines]
    if not any(changed):
        return body
    if whole is not _UNREADABLE:
        return json.dumps(whole, ensure_ascii=False).encode("utf-8")
    return b"\n".join(json.dumps(doc, ensure_ascii=False).encode("utf-8") if was else line
                      for doc, was, line in zip(lines, changed, body.split(b"\n")))
