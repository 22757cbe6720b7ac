"""Find the detection list in a model's answer text: fences, prose, wrappers, truncation, bad items.

What is accepted, on purpose:

* JSON inside a Markdown fence of any form (```` ```json ````, ```` ```JSON ````, a bare ```` ``` ````,
  indented or inline, and an opening fence never closed because the answer was cut off), or no fence.
  A fence ends at the first ```` ``` ```` AFTER its JSON value, so ```` ``` ```` inside a label does not
  end it.
* Prose before or after the JSON.
* A list of items, a single item object, or a wrapping object whose member list holds the items
  (``{"detections": [...]}``, ``{"boxes": [...]}``, ...).
* Truncation: when the item list is cut off mid-item, every complete item is kept and the cut item is
  reported as dropped. The scan is string-aware: a ``}`` or ``]`` inside a label is not structure.
* One malformed item (bad JSON inside an otherwise good list) is skipped and reported; the others are kept.
  So are elements that are not objects (``null``, ``true``, numbers): the parser reports each by index.
* Bare ``<start_of_mask><seg_N>...<end_of_mask>`` tokens (not inside a JSON string) are quoted so the item
  can be read. This repair runs only when the JSON does not parse as it is; tokens already inside a string
  are never touched.
* Lone UTF-16 surrogate escapes (``"cup \\ud83d"``, half an emoji) are replaced with U+FFFD before
  decoding, with a warning (see :mod:`visionkit.core.text`).

**Which JSON is the answer** (the candidate rule). Every fenced block and every JSON value in the prose
is a candidate. The candidate that holds the most detections (objects with a 4-value ``box_2d`` or a
2-value ``point``) wins; on a tie, a candidate that decodes as it is beats one that had to be repaired
or salvaged, then the earlier one wins. So an empty first fence followed by the real list, an example
object in the prose (``Each item looks like {"label": "name"}.``) or a fenced snippet inside a label
never hides the real list. When no candidate holds a detection, the first one that is a list of
objects, an empty list, an item or a wrapper wins, then the first that looks like the start of items,
then the first at all. Inside a wrapper, the member list with the most detections wins (the first list
holding an object on a tie; with no such list, the first list, whose elements are then reported one by
one).

Anything with no JSON at all raises :class:`~visionkit.errors.ParseError`.

Work is linear in the length of the answer: each bracket is scanned a bounded number of times.

The parts: :mod:`~visionkit.answers.answer_json.candidates` (fences, prose values and the candidate rule),
:mod:`~visionkit.answers.answer_json.repairs` (surrogates, seg tokens),
:mod:`~visionkit.answers.answer_json.salvage`
(truncated answers, malformed items), :mod:`~visionkit.answers.answer_json.scan` (string-aware bracket
scanning)
and :mod:`~visionkit.answers.answer_json.items` (what a decoded value holds).
"""

from __future__ import annotations

from .candidates import best_candidate
from .items import INVALID, ItemList
from .repairs import repair_text_surrogates

__all__ = ["INVALID", "ItemList", "find_items"]


def find_items(text: str) -> ItemList:
    """Return the raw JSON items of an answer text (each usually a dict), with warnings.

    Item indexes in warnings count every element of the answer's list, including skipped ones. An element
    that is not valid JSON is :data:`INVALID` (and has its warning); other elements are as decoded.
    """
    text, notes = repair_text_surrogates(text)
    out = best_candidate(text)
    out.warnings[:0] = notes
    return out
