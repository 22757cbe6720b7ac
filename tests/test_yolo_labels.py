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


def _run(tmp_path, files):
    """A hand-made run folder: ``files`` is ``[(file_name, (w, h), [bbox, ...])]``, one 'cat' per bbox."""
    import json

    from PIL import Image

    src, run = tmp_path / "in", tmp_path / "run"
    run.mkdir()
    images, anns, sources = [], [], {}
    for i, (name, (w, h), boxes) in enumerate(files, start=1):
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (i * 40, 0, 0)).save(path)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        sources[name] = str(path)
        for x, y, bw, bh in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
    (run / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]}))
    (run / "sources.json").write_text(json.dumps({"images": sources}))
    return run


@pytest.mark.parametrize("fmt", ["yolo-detect", "yolo-segment"])
@pytest.mark.parametrize("second", ["a.png", "A.PNG"])
def test_yolo_export_never_merges_two_images_into_one_label_file(tmp_path, fmt, second):
    from visionkit.formats.export import export_dataset

    run = _run(tmp_path, [("a.jpg", (64, 48), [(1, 1, 10, 10)]),
                          (second, (32, 32), [(2, 2, 5, 5), (9, 9, 5, 5)]),
                          ("sub/a.png", (20, 20), [(0, 0, 4, 4)])])
    dest = tmp_path / "ds"
    s = export_dataset(run, dest, format=fmt)
    kept, lost = "a.jpg", second  # images are exported in the runs' order: the first one written wins
    assert [f["file"] for f in s.failures] == [lost]
    assert f"is taken by {kept}" in s.failures[0]["error"]
    assert f"its label file labels/train/{lost.rsplit('.', 1)[0]}.txt" in s.failures[0]["error"]
    lines = {"a.jpg": 1, second: 2}[kept]
    assert s.images == {"train": 2} and s.annotations == lines + 1
    assert len(next((dest / "labels" / "train").glob("[aA].txt")).read_text().splitlines()) == lines
    assert len((dest / "labels" / "train" / "sub" / "a.txt").read_text().splitlines()) == 1
    assert not (dest / "images" / "train" / lost).exists()


def test_coco_export_keeps_images_that_differ_only_by_extension(tmp_path):
    from visionkit.formats.export import export_dataset

    run = _run(tmp_path, [("a.jpg", (64, 48), [(1, 1, 10, 10)]), ("a.png", (32, 32), [(2, 2, 5, 5)])])
    s = export_dataset(run, tmp_path / "ds", format="coco")
    assert s.ok and s.images == {"train": 2} and s.annotations == 2
