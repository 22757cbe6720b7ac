"""Issue 19 #11: hostile masks. A 3 KB answer of 45 full-image 3-point polygons on a 4000x3000 image held
539 MB above baseline through parse_response + to_coco (every crop is the whole image: 12 MB of bools),
because the answer's mask budget (2**29 pixels) let 44 of them in. With 3 * 2**26 the first 16 are kept,
the rest refused with a warning (boxes kept), and the peak stays under 300 MB; an honest answer of 100
masks on the same image keeps every mask. Memory is traced (tracemalloc sees numpy's buffers)."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from visionkit.answers.parse import parse_response
from visionkit.core.masks import MAX_ANSWER_MASK_PIXELS
from visionkit.formats.coco import to_coco
from visionkit.testing.synthetic import segment_answer

WH = (4000, 3000)
TRIANGLES = [[[0, 0], [1000, 0], [1000, 1000]], [[0, 0], [0, 1000], [1000, 1000]]]


def _hostile(n: int) -> str:
    return json.dumps([{"box_2d": [0, 0, 1000, 1000], "label": f"x{i % 3}", "mask": TRIANGLES[i % 2]}
                       for i in range(n)])


def _traced(text: str):
    tracemalloc.start()
    try:
        d = parse_response(text, WH)
        coco = to_coco([("a.jpg", WH, d)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2**20, d, coco


@pytest.mark.parametrize("answer, n, masks_kept", [
    (_hostile(45), 45, MAX_ANSWER_MASK_PIXELS // (WH[0] * WH[1])),  # the reported answer: 16 kept
    (_hostile(1), 1, 1),
    (_hostile(0), 0, 0),                                             # the empty case
    (segment_answer(100, seed=1), 100, 100),                         # honest: every mask kept
], ids=["hostile-45", "one", "empty", "honest-100"])
def test_masks_stay_under_300_mb_through_parse_and_coco(answer, n, masks_kept):
    peak, d, coco = _traced(answer)
    assert peak < 300, f"{peak:.0f} MB"
    assert len(d) == n and len(coco["annotations"]) == n  # every box is kept
    kept = sum(d.has_mask(i) for i in range(n)) if d.masks is not None else 0
    assert kept == masks_kept
    refused = [w for w in d.warnings if "pixels together" in w.reason]
    assert len(refused) == n - masks_kept
