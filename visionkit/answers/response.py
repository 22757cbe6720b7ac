"""Read the model's text out of a full ``generateContent`` response body.

Rules (from the API reference; see ``shared/design/GEMINI-API-FACTS.md``):

* ``promptFeedback.blockReason`` set (an HTTP 200 with no candidates) -> :class:`BlockedError`.
* No candidates -> :class:`EmptyResponseError`.
* Candidate 0 only; its text parts are joined, parts marked ``"thought": true`` are skipped.
* ``finishReason`` in :data:`BLOCKING_FINISH_REASONS` -> :class:`BlockedError`.
* A field of the wrong JSON type (``finishReason`` as a list, ``parts`` as a number) -> :class:`ParseError`
  naming the field and what was expected.
* ``MAX_TOKENS`` (or any other non-STOP reason, since new values get added) -> the text is returned with
  a note, so the caller can keep what is complete.
* No text at all -> :class:`EmptyResponseError` (with the finish reason, e.g. thinking ate the budget).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..core.text import repair_surrogates
from ..errors import BlockedError, EmptyResponseError, ParseError

__all__ = ["BLOCKING_FINISH_REASONS", "extract_text", "json_kind", "load_response"]

#: finishReason values that mean the answer was withheld for policy reasons.
BLOCKING_FINISH_REASONS = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})


def load_response(text: str) -> Any:
    """Parse a response body given as JSON text; raises :class:`ParseError` naming the position.

    Nesting deeper than Python's recursion limit (``[[[[...``) is a ParseError too, not a RecursionError.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"response body is not valid JSON ({exc.msg} at line {exc.lineno} "
                         f"column {exc.colno})", snippet=text[:80]) from exc
    except RecursionError as exc:
        raise ParseError("response body is not usable JSON: nested too deeply; expected a "
                         "generateContent response object", snippet=text[:80]) from exc
    except ValueError as exc:  # an integer over Python's digit limit
        raise ParseError(f"response body is not usable JSON ({str(exc).split(';')[0]}); expected a "
                         "generateContent response object", snippet=text[:80]) from exc


def is_generate_response(obj: Any) -> bool:
    """True when ``obj`` looks like a generateContent response body (not a model answer)."""
    return isinstance(obj, Mapping) and ("candidates" in obj or "promptFeedback" in obj
                                         or "usageMetadata" in obj)


def _server_text(value: Any, limit: int = 200) -> str:
    """A string the server sent, safe to put in a message: lone surrogates replaced, length bounded."""
    return repair_surrogates(str(value)[:limit])[0]


def _wrong_type(where: str, value: Any, expected: str) -> ParseError:
    return ParseError(f"the response's {where} is a JSON {json_kind(value)}; expected {expected}")


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, for messages: ``null``, ``boolean``, ``number``, ``string``,
    ``list`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object" if isinstance(value, Mapping) else \
        type(value).__name__


def extract_text(response: Mapping) -> tuple[str, list[str]]:
    """Return ``(text, notes)`` from a generateContent response dict.

    ``notes`` are human-readable remarks for the caller's warnings (for example that the answer stopped at
    MAX_TOKENS and may be cut off). Raises :class:`BlockedError` or :class:`EmptyResponseError`, and
    :class:`ParseError` naming the field when a field has the wrong JSON type (``finishReason`` that is
    not a string, ``parts`` that is not a list, ...).
    """
    notes: list[str] = []
    feedback = response.get("promptFeedback")
    if feedback is not None and not isinstance(feedback, Mapping):
        raise _wrong_type("promptFeedback", feedback, "an object")
    block = (feedback or {}).get("blockReason")
    if block:
        raise BlockedError(f"the prompt was blocked by Gemini (blockReason {_server_text(block)}); no answer "
                           "was given", reason=_server_text(block))
    candidates = response.get("candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise _wrong_type("candidates", candidates, "a list of candidates")
    if not candidates:
        raise EmptyResponseError("the response has no candidates (no answer was generated)")
    cand = candidates[0]
    if not isinstance(cand, Mapping):
        raise _wrong_type("candidates[0]", cand, "an object with 'content' and 'finishReason'")
    finish = cand.get("finishReason")
    if finish is not None and not isinstance(finish, str):
        raise _wrong_type("candidates[0].finishReason", finish, "a string such as \"STOP\"")
    if finish in BLOCKING_FINISH_REASONS:
        message = cand.get("finishMessage")
        raise BlockedError(f"Gemini stopped the answer with finishReason {finish}"
                           + (f": {_server_text(message)}" if message else ""), reason=finish)
    content = cand.get("content")
    if content is not None and not isinstance(content, Mapping):
        raise _wrong_type("candidates[0].content", content, "an object with 'parts'")
    parts = (content or {}).get("parts")
    if parts is not None and not isinstance(parts, list):
        raise _wrong_type("candidates[0].content.parts", parts, "a list of parts")
    texts = []
    for part in parts or []:
        if isinstance(part, Mapping) and not part.get("thought") and isinstance(part.get("text"), str):
            texts.append(part["text"])
    text = "".join(texts)
    if finish == "MAX_TOKENS":
        notes.append("finishReason MAX_TOKENS: the answer hit the output limit and may be cut off")
    elif finish not in (None, "", "STOP", "FINISH_REASON_UNSPECIFIED"):
        notes.append(f"finishReason {_server_text(finish)}: the answer did not stop normally")
    if not text.strip():
        why = f" (finishReason {_server_text(finish)})" if finish else ""
        raise EmptyResponseError(f"the response has no answer text{why}")
    return text, notes
