"""The core type: invariants, indexing, full masks on demand."""

from __future__ import annotations

import numpy as np
import pytest

from visionkit import Detections, MaskCrop


def make(n=3, wh=(40, 30)):
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 40, 30], [1, 2, 3, 4]], float)[:n]
    masks = (MaskCrop(np.ones((10, 10), bool), 0, 0), None, MaskCrop(np.ones((2, 2), bool), 1, 2))[:n]
    return Detections(xyxy, ["a", "b", "c"][:n], wh, scores=[0.1, 0.2, 0.3][:n], masks=masks)


def test_empty():
    d = Detections.empty((10, 20))
    assert len(d) == 0 and d.xyxy.shape == (0, 4) and d[np.zeros(0, bool)].xyxy.shape == (0, 4)


@pytest.mark.parametrize("index, labels", [
    (0, ["a"]), (-1, ["c"]), (slice(1, None), ["b", "c"]), ([2, 0], ["c", "a"]),
    (np.array([True, False, True]), ["a", "c"]), (np.array([], int), []),
])
def test_indexing_always_returns_detections(index, labels):
    sub = make()[index]
    assert isinstance(sub, Detections) and list(sub.labels) == labels
    assert len(sub.masks) == len(labels)


def test_frozen_and_read_only():
    d = make()
    with pytest.raises(AttributeError):
        d.xyxy = None
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 5


@pytest.mark.parametrize("kwargs, message", [
    ({"xyxy": np.zeros((2, 3))}, "shape"),
    ({"labels": ["a"]}, "labels"),
    ({"image_wh": (0, 5)}, "image_wh"),
    ({"scores": [1.0]}, "scores"),
    ({"masks": (MaskCrop(np.ones((5, 5), bool), 38, 0), None)}, "inside"),
    ({"xyxy": [[0, 0, 1, 1], [0, 0, 41, 5]]}, r"xyxy\[1\]"),
    ({"xyxy": [[0, 0, 1, 1], [0, 0, 5, 31]]}, r"xyxy\[1\]"),
    ({"xyxy": [[-0.5, 0, 1, 1], [0, 0, 5, 5]]}, r"xyxy\[0\]"),
    ({"xyxy": [[0, -1, 1, 1], [0, 0, 5, 5]]}, r"xyxy\[0\]"),
    ({"xyxy": [[0, 0, 1, 1], [6, 0, 5, 5]]}, r"xyxy\[1\]"),
    ({"xyxy": [[0, 0, 1, 1], [0, 6, 5, 5]]}, r"xyxy\[1\]"),
    ({"xyxy": [[0, 0, 1, 1], [0, 0, np.nan, 5]]}, r"xyxy\[1\]"),
    ({"xyxy": [[0, 0, 1, np.inf], [0, 0, 5, 5]]}, r"xyxy\[0\]"),
    ({"labels": ["a", 7]}, r"labels\[1\]"),
    ({"labels": ["a", None]}, r"labels\[1\]"),
])
def test_invariants(kwargs, message):
    base = {"xyxy": np.zeros((2, 4)), "labels": ["a", "b"], "image_wh": (40, 30)}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Detections(**base)


def test_boxes_on_the_edges_and_points_are_valid():
    d = Detections([[0, 0, 40, 30], [40, 30, 40, 30], [3.5, 2, 3.5, 2]], ["a", "b", np.str_("c")], (40, 30))
    assert len(d) == 3


def test_full_mask_on_demand_and_non_square():
    d = make(wh=(40, 30))
    full = d.mask(2)
    assert full.shape == (30, 40) and full.sum() == 4 and full[2:4, 1:3].all()
    assert not d.mask(1).any() and d.rle(1) is None and d.mask_area(0) == 100


def test_maskcrop_validation_and_tight_box():
    with pytest.raises(ValueError):
        MaskCrop(np.ones((2, 2), np.uint8), 0, 0)
    data = np.zeros((5, 6), bool)
    data[1:3, 2:5] = True
    assert MaskCrop(data, 10, 20).tight_xyxy() == (12, 21, 15, 23)
    assert MaskCrop(np.zeros((2, 2), bool), 0, 0).tight_xyxy() is None
