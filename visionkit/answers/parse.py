"""Gemini answer -> :class:`~visionkit.core.detections.Detections` in the original image's pixels.

``parse_response`` accepts the model's text, or a full ``generateContent`` response (a dict or its JSON
text). It finds the items (:mod:`visionkit.answers.answer_json`), validates each one, converts coordinates
once
(:mod:`visionkit.core.boxes`) and decodes masks (:mod:`visionkit.core.masks`).

Per-item rules, each recorded in ``Detections.warnings`` with the item index:

* ``box_2d`` must be 4 numbers (numeric strings are accepted). Swapped min/max are put back in order;
  values outside 0-1000 are clipped; a box with zero area after that is dropped.
* An item with ``point: [y, x]`` and no box becomes a point detection (degenerate box ``[x, y, x, y]``).
* An item with neither, or with malformed values, is skipped.
* A missing label becomes ``default_label``; a non-string label is converted with ``str``.
* ``score`` / ``confidence`` in [0, 1] is kept when present.
* A mask that cannot be decoded is dropped; the item keeps its box and other items keep their masks.
  So is a mask with no pixels above the threshold, and the mask of a point-only item (it has no box to
  cover).
* ``null`` and other elements that are not objects are skipped, each with its index.
* Masks are bounded by what the answer can justify (see :mod:`visionkit.core.masks`): a mask crop over
  :data:`~visionkit.core.masks.MAX_MASK_PIXELS`, or masks past
  :data:`~visionkit.core.masks.MAX_ANSWER_MASK_PIXELS`
  in total, are refused with a warning before anything is allocated.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.boxes import GRID, gemini_points_to_xy, gemini_to_pixel_box, gemini_to_xyxy, point_to_box_2d
from ..core.detections import Detections, ParseWarning
from ..core.maskcrop import MaskCrop
from ..core.masks import (
    DEFAULT_THRESHOLD,
    MAX_ANSWER_MASK_PIXELS,
    MAX_MASK_PIXELS,
    decode_mask,
    mask_pixels_bound,
)
from ..errors import InputError, MaskDecodeError, ParseError
from .answer_json import INVALID, find_items
from .response import extract_text, is_generate_response, json_kind

__all__ = ["MAX_ANSWER_CHARS", "MAX_ANSWER_ITEMS", "MAX_OUTPUT_TOKENS", "parse_response", "answer_text"]

#: Gemini's largest output limit, in tokens: 65,536 for the 2.5 and 3 models ("Output token limit",
#: https://ai.google.dev/gemini-api/docs/models), thinking included.
MAX_OUTPUT_TOKENS = 65_536
#: Longest answer text parsed, in characters: the output limit at 16 characters a token, four times
#: the "about 4 characters" of an average token (https://ai.google.dev/gemini-api/docs/tokens); digits are
#: a token each, so real JSON answers are denser still. A longer text is not an answer Gemini can give
#: (a hostile or broken server, a wrong file), and is refused before it is scanned.
MAX_ANSWER_CHARS = 16 * MAX_OUTPUT_TOKENS
#: Most items read from one answer: the output limit at 16 tokens an item. The smallest item a model
#: writes, ``{"box_2d": [1, 2, 3, 4], "label": "a"}``, is about 20 tokens (each digit, quote and bracket
#: is one), so no real answer holds more. Items past it are dropped with one warning: each one costs
#: validation and maybe a mask, and a hostile answer of tiny items would otherwise buy seconds of work.
MAX_ANSWER_ITEMS = MAX_OUTPUT_TOKENS // 16

# A generateContent response body names one of these keys near its start.
_RESPONSE_KEY = re.compile(r'"(?:candidates|promptFeedback)"\s*:')


def answer_text(answer: str | bytes | Mapping) -> tuple[str, list[str]]:
    """The model's text from ``answer`` (text, or a generateContent response as dict/JSON), plus notes."""
    if isinstance(answer, bytes):
        try:
            answer = answer.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"answer bytes are not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if isinstance(answer, Mapping):
        if not is_generate_response(answer):
            raise ParseError("answer dict is not a generateContent response (no 'candidates' or "
                             "'promptFeedback'); pass the model's text or the full response")
        return extract_text(answer)
    if not isinstance(answer, str):
        raise ParseError(f"answer must be str, bytes or a response dict, not {type(answer).__name__}")
    head = answer.lstrip()[:1]
    if head == "{" and _RESPONSE_KEY.search(answer, 0, 4000):
        try:
            body = json.loads(answer)
        except (ValueError, RecursionError) as exc:
            reason = (exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                      if isinstance(exc, RecursionError) else str(exc).split(";")[0])
            raise ParseError(f"answer looks like a generateContent response body but is not valid JSON: "
                             f"{reason}", snippet=answer[:80]) from exc
        if is_generate_response(body):
            return extract_text(body)
    return answer, []


