"""`visionkit export`: interrupted exports, images dropped for bad masks, hf split names and folders, and a
closed output pipe."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES
from PIL import Image

import visionkit.formats.export as export_mod
from visionkit import ExportError
from visionkit.cli import main
from visionkit.formats.export import PARTIAL, assign_splits, export_dataset
from visionkit.formats.hf import dataset_name
from visionkit.run.pipeline import label

# label-studio writes brush masks with label-studio-converter (the interop extra; .ci/run installs it)
FORMATS = ["coco", "yolo", "hf", pytest.param("label-studio", marks=pytest.mark.skipif(
    importlib.util.find_spec("label_studio_converter") is None,
    reason="label-studio-converter not installed (pip install '.[interop]')"))]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert label([FIXTURES / "images"], out, task="segment", replay=FIXTURES / "replay", overlays=False).ok
    return out


def _cli(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["export", *map(str, args)], stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- 1. an interrupted export is redone by the same command ---------------------------------------------
def _interrupt_copy(monkeypatch, at):
    real, calls = export_mod.copy_upright, []

    def copy(*args):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(export_mod, "copy_upright", copy)


def _interrupt_labels(monkeypatch, at):
    real, calls = export_mod.SplitWriters.add, []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(export_mod.SplitWriters, "add", write)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("interrupt", "at"), [(_interrupt_copy, 1), (_interrupt_copy, 4),
                                               (_interrupt_labels, 1), (_interrupt_labels, 5)])
def test_an_interrupted_export_leaves_no_half_dataset_and_the_rerun_finishes(run_dir, tmp_path, monkeypatch,
                                                                              fmt, interrupt, at):
    dest, clean = tmp_path / "d", tmp_path / "clean"
    assert _cli(run_dir, "--to", clean, "--format", fmt, "--split", "val=0.3", "--seed", 2)[0] == 0
    with monkeypatch.context() as m:
        interrupt(m, at)
        code, _, err = _cli(run_dir, "--to", dest, "--format", fmt, "--split", "val=0.3", "--seed", 2)
    assert code == 130 and "rerun the same command to resume" in err
    assert [p.name for p in dest.iterdir()] == [PARTIAL]  # only our staging folder, no half dataset
    code, _, err = _cli(run_dir, "--to", dest, "--format", fmt, "--split", "val=0.3", "--seed", 2)
    assert code == 0, err
    assert not (dest / PARTIAL).exists()
    got, want = _tree(dest), _tree(clean)
    assert got.keys() == want.keys()
    # COCO files carry their date; label-studio's tasks hold the folder's path in their URLs
    assert {k: v for k, v in got.items() if not k.endswith(".json")} == {
        k: v for k, v in want.items() if not k.endswith(".json")}


@pytest.mark.parametrize(("contents", "refused"), [
    ({}, False),
    ({PARTIAL: "dir"}, False),                       # our own partial output: cleaned and redone
    ({f"{PARTIAL}/images/train/a.jpg": "file"}, False),
    ({"notes.txt": "file"}, True),
    ({PARTIAL: "dir", "images/train/a.jpg": "file"}, True),  # something else is there too
    ({PARTIAL: "file"}, True),                       # not a folder we made
])
def test_only_an_empty_dest_or_our_staging_folder_is_accepted(run_dir, tmp_path, contents, refused):
    dest = tmp_path / "d"
    dest.mkdir()
    for rel, kind in contents.items():
        path = dest / rel
        if kind == "dir":
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    before = _tree(dest)
    if refused:
        with pytest.raises(ExportError, match="choose a new --to folder"):
            export_dataset(run_dir, dest, format="coco")
        assert _tree(dest) == before
    else:
        s = export_dataset(run_dir, dest, format="coco")
        assert s.ok and sorted(p.name for p in dest.iterdir()) == ["annotations", "images"]


# -- 2, 3. an image whose mask does not decode is left out of everything --------------------------------
def _with_bad_mask(run_dir: Path, tmp_path: Path, file_name: str) -> Path:
    """A copy of ``run_dir`` whose ``file_name`` has RLE counts that cover no pixel."""
    run = tmp_path / "bad-run"
    shutil.copytree(run_dir, run)
    coco = json.loads((run / "annotations.json").read_text())
    image_id = next(im["id"] for im in coco["images"] if im["file_name"] == file_name)
    for ann in coco["annotations"]:
        if ann["image_id"] == image_id:
            ann["segmentation"] = {"size": ann["segmentation"]["size"], "counts": "0"}
    (run / "annotations.json").write_text(json.dumps(coco))
    return run


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_split_whose_only_image_fails_its_mask_is_not_written(run_dir, tmp_path, fmt):
    bad = "exif_rot6.jpg"  # also the run's only EXIF-rotated image: it must not count as re-encoded
    run = _with_bad_mask(run_dir, tmp_path, bad)
    names = [p.name for p in (FIXTURES / "images").iterdir()]
    seed = next(s for s in range(500)
                if [n for n, part in assign_splits(names, {"val": 0.2}, s).items() if part == "val"] == [bad])
    dest = tmp_path / "d"
    s = export_dataset(run, dest, format=fmt, split="val=0.2", seed=seed)
    assert [f["file"] for f in s.failures] == [bad]
    assert s.images == {"train": len(names) - 1, "val": 0} and s.empty_splits == ["val"]
    assert s.reencoded == 0
    assert any(note.startswith("every image of val failed, so no val split was written") for note in s.notes)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert not any("val" in f for f in files), files  # no empty folder, no empty file
    assert not any(f.endswith(bad) for f in files)
    if fmt == "yolo":
        assert 'val: "images/train"  # no image fell into val' in (dest / "data.yaml").read_text()
    if fmt == "hf":
        datasets = pytest.importorskip("datasets")
        ds = datasets.load_dataset("imagefolder", data_dir=str(dest), cache_dir=str(tmp_path / "cache"))
        assert sorted(ds) == ["train"] and ds["train"].num_rows == len(names) - 1


def _point_run(tmp_path: Path, names: list[str]) -> Path:
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    for name in names:
        Image.new("RGB", (300, 200)).save(images / name)
        (replay / (name.rsplit(".", 1)[0] + ".txt")).write_text(json.dumps(
            [{"point": [500, 250], "label": "handle"}, {"box_2d": [0, 0, 500, 500], "label": "mug"}]))
    out = tmp_path / "run"
    assert label([images / n for n in names], out, task="detect", replay=replay, overlays=False).ok
    return out


@pytest.mark.parametrize(("bad", "kept"), [([], ["a.png", "b.png"]), (["a.png"], ["b.png"]),
                                           (["a.png", "b.png"], [])])
def test_keypoints_leave_out_the_images_that_failed(tmp_path, bad, kept):
    run = _point_run(tmp_path, ["a.png", "b.png"])
    coco = json.loads((run / "annotations.json").read_text())
    ids = {im["id"] for im in coco["images"] if im["file_name"] in bad}
    for ann in coco["annotations"]:
        if ann["image_id"] in ids:
            ann["segmentation"] = {"size": [200, 300], "counts": "0"}
    (run / "annotations.json").write_text(json.dumps(coco))
    s = export_dataset(run, tmp_path / "c", format="coco")
    assert sorted(f["file"] for f in s.failures) == bad
    assert s.points == 2 and s.points_written == len(kept)
    kp_file = tmp_path / "c" / "annotations" / "keypoints_train.json"
    got = [im["file_name"] for im in json.loads(kp_file.read_text())["images"]] if kp_file.exists() else []
    assert got == kept


# -- 4, 5. hf: split names datasets merges, folders it takes for splits ----------------------------------
@pytest.mark.parametrize(("split", "error"), [
    ("val=0.2,dev=0.1", "'val' and 'dev': datasets loads both as its 'validation' split"),
    ("training=0.2", "'train' and 'training': datasets loads both as its 'train' split"),
    ("test=0.1,eval=0.1", "'test' and 'eval'"),
    ("validation=0.1,valid=0.1", "'validation' and 'valid'"),
    ("val=0.1,test=0.1", None),
])
def test_hf_refuses_two_split_names_datasets_merges(run_dir, tmp_path, split, error):
    dest = tmp_path / "hf"
    if error is None:
        assert export_dataset(run_dir, dest, format="hf", split=split, seed=3).ok
        return
    with pytest.raises(ExportError, match=error):
        export_dataset(run_dir, dest, format="hf", split=split)
    assert not dest.exists()


@pytest.mark.parametrize(("name", "expected"), [
    ("a.jpg", "a.jpg"),
    ("test.jpg", "test.jpg"),                     # a file name is not a folder pattern
    ("test/a.jpg", "test__a.jpg"),
    ("x/test/a.jpg", "x/test__a.jpg"),
    ("x/val2/b/c.png", "x/val2__b__c.png"),       # digits set a keyword off, like - . _ and space
    ("my-dev/a.jpg", "my-dev__a.jpg"),
    ("train_set/a.jpg", "train_set__a.jpg"),
    ("contest/a.jpg", "contest/a.jpg"),           # a keyword inside a word is not a split
    ("trainer/evaluations/a.jpg", "trainer/evaluations/a.jpg"),
])
def test_hf_dataset_name_flattens_split_like_folders(name, expected):
    assert dataset_name(name) == expected


def test_hf_export_of_split_like_subfolders_loads(tmp_path):
    datasets = pytest.importorskip("datasets")
    images, replay = tmp_path / "in", tmp_path / "replay"
    for sub in ("test", "x", "val2"):
        (images / sub).mkdir(parents=True)
        Image.new("RGB", (64, 48)).save(images / sub / f"{sub}img.png")
    replay.mkdir()
    for sub in ("test", "x", "val2"):
        (replay / f"{sub}img.txt").write_text(json.dumps([{"box_2d": [100, 100, 600, 500], "label": "mug"}]))
    run = tmp_path / "run"
    assert label([images], run, task="detect", replay=replay, overlays=False).ok
    dest = tmp_path / "hf"
    s = export_dataset(run, dest, format="hf")
    assert s.ok and s.images == {"train": 3}
    assert sorted(p.relative_to(dest / "train").as_posix() for p in (dest / "train").rglob("*.png")) == [
        "test__testimg.png", "val2__val2img.png", "x/ximg.png"]
    ds = datasets.load_dataset("imagefolder", data_dir=str(dest), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds) == ["train"] and ds["train"].num_rows == 3


# -- 6. a closed output pipe ends quietly ----------------------------------------------------------------
class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_ends_quietly(run_dir, tmp_path):
    stderr = io.StringIO()
    code = main(["export", str(run_dir), "--to", str(tmp_path / "d")], stdout=_ClosedPipe(), stderr=stderr)
    assert code == 1 and stderr.getvalue() == ""


def test_export_into_a_closed_pipe_prints_no_traceback(run_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "visionkit", "export", str(run_dir), "--to",
                             str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("polygons", [False, True])
def test_label_studio_without_its_encoder_stops_before_any_write(run_dir, tmp_path, monkeypatch, polygons):
    """Brush masks need label-studio-converter: without it the export is one clear error (exit 2) before
    anything is written, not a failure per image after the copies; --polygons needs no encoder."""
    monkeypatch.setitem(sys.modules, "label_studio_converter.brush", None)  # an import of it now fails
    dest = tmp_path / "ls"
    code, _, err = _cli(run_dir, "--to", dest, "--format", "label-studio", *["--polygons"] * polygons)
    if polygons:
        assert code == 0 and (dest / "tasks_train.json").is_file()
    else:
        assert code == 2 and "label-studio-converter" in err and "--polygons" in err
        assert not dest.exists()
