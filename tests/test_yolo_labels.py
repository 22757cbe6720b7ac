"""Reading YOLO label files strictly (class range, numbers) and never merging two images' label files."""

from __future__ import annotations

import pytest

from visionkit import InputError
from visionkit.formats.yolo import read_yolo_labels

NAMES = ["cat", "dog"]


@pytest.mark.parametrize("text, match", [
    ("-1 0.5 0.5 0.2 0.2", r"a\.txt line 1: class -1 is out of range; expected 0 to 1"),
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2", r"a\.txt line 2: class 2 is out of range"),
    ("1.5 0.5 0.5 0.2 0.2", r"a\.txt line 1: class '1.5' is not an integer"),
    ("cat 0.5 0.5 0.2 0.2", r"a\.txt line 1: class 'cat' is not an integer"),
    ("0 0.5 x 0.2 0.2", r"a\.txt line 1: coordinates must be numbers"),
    ("0 0.5 nan 0.2 0.2", r"a\.txt line 1: coordinates must be finite"),
    ("\n0 0.5 0.5 0.2", r"a\.txt line 2: expected 'class cx cy w h'"),
])
def test_read_yolo_labels_refuses_bad_lines_naming_file_and_line(text, match):
    with pytest.raises(InputError, match=match):
        read_yolo_labels(text, (100, 50), NAMES, source="labels/train/a.txt")


@pytest.mark.parametrize("text, labels", [
    ("", []),
    ("0 0.5 0.5 0.2 0.2", ["cat"]),
    ("1 0.5 0.5 0.2 0.2\n\n0 0.1 0.1 0.3 0.1 0.3 0.3", ["dog", "cat"]),  # last class, blank line, polygon
])
def test_read_yolo_labels_accepts_every_class_in_range(text, labels):
    dets = read_yolo_labels(text, (100, 50), NAMES)
    assert list(dets.labels) == labels