def parse_response(answer: str | bytes | Mapping, image_size: tuple[int, int],
                   threshold: int = DEFAULT_THRESHOLD, *, masks: bool = True,
                   default_label: str = "object", mask_order: str | None = None) -> Detections:
    """Parse a Gemini answer into detections in the ORIGINAL image's pixel space.

    Args:
        answer: the model's text, or a full generateContent response (dict, or its JSON text). From a
            full response the text parts of the first candidate are used; ``"thought": true`` parts are
            skipped.
        image_size: ``(width, height)`` of the original image after EXIF orientation is applied.
        threshold: probability maps (0-255) are binarized at ``> threshold``.
        masks: decode masks; with False, mask fields are ignored (detection task).
        default_label: label given to items that have none (recorded as a warning).
        mask_order: ``"yx"`` or ``"xy"`` when the prompt stated the polygon point order (visionkit's
            polygon prompt asks for ``[y, x]``); None: decided per item from its box (docs/api.md).

    Returns:
        Detections with ``warnings`` listing every skipped, repaired or refused item.

    Raises:
        ParseError: the answer has no JSON at all, its JSON holds no detection list, or its text is over
            :data:`MAX_ANSWER_CHARS`.
        BlockedError, EmptyResponseError: a full response that was blocked or has no text.
    """
    image_wh = _check_size(image_size)
    if mask_order not in (None, "yx", "xy"):
        raise InputError(f"mask_order must be 'yx', 'xy' or None, got {mask_order!r}")
    threshold = _check_threshold(threshold)
    text, notes = answer_text(answer)
    if len(text) > MAX_ANSWER_CHARS:
        raise ParseError(f"the answer text is {len(text):,} characters, over the limit of "
                         f"{MAX_ANSWER_CHARS:,}: Gemini's output limit of {MAX_OUTPUT_TOKENS:,} tokens "
                         "(https://ai.google.dev/gemini-api/docs/models) at 16 characters a token, 4 times "
                         "the average; no real answer is that long, so it was not parsed",
                         snippet=text[:80])
    found = find_items(text)
    warnings = [ParseWarning(None, None, note) for note in notes] + found.warnings
    items = found.items
    if len(items) > MAX_ANSWER_ITEMS:
        warnings.append(ParseWarning(None, None, (
            f"the answer has {len(items):,} items, more than the {MAX_ANSWER_ITEMS:,} that Gemini's output "
            f"limit of {MAX_OUTPUT_TOKENS:,} tokens can hold; items {MAX_ANSWER_ITEMS:,} and later were "
            "dropped")))
        items = items[:MAX_ANSWER_ITEMS]

    boxes: list[list[float]] = []
    points: list[list[float] | None] = []
    labels: list[str] = []
    scores: list[float] = []
    raw_masks: list[tuple[int, int, Any]] = []  # (row, item index, mask value)
    for index, item in enumerate(items):
        if item is INVALID:  # not valid JSON: already reported by find_items
            continue
        row = _read_item(index, item, warnings, default_label)
        if row is None:
            continue
        box_2d, point_yx, label, score = row
        if masks and "mask" in item:
            if box_2d is not None:
                raw_masks.append((len(boxes), index, item["mask"]))
            else:
                warnings.append(ParseWarning(index, "mask", "a point-only item has no box for its mask to "
                                             "cover; mask dropped, point kept"))
        boxes.append(box_2d if box_2d is not None else point_to_box_2d(point_yx))
        points.append(point_yx)
        labels.append(label)
        scores.append(score)

    n = len(boxes)
    if n == 0:
        return Detections.empty(image_wh, warnings=_sorted(warnings))
    box_2d_arr = np.asarray(boxes, dtype=np.float64)
    xyxy = gemini_to_xyxy(box_2d_arr, image_wh)
    point_arr = None
    if any(p is not None for p in points):
        point_arr = np.full((n, 2), np.nan)
        rows = [i for i, p in enumerate(points) if p is not None]
        point_arr[rows] = gemini_points_to_xy(np.asarray([points[i] for i in rows]), image_wh)
    score_arr = None if all(math.isnan(s) for s in scores) else np.asarray(scores, dtype=np.float64)

    crops: list[MaskCrop | None] | None = None
    if raw_masks:
        crops = [None] * n
        pixel_boxes = gemini_to_pixel_box(box_2d_arr[[r for r, _, _ in raw_masks]], image_wh).tolist()
        raw_masks, pixel_boxes = _within_budget(raw_masks, pixel_boxes, image_wh, warnings)

        # Serial on purpose: a nested per-mask thread pool was no faster than one thread on a loaded
        # 2-core machine, is wasted inside the pipeline's own workers, and a module-level pool made any
        # process forked after its creation hang on its first many-mask answer.
        for (row, index, value), pixel_box in zip(raw_masks, pixel_boxes):
            notes: list[str] = []
            try:
                crop = decode_mask(value, box_2d=box_2d_arr[row], pixel_box=pixel_box, image_wh=image_wh,
                                   threshold=threshold, notes=notes, order=mask_order)
            except (MaskDecodeError, RecursionError) as exc:
                reason = (str(exc) if isinstance(exc, MaskDecodeError) else
                          "mask list is nested too deeply; expected a PNG, a polygon or a boolean grid")
                warnings.append(ParseWarning(index, "mask", f"{reason}; box kept without a mask"))
                continue
            if notes:
                warnings.extend(ParseWarning(index, "mask", note) for note in notes)
            if crop.data.size == 0:
                warnings.append(ParseWarning(index, "mask", "box is smaller than one pixel; mask dropped"))
                continue
            if not crop.data.any():
                warnings.append(ParseWarning(index, "mask", f"mask has no pixel above the threshold "
                                             f"{threshold}; box kept without a mask"))
                continue
            crops[row] = crop

    return Detections(xyxy=xyxy, labels=np.asarray(labels, dtype=object), image_wh=image_wh,
                      scores=score_arr, points=point_arr,
                      masks=None if crops is None or all(c is None for c in crops) else tuple(crops),
                      warnings=_sorted(warnings))


