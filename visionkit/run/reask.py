"""Ask once more, with the polygon prompt, when an answer's masks cannot be decoded.

Gemini 2.5 Flash now often answers a PNG-mask prompt with ``<start_of_mask><seg_N>`` tokens (no public
decoder exists), and forced JSON mode has produced placeholder strings instead of masks (GEMINI-API-FACTS
section 6). When a segmentation answer holds masks that do not decode, :func:`reask` sends the same
image once more asking for ``[y, x]`` polygons (the polygon prompt, JSON mode off) and keeps the answer
that decodes more masks (the first one on a tie, or when the second request fails).

The answer kept is returned with a ``"visionkit"`` entry, saved with it in ``OUT/responses``::

    "visionkit": {"usage": {...summed over both requests...}, "requests": 2,
                  "maskFormat": "polygon", "maskOrder": "yx", "reasked": "<why>",
                  "answeredBy": "<the modelVersion>"}

so the saved response is the one used, both requests count in the run's usage, and a later parse knows the
polygon point order the prompt stated.

The check parses the answer (masks decoded); the kept answer is returned as an :class:`Answer`, which
carries that parse, so the image's step reuses it (:func:`reuse_parse`) instead of parsing it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.usage import Usage
from ..errors import APIError, VisionkitError

__all__ = ["META_KEY", "Answer", "annotate_meta", "mask_stats", "no_reask", "reask", "reuse_parse",
           "saved_meta"]

#: The key of visionkit's own entry in a saved response.
META_KEY = "visionkit"


class Answer(dict):
    """A response (a plain dict to JSON and to every reader) that also carries the parse the re-ask check
    made of it: ``parsed = (size_wh, mask_order, Detections)`` at the default threshold, masks decoded.
    The parse is never saved; :func:`reuse_parse` hands it to the image's step once."""

    parsed: tuple | None = None


def _parse(response: Any, size_wh: tuple[int, int], mask_order: str | None) -> Any:
    """The check's parse (default threshold, masks decoded), or None when the answer does not parse."""
    from ..answers.parse import parse_response

    try:
        return parse_response(response, size_wh, masks=True, mask_order=mask_order)
    except VisionkitError:
        return None


def _stats(dets: Any) -> tuple[int, int, str]:
    if dets is None:
        return 0, 0, ""
    bad = [w for w in dets.warnings if w.field == "mask" and "smaller than one pixel" not in w.reason]
    decoded = sum(m is not None for m in dets.masks) if dets.masks is not None else 0
    return decoded, len(bad), (bad[0].reason if bad else "")


def mask_stats(response: Any, size_wh: tuple[int, int], mask_order: str | None) -> tuple[int, int, str]:
    """``(decoded, undecodable, first reason)`` of a segmentation answer's masks (0, 0, "" if unparsable)."""
    return _stats(_parse(response, size_wh, mask_order))


def reuse_parse(answer: Any, size_wh: tuple[int, int], threshold: int, mask_order: str | None,
                masks: bool) -> Any:
    """The Detections the re-ask check parsed from ``answer``, when that parse is the one asked for (same
    size and point order, the default threshold, masks decoded), else None. Handed out once: the step
    owns them then."""
    from ..answers.parse import DEFAULT_THRESHOLD

    parsed = getattr(answer, "parsed", None)
    if parsed is None:
        return None
    answer.parsed = None  # not held any longer (an unsaved answer is kept until the run's end)
    if not masks or threshold != DEFAULT_THRESHOLD:
        return None
    size, order, dets = parsed
    return dets if (tuple(size), order) == (tuple(size_wh), mask_order) else None


def _kept(response: dict, size_wh: tuple[int, int], mask_order: str | None, dets: Any) -> Answer:
    kept = Answer(response)
    if dets is not None:
        kept.parsed = (size_wh, mask_order, dets)
    return kept


def no_reask(first: Any) -> dict:
    """``first.response`` with its ``"visionkit"`` entry, not checked for undecodable masks."""
    return annotate_meta(first, _usage(first))


def _usage(result: Any) -> Usage:
    return Usage.of(getattr(result, "usage", None) or result.response.get("usageMetadata"))


def annotate_meta(result: Any, usage: Usage, **extra: Any) -> dict:
    """``result.response`` with its ``"visionkit"`` entry (usage, request count, mask format and order,
    and ``answeredBy``: the response's ``modelVersion``, the model that really answered)."""
    meta = {"usage": usage.to_json(), "requests": usage.requests,
            "maskFormat": getattr(result, "mask_format", None),
            "maskOrder": getattr(result, "mask_order", None),
            "answeredBy": result.response.get("modelVersion")}
    meta.update(extra)
    return {**result.response, META_KEY: meta}


def reask(client: Any, path: Path, task: str, prompt: str | None, classes: Sequence[str] | None,
          first: Any, size_wh: tuple[int, int]) -> tuple[dict, int, str | None]:
    """Check ``first`` (an AnnotateResult) and re-ask once if its masks do not decode.

    Returns ``(response with its "visionkit" entry, retries made by the second request, note for the
    image's warnings)``. The second request itself is not a retry: it is counted as a re-ask (the
    ``"visionkit"`` entry, the run's usage).
    """
    usage = _usage(first)
    if task != "segment" or getattr(first, "mask_format", None) == "none":
        return annotate_meta(first, usage), 0, None
    order = getattr(first, "mask_order", None)
    dets = _parse(first.response, size_wh, order)
    decoded, bad, why = _stats(dets)
    if not bad:
        return _kept(annotate_meta(first, usage), size_wh, order, dets), 0, None
    reason = f"{bad} of {bad + decoded} masks could not be decoded ({why.split(';')[0]})"
    from ..gemini.fleet import answered_by

    other = answered_by(getattr(client, "model", None), first.response.get("modelVersion"))
    if other:  # a routed id: the model that answered may give another mask format than the one asked
        reason += f" (the answer came from {other}, not {client.model})"
    try:
        second = client.annotate(path, task, classes=classes, mask_format="polygon", json_mode=False)
    except APIError as exc:
        note = f"{reason}; asking again with the polygon prompt failed ({type(exc).__name__}: {exc})"
        return (_kept(annotate_meta(first, usage, reasked=note), size_wh, order, dets),
                max(getattr(exc, "attempts", 1) - 1, 0), note)
    usage.add(_usage(second))
    order2 = getattr(second, "mask_order", None)
    dets2 = _parse(second.response, size_wh, order2)
    decoded2, bad2, _ = _stats(dets2)
    if decoded2 > decoded:
        note = (f"{reason}; asked again with the polygon prompt ([y, x] points): {decoded2} masks decoded"
                + (f", {bad2} not" if bad2 else "") + "; that answer is used")
        return (_kept(annotate_meta(second, usage, reasked=note), size_wh, order2, dets2),
                second.attempts - 1, note)
    note = (f"{reason}; asked again with the polygon prompt, which decoded {decoded2}; the first answer "
            "is kept")
    return _kept(annotate_meta(first, usage, reasked=note), size_wh, order, dets), second.attempts - 1, note


def saved_meta(answer: Any) -> Mapping:
    """The ``"visionkit"`` entry of a saved or fresh response ({} when there is none)."""
    meta = answer.get(META_KEY) if isinstance(answer, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}
