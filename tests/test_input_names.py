"""Two inputs whose images share a relative name are refused before anything is written (they would
otherwise become one image: one key, one COCO image, one sources.json entry)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from visionkit import label
from visionkit.cli import main
from visionkit.errors import InputError
from visionkit.run.inputs import find_inputs

ONE_BOX = '[{"box_2d": [100, 100, 600, 600], "label": "cup"}]'


def _tree(base: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 10)).save(base / name)


# (files to create under tmp_path, inputs relative to tmp_path, clashing name or None when fine)
CASES = [
    ([], [], None),                                                         # nothing at all
    (["A/x.jpg", "B/x.jpg"], ["A", "B"], "x.jpg"),                          # the reviewer's repro
    (["A/x.jpg", "B/X.JPG"], ["A", "B"], "X.JPG"),                          # case-insensitive, like keys
    (["A/s/x.png", "B/s/x.png"], ["A", "B"], "s/x.png"),                    # nested
    (["A/x.jpg", "B/x.jpg"], ["A/x.jpg", "B/x.jpg"], "x.jpg"),              # files named directly
    (["A/x.jpg", "A/s/x.jpg"], ["A/s", "A"], "x.jpg"),                      # a sub-folder and its parent
    (["A/x.jpg", "B/x.png"], ["A", "B"], None),                             # same stem, other suffix
    (["R/a/x.jpg", "R/b/x.png"], ["R"], None),                              # same stem in sub-folders
    (["R/a/x.jpg", "R/b/x.jpg"], ["R"], None),                              # same name, one root
    (["A/a/x.jpg", "B/b/x.jpg"], ["A", "B"], None),                         # different relative paths
    (["A/x.jpg"], ["A", "A", "A/x.jpg"], None),                             # one file reached thrice
    (["A/x.jpg", "B/x.jpg"], ["A", "B/x.jpg"], "x.jpg"),                    # folder + direct file
    (["A/x.jpg", "A/s/x.jpg"], ["A/s/x.jpg", "A/x.jpg"], "x.jpg"),          # direct files, nested
]


@pytest.mark.parametrize("files, inputs, clash", CASES)
def test_same_relative_name_across_inputs(tmp_path, files, inputs, clash):
    _tree(tmp_path, files)
    paths = [tmp_path / i for i in inputs]
    if clash is None:
        found = find_inputs(paths, tmp_path / "out")
        assert len(found.images) == len(set(files))
        names = [p.relative_to(r).as_posix() for p, r in found.images]
        assert len(names) == len(set(names))
        return
    with pytest.raises(InputError) as exc:
        find_inputs(paths, tmp_path / "out")
    text = str(exc.value)
    assert repr(clash) in text or repr(clash.lower()) in text
    # both full paths are named, and how to fix it
    clashing = [f for f in files if Path(f).name.casefold() == Path(clash).name.casefold()]
    for f in clashing:
        assert str((tmp_path / f).resolve()) in text
    assert "--out" in text and "common parent folder" in text


def test_glob_can_leave_out_the_clash(tmp_path):
    _tree(tmp_path, ["A/x.jpg", "B/x.jpg", "B/y.jpg"])
    with pytest.raises(InputError):
        find_inputs([tmp_path / "A", tmp_path / "B"], None)
    found = find_inputs([tmp_path / "A", tmp_path / "B"], None, exclude=["x.jpg"])  # both x.jpg go
    assert [p.name for p, _ in found.images] == ["y.jpg"]
    found = find_inputs([tmp_path / "A", tmp_path / "B"], None, glob=["y.jpg"])
    assert [p.name for p, _ in found.images] == ["y.jpg"]


def test_label_writes_nothing_when_inputs_clash(tmp_path):
    photos = tmp_path / "photos"
    _tree(photos, ["A/x.jpg", "B/x.jpg"])
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "A__x.txt").write_text(ONE_BOX)
    (replay / "B__x.txt").write_text(ONE_BOX)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="would become one image"):
        label([photos / "A", photos / "B"], out, replay=replay)
    assert not out.exists() or not any(out.iterdir())

    stderr = io.StringIO()
    code = main(["label", str(photos / "A"), str(photos / "B"), "--out", str(out), "--replay", str(replay),
                 "-q"], stdout=io.StringIO(), stderr=stderr)
    assert code == 2
    assert str((photos / "A" / "x.jpg").resolve()) in stderr.getvalue()
    assert str((photos / "B" / "x.jpg").resolve()) in stderr.getvalue()
    assert not out.exists() or not any(out.iterdir())

    # the suggested fix works: the common parent as the input gives two images, A/x.jpg and B/x.jpg
    code = main(["label", str(photos), "--out", str(out), "--replay", str(replay), "-q"],
                stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    ds = json.loads((out / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in ds["images"]) == ["A/x.jpg", "B/x.jpg"]
    assert sorted((i["width"], i["height"]) for i in ds["images"]) == [(20, 10), (21, 10)]
    assert len(ds["annotations"]) == 2