#: Largest image side accepted, in pixels: PNG's limit (2**31 - 1), and the largest OpenCV can index.
MAX_IMAGE_SIDE = 2**31 - 1


def _check_size(image_size: Any) -> tuple[int, int]:
    expected = f"(width, height) as two positive whole numbers of pixels up to {MAX_IMAGE_SIDE}"
    try:
        values = tuple(image_size)
    except TypeError as exc:
        raise InputError(f"image_size must be {expected}, got {image_size!r}") from exc
    if len(values) != 2 or any(isinstance(v, (bool, np.bool_)) for v in values):
        raise InputError(f"image_size must be {expected}, got {image_size!r}")
    sides = []
    for v in values:
        try:
            side = int(v)
            whole = side == v
        except (TypeError, ValueError, OverflowError) as exc:  # "10", None, inf, nan
            raise InputError(f"image_size must be {expected}, got {image_size!r}") from exc
        if not whole or not 0 < side <= MAX_IMAGE_SIDE:
            raise InputError(f"image_size must be {expected}, got {image_size!r}")
        sides.append(side)
    return sides[0], sides[1]


def _check_threshold(threshold: Any) -> float:
    if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer,
                                                                             np.floating))
            or not 0 <= threshold <= 255):
        raise InputError(f"threshold must be a number in [0, 255] (pixels above it are in the mask), "
                         f"got {threshold!r}")
    return threshold


def _within_budget(raw_masks: list, pixel_boxes: list[list[int]], image_wh: tuple[int, int],
                   warnings: list[ParseWarning]) -> tuple[list, list[list[int]]]:
    """The mask jobs whose crops fit :data:`MAX_ANSWER_MASK_PIXELS` together, in item order; each one past
    it is reported and dropped before anything is decoded."""
    total = 0
    keep = []
    for k, ((_, index, value), box) in enumerate(zip(raw_masks, pixel_boxes)):
        pixels = mask_pixels_bound(value, box, image_wh)
        if pixels > MAX_MASK_PIXELS:  # decoding refuses it before allocating anything, with its reason
            keep.append(k)
            continue
        if total + pixels > MAX_ANSWER_MASK_PIXELS:
            warnings.append(ParseWarning(index, "mask", f"the answer's masks would cover more than "
                                         f"{MAX_ANSWER_MASK_PIXELS:,} pixels together; mask dropped, "
                                         "box kept"))
            continue
        total += pixels
        keep.append(k)
    if len(keep) == len(raw_masks):
        return raw_masks, pixel_boxes
    return [raw_masks[k] for k in keep], [pixel_boxes[k] for k in keep]


def _sorted(warnings: list[ParseWarning]) -> tuple[ParseWarning, ...]:
    return tuple(sorted(warnings, key=lambda w: -1 if w.index is None else w.index))


