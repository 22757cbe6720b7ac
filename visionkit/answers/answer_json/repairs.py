"""Repairs of answer text before it is read: lone UTF-16 surrogates (see :mod:`visionkit.core.text`) and
bare ``<start_of_mask><seg_N>...`` tokens; then reading repaired text, salvaging what still does not
decode."""

from __future__ import annotations

import json
import re

from ...core.detections import ParseWarning
from ...core.text import repair_json_surrogates, repair_surrogates
from .items import JSON_ERRORS, ItemList, to_items
from .salvage import salvage

__all__ = ["quote_bare_tokens", "read_text", "repair_text_surrogates"]

# Left to right: a complete JSON string (kept as is), or a bare `<start_of_mask><seg_1>...` token run outside
# any string, with an optional lopsided closing quote (`"mask": <start_of_mask><seg_35>...<seg_22>"`).
_STRING_OR_SEG = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"'
                            r'|<start_of_mask>(?:\s*<seg_\d+>)*(?:\s*<end_of_mask>)?"?', re.DOTALL)


def repair_text_surrogates(text: str) -> tuple[str, list[ParseWarning]]:
    """The text with every lone UTF-16 surrogate (raw, or a JSON ``\\ud83d`` escape) replaced with U+FFFD,
    and the warning that says how many were (none when there were none)."""
    text, raw = repair_surrogates(text)
    text, escaped, first = repair_json_surrogates(text)
    notes: list[ParseWarning] = []
    if raw or escaped:
        where = f" (first: {first!r})" if first else ""
        notes.append(ParseWarning(None, None, f"{raw + escaped} lone UTF-16 surrogate"
                                  f"{'' if raw + escaped == 1 else 's'} (half of an emoji escape){where} "
                                  "replaced with U+FFFD"))
    return text, notes


def quote_bare_tokens(body: str) -> str:
    """Quote ``<start_of_mask>...`` token runs standing outside JSON strings; strings are kept as they are."""
    def repl(m: re.Match) -> str:
        tok = m.group()
        if not tok.startswith("<"):
            return tok
        return '"' + "".join(tok.rstrip('"').split()) + '"'

    return _STRING_OR_SEG.sub(repl, body)


def read_text(body: str) -> ItemList:
    """Items of JSON text that may need the bare-token repair, or salvage when it does not decode."""
    try:
        value = json.loads(body)
    except JSON_ERRORS:
        if "<start_of_mask>" not in body:
            return salvage(body)
        body = quote_bare_tokens(body)
        try:
            value = json.loads(body)
        except JSON_ERRORS:
            return salvage(body)
    return to_items(value, ItemList([]))
