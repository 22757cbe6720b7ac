"""Salvage: the items of JSON that does not parse as a whole, because the answer was cut off mid-item
(output limit) or one item is malformed. Complete items are kept; each loss is a warning."""

from __future__ import annotations

import json

from ...core.detections import ParseWarning
from ...errors import ParseError
from .items import INVALID, JSON_ERRORS, ItemList, detections, error_message, to_items
from .scan import array_children, member_arrays, skip_value

__all__ = ["salvage"]


def salvage(body: str) -> ItemList:
    """Recover items from JSON that does not parse as a whole (truncated, or one malformed item)."""
    best: tuple[tuple[int, bool], ItemList] | None = None
    for start in member_arrays(body):
        spans, closed, cut = array_children(body, start)
        # A member list qualifies when it holds an object, is empty, or is cut off before its first element
        # (so a cut-off item's own "box_2d": [1, 2 is not read as the item list).
        if start and spans and not any(body[a] == "{" for a, _ in spans):
            continue
        found = _salvage_array(body, spans, closed, cut)
        key = (detections(found.items), bool(found.items))
        if best is None or key > best[0]:
            best = (key, found)
    if best is not None:
        return best[1]
    # A single object that is cut off or malformed: nothing complete to keep.
    out = ItemList([])
    end = skip_value(body, 0)
    if end is not None:
        try:
            value = json.loads(body[:end])
        except JSON_ERRORS as exc:
            raise ParseError(f"the answer's JSON object is malformed ({error_message(exc)}); expected "
                             "one detection or a list of them", snippet=body[:80]) from exc
        return to_items(value, out)
    out.warnings.append(ParseWarning(0, None, "the answer was cut off inside its only item; "
                                     "1 incomplete item dropped"))
    return out


def _salvage_array(body: str, spans: list[tuple[int, int]], closed: bool, cut: bool) -> ItemList:
    out = ItemList([])
    for index, (a, b) in enumerate(spans):
        try:
            out.items.append(json.loads(body[a:b]))
        except JSON_ERRORS as exc:
            out.items.append(INVALID)
            out.warnings.append(ParseWarning(index, None,
                                             f"item is not valid JSON ({error_message(exc)}); skipped"))
    if cut or not closed:
        dropped = 1 if cut else 0
        out.warnings.append(ParseWarning(
            len(spans) if cut else None, None,
            f"the answer was cut off after {len(spans)} complete items; {dropped} incomplete item"
            f"{'' if dropped == 1 else 's'} dropped"))
    return out