def _show(value: Any, *, ensure_ascii: bool = True, limit: int | None = 60) -> str:
    """JSON text of a decoded value for a message or label, cut to ``limit``; never raises."""
    try:
        text = json.dumps(value, ensure_ascii=ensure_ascii)
    except (ValueError, TypeError, RecursionError):  # nested too deeply for the encoder
        text = f"<a JSON {type(value).__name__} nested too deeply>"
    return text if limit is None else text[:limit]


def _number(v: Any) -> float | None:
    """A finite float from a JSON number or numeric string, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if isinstance(v, (int, float)):
        try:
            v = float(v)
        except OverflowError:  # an int with hundreds of digits
            return None
        if math.isfinite(v):
            return v
    return None


def _read_item(index: int, item: Any, warnings: list[ParseWarning], default_label: str
               ) -> tuple[list[float] | None, list[float] | None, str, float] | None:
    """Validate one item. Returns ``(box_2d, point_yx, label, score)`` or None when skipped."""
    def warn(field: str | None, reason: str) -> None:
        warnings.append(ParseWarning(index, field, reason))

    if not isinstance(item, dict):
        warn(None, f"item is {_article(json_kind(item))}, expected an object; skipped")
        return None
    box_2d = point = None
    if "box_2d" in item:
        box_2d = _read_box(item["box_2d"], warn)
        if box_2d is None:
            return None
    if "point" in item:
        point = _read_point(item["point"], warn)
        if point is None and box_2d is None:
            return None
    if box_2d is None and point is None:
        warn(None, f"item has neither 'box_2d' nor 'point' (keys: {', '.join(map(str, item)) or 'none'}); "
                   "skipped")
        return None
    label = item.get("label")
    if label is None or (isinstance(label, str) and not label.strip()):
        warn("label", f"no label; using {default_label!r}")
        label = default_label
    elif not isinstance(label, str):
        label = (_show(label, ensure_ascii=False, limit=None) if isinstance(label, (list, dict))
                 else str(label))
    score = math.nan
    for key in ("score", "confidence"):
        if key in item:
            value = _number(item[key])
            if value is None or not 0.0 <= value <= 1.0:
                warn(key, f"{item[key]!r} is not a number in [0, 1]; ignored")
            else:
                score = value
            break
    return box_2d, point, label.strip(), score


def _read_box(value: Any, warn) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        warn("box_2d", f"expected [ymin, xmin, ymax, xmax], got {_show(value)}; skipped")
        return None
    nums = None
    if all(type(v) is int or type(v) is float for v in value):  # the usual case: plain JSON numbers
        with contextlib.suppress(OverflowError):  # an int with hundreds of digits: _number says None
            nums = [float(v) for v in value]
    if nums is None or not all(map(math.isfinite, nums)):
        nums = [_number(v) for v in value]
    if any(v is None for v in nums):
        warn("box_2d", f"expected 4 numbers, got {_show(value)}; skipped")
        return None
    ymin, xmin, ymax, xmax = nums
    if 0.0 <= ymin < ymax <= GRID and 0.0 <= xmin < xmax <= GRID:
        return nums  # ordered, inside the grid, not empty: what the checks below would return
    if ymin > ymax or xmin > xmax:
        warn("box_2d", f"min and max swapped in {_show(value)}; reordered")
        ymin, ymax = sorted((ymin, ymax))
        xmin, xmax = sorted((xmin, xmax))
    clipped = [min(max(v, 0.0), GRID) for v in (ymin, xmin, ymax, xmax)]
    if clipped != [ymin, xmin, ymax, xmax]:
        warn("box_2d", f"values outside 0-1000 in {_show(value)}; clipped")
    ymin, xmin, ymax, xmax = clipped
    if ymax - ymin <= 0 or xmax - xmin <= 0:
        warn("box_2d", f"box {_show(value)} has zero area; skipped")
        return None
    return [ymin, xmin, ymax, xmax]


def _read_point(value: Any, warn) -> list[float] | None:
    nums = [_number(v) for v in value] if isinstance(value, (list, tuple)) and len(value) == 2 else None
    if nums is None or any(v is None for v in nums):
        warn("point", f"expected [y, x] numbers, got {_show(value)}; ignored")
        return None
    return [min(max(v, 0.0), GRID) for v in nums]


def _article(kind: str) -> str:
    """``null`` as is, else the JSON kind with its article (``a boolean``, ``an object``)."""
    return kind if kind == "null" else ("an " if kind[0] in "aeiou" else "a ") + kind
