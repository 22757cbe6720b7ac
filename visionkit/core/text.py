"""Text that came from a model, made safe to write and to draw.

* Lone UTF-16 surrogates. JSON may spell a code point outside the Basic Multilingual Plane as two
  ``\\uXXXX`` escapes (a surrogate pair, as in ``"\\ud83d\\ude00"``). A model that stops after the first
  half (``"cup \\ud83d"``) leaves a lone surrogate, which Python decodes into a ``str`` that can never be
  encoded to UTF-8: writing it to a file or drawing it raises ``UnicodeEncodeError``.
  :func:`repair_json_surrogates` rewrites such escapes in JSON text to ``\\ufffd`` (U+FFFD, the
  replacement character) before decoding; :func:`repair_surrogates` does the same for code points
  already in a ``str``. Complete pairs are kept.
* Matching. :func:`normalize_label` is the canonical form labels are compared in (dataset categories,
  dedupe, evaluation).
* Drawing. :func:`single_line` turns line breaks and other control characters into spaces (the text
  layout engine cannot lay out several lines in one tag) and cuts text to a maximum length.
"""

from __future__ import annotations

import functools
import re

__all__ = ["REPLACEMENT", "normalize_label", "repair_json_surrogates", "repair_surrogates", "single_line"]

REPLACEMENT = "\ufffd"

# Every backslash escape, left to right, so an escaped backslash (``\\\\ud83d``) is never read as the
# start of a \u escape. Group 1: a high surrogate with its low half; group 2: a lone half.
_ESCAPE = re.compile(r"\\(?:(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                     r"|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.DOTALL)
_MAYBE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")
# Line breaks (CR LF as one), then any other C0/C1 control character or Unicode line/paragraph separator.
_BREAKS = re.compile("\r\n|[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def repair_json_surrogates(text: str) -> tuple[str, int, str | None]:
    """Replace lone surrogate ``\\uXXXX`` escapes in JSON text with ``\\ufffd``.

    Returns:
        ``(text, count, first)``: the repaired text, how many escapes were replaced, and the first one
        with a little context before it (ASCII only), or None when nothing was replaced.
    """
    if not _MAYBE_SURROGATE_ESCAPE.search(text):
        return text, 0, None
    count = 0
    first: str | None = None

    def repl(m: re.Match) -> str:
        nonlocal count, first
        if m.group(2) is None:
            return m.group()
        count += 1
        if first is None:
            context = text[max(0, m.start() - 24):m.end()]
            first = context.encode("ascii", "backslashreplace").decode("ascii")
        return "\\ufffd"

    return _ESCAPE.sub(repl, text), count, first


def repair_surrogates(text: str) -> tuple[str, int]:
    """Replace lone surrogate code points in ``text`` with U+FFFD; a valid pair becomes its code point.

    Returns ``(text, count)``, count being the number of lone surrogates replaced.
    """
    if text.isascii() or not _RAW_SURROGATE.search(text):  # isascii: a fast path for most answers
        return text, 0
    # UTF-16 with surrogatepass joins the pairs; decoding with "replace" turns each lone half into U+FFFD.
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, fixed.count(REPLACEMENT) - text.count(REPLACEMENT)


def single_line(text: str, max_chars: int) -> str:
    """``text`` as one drawable line: control characters and line breaks become spaces, lone surrogates
    U+FFFD, and text longer than ``max_chars`` is cut, ending in an ellipsis."""
    if len(text) > max_chars:
        text = text[:max(max_chars - 1, 0)].rstrip() + "\u2026"
    text = _BREAKS.sub(" ", text)
    return repair_surrogates(text)[0]


_SPACE = re.compile(r"[\s_]+")
# Words that end like plurals but name one thing (or are only used in the plural).
_NOT_PLURAL = frozenset({"lens", "series", "species", "news", "glasses", "scissors", "pants", "jeans",
                         "shorts", "trousers", "tongs", "pliers", "binoculars", "headphones", "earphones"})


@functools.lru_cache(maxsize=4096)
def normalize_label(label: str) -> str:
    """Canonical form for matching labels: lowercase, single spaces, simple plural -> singular.

    ``"Red  Cups"`` -> ``"red cup"``; ``"boxes"`` -> ``"box"``; ``"berries"`` -> ``"berry"``;
    ``"glass"`` stays ``"glass"``; ``"lens"`` and ``"glasses"`` (eyewear) stay as they are. Only the last
    word is singularised.
    """
    text = _SPACE.sub(" ", str(label).strip().lower())
    head, _, last = text.rpartition(" ")
    if last in _NOT_PLURAL:
        pass
    elif len(last) > 3 and last.endswith("ies"):
        last = last[:-3] + "y"
    elif len(last) > 3 and last.endswith(("ches", "shes", "sses", "xes", "zes")):
        last = last[:-2]
    elif len(last) > 2 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        last = last[:-1]
    return f"{head} {last}" if head else last
