"""What a decoded JSON value holds: the item list, its detections, and the normalisation of a list, a
single item or a wrapper object into items. Pure; no scanning of text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...core.detections import ParseWarning
from ...errors import ParseError

__all__ = ["INVALID", "JSON_ERRORS", "ItemList", "detections", "error_message", "holds_items", "to_items"]

ITEM_KEYS = ("box_2d", "point", "mask", "label")
# What json.loads raises on bad text: JSONDecodeError (a ValueError), ValueError for an integer over
# Python's digit limit, RecursionError for absurdly deep nesting.
JSON_ERRORS = (ValueError, RecursionError)


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


def error_message(exc: Exception) -> str:
    """The short reason a JSON decode failed, for a warning or an error."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0]


def detections(items: list[Any]) -> int:
    """How many items look like detections: objects with a 4-element ``box_2d`` or a 2-element ``point``."""
    return sum(isinstance(v, dict) and (_sized(v.get("box_2d"), 4) or _sized(v.get("point"), 2))
               for v in items)


def _sized(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def holds_items(value: Any) -> bool:
    """True for a decoded value that :func:`to_items` turns into items without an error."""
    if isinstance(value, list):
        return _is_item_list(value)
    if isinstance(value, dict):
        if not value or any(k in value for k in ITEM_KEYS):
            return True
        return any(isinstance(v, list) and _is_item_list(v) for v in value.values())
    return False


def _is_item_list(value: list) -> bool:
    """An empty list, or one holding at least one object (other elements are reported one by one)."""
    return not value or any(isinstance(v, dict) for v in value)


def to_items(value: Any, out: ItemList) -> ItemList:
    """Normalise a decoded JSON value (list, single item, wrapper object) into the item list."""
    if isinstance(value, list):
        out.items = value
        return out
    if isinstance(value, dict):
        if any(k in value for k in ITEM_KEYS):
            out.items = [value]
            return out
        lists = ([v for v in value.values() if isinstance(v, list) and _is_item_list(v)]
                 or [v for v in value.values() if isinstance(v, list)][:1])  # [null], [1, 2]: reported
        if lists:
            # the member list with the most detections; the first holding an object, then the first, on a tie
            out.items = max(lists, key=lambda v: (detections(v), bool(v)))
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
