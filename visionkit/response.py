"""Read the model's text out of a full ``generateContent`` response body.

Rules (from the API reference; see ``shared/design/GEMINI-API-FACTS.md``):

* ``promptFeedback.blockReason`` set (an HTTP 200 with no candidates) -> :class:`BlockedError`.
* No candidates -> :class:`EmptyResponseError`.
* Candidate 0 only; its text parts are joined, parts marked ``"thought": true`` are skipped.
* ``finishReason`` in :data:`BLOCKING_FINISH_REASONS` -> :class:`BlockedError`.
* ``MAX_TOKENS`` (or any other non-STOP reason, since new values get added) -> the text is returned with
  a note, so the caller can keep what is complete.
* No text at all -> :class:`EmptyResponseError` (with the finish reason, e.g. thinking ate the budget).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import BlockedError, EmptyResponseError, ParseError

__all__ = ["BLOCKING_FINISH_REASONS", "extract_text", "load_response"]

#: finishReason values that mean the answer was withheld for policy reasons.
BLOCKING_FINISH_REASONS = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})


def load_response(text: str) -> Any:
    """Parse a response body given as JSON text; raises :class:`ParseError` naming the position."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"response body is not valid JSON ({exc.msg} at line {exc.lineno} "
                         f"column {exc.colno})", snippet=text[:80]) from exc


def is_generate_response(obj: Any) -> bool:
    """True when ``obj`` looks like a generateContent response body (not a model answer)."""
    return isinstance(obj, Mapping) and ("candidates" in obj or "promptFeedback" in obj
                                         or "usageMetadata" in obj)


def extract_text(response: Mapping) -> tuple[str, list[str]]:
    """Return ``(text, notes)`` from a generateContent response dict.

    ``notes`` are human-readable remarks for the caller's warnings (for example that the answer stopped at
    MAX_TOKENS and may be cut off). Raises :class:`BlockedError` or :class:`EmptyResponseError`.
    """
    notes: list[str] = []
    feedback = response.get("promptFeedback") or {}
    block = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    if block:
        raise BlockedError(f"the prompt was blocked by Gemini (blockReason {block}); no answer was given",
                           reason=str(block))
    candidates = response.get("candidates")
    if not candidates or not isinstance(candidates, list) or not isinstance(candidates[0], Mapping):
        raise EmptyResponseError("the response has no candidates (no answer was generated)")
    cand = candidates[0]
    finish = cand.get("finishReason")
    if finish in BLOCKING_FINISH_REASONS:
        message = cand.get("finishMessage")
        raise BlockedError(f"Gemini stopped the answer with finishReason {finish}"
                           + (f": {message}" if message else ""), reason=str(finish))
    content = cand.get("content") or {}
    parts = content.get("parts") if isinstance(content, Mapping) else None
    texts = []
    for part in parts or []:
        if isinstance(part, Mapping) and not part.get("thought") and isinstance(part.get("text"), str):
            texts.append(part["text"])
    text = "".join(texts)
    if finish == "MAX_TOKENS":
        notes.append("finishReason MAX_TOKENS: the answer hit the output limit and may be cut off")
    elif finish not in (None, "", "STOP", "FINISH_REASON_UNSPECIFIED"):
        notes.append(f"finishReason {finish}: the answer did not stop normally")
    if not text.strip():
        why = f" (finishReason {finish})" if finish else ""
        raise EmptyResponseError(f"the response has no answer text{why}")
    return text, notes
