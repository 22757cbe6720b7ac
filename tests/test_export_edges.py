"""`visionkit export`'s edge cases found by review (issue 19's left-overs) and the one-pass export (issue 18):
each case's test fails on the code before the fix; the Label Studio and Hugging Face files are streamed with
the bytes the whole-list dump gave."""

from __future__ import annotations

import codecs
import json
import os
import random
import shutil
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export_recovery import FORMATS, _cli, _tree, _with_bad_mask

from visionkit import ExportError
from visionkit.core.detections import Detections
from visionkit.formats.coco import CategoryMap
from visionkit.formats.export import MOVING, PARTIAL, assign_splits, export_dataset
from visionkit.formats.hf import MetadataWriter, metadata_rows, write_metadata
from visionkit.formats.label_studio import TasksWriter, task, write_split_tasks
from visionkit.run.pipeline import label


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert label([FIXTURES / "images"], out, task="segment", replay=FIXTURES / "replay", overlays=False).ok
    return out


def _same_labels(got: dict, want: dict) -> bool:
    """Trees equal, COCO files compared without their date."""
    def strip(tree):
        out = {}
        for k, v in tree.items():
            if k.startswith("annotations/"):
                data = json.loads(v)
                data.get("info", {}).pop("date_created", None)
                v = json.dumps(data, sort_keys=True).encode()
            out[k] = v
        return out
    return strip(got) == strip(want)


def _copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


# -- the review's minor defects, one row each ---------------------------------------------------------------
def test_an_image_missing_from_sources_json_names_the_file_the_item_and_the_field(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    sources = json.loads((run / "sources.json").read_text())
    del sources["images"]["square_1024.png"]
    (run / "sources.json").write_text(json.dumps(sources))
    s = export_dataset(run, tmp_path / "d")
    [failure] = s.failures
    assert failure["file"] == "square_1024.png" and "?missing" not in failure["error"]
    assert f"{run / 'sources.json'}: images['square_1024.png']: missing" in failure["error"]
    assert f"{run / 'annotations.json'} images[" in failure["error"] and "].file_name" in failure["error"]
    assert s.images == {"train": 7}


def test_the_same_run_given_twice_is_exported_once_with_a_note(run_dir, tmp_path):
    once = export_dataset(run_dir, tmp_path / "once", split="val=0.25", seed=1)
    twice = export_dataset([run_dir, run_dir / ".." / run_dir.name], tmp_path / "twice", split="val=0.25",
                           seed=1)
    assert twice.ok and twice.images == once.images and twice.annotations == once.annotations
    assert any("was given twice" in note and "exported once" in note for note in twice.notes)
    assert _same_labels(_tree(tmp_path / "twice"), _tree(tmp_path / "once"))


def test_two_runs_sharing_a_file_name_leave_out_only_that_image(run_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    coco = json.loads((run_dir / "annotations.json").read_text())
    keep = [im for im in coco["images"] if im["file_name"] == "square_1024.png"]
    ids = {im["id"] for im in keep}
    coco["images"], coco["annotations"] = keep, [a for a in coco["annotations"] if a["image_id"] in ids]
    (other / "annotations.json").write_text(json.dumps(coco))
    shutil.copy(run_dir / "sources.json", other)
    code, out, err = _cli(run_dir, other, "--to", tmp_path / "d")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("FAILED square_1024.png:")]
    assert len(lines) == 2 and all(f"is in two runs ({run_dir} and {other})" in line for line in lines)
    assert "7 images (7 train)" in out and "2 images not exported" in out
    assert not (tmp_path / "d" / "images" / "train" / "square_1024.png").exists()


def test_runs_without_images_are_an_error_and_nothing_is_written(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    (run / "sources.json").write_text(json.dumps({"images": {}}))
    code, out, err = _cli(run, "--to", tmp_path / "d")
    assert code == 2 and "no images to export" in err and str(run / "annotations.json") in err
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


@pytest.mark.parametrize("litter", [[".DS_Store"], ["Thumbs.db"], [".DS_Store", "Thumbs.db", "desktop.ini"]])
def test_os_litter_in_dest_counts_as_empty(run_dir, tmp_path, litter):
    dest = tmp_path / "d"
    dest.mkdir()
    for name in litter:
        (dest / name).write_bytes(b"\0\0\0\1Bud1")
    s = export_dataset(run_dir, dest, format="coco")
    assert s.ok and sorted(p.name for p in dest.iterdir()) == sorted(["annotations", "images", *litter])


@pytest.mark.parametrize("fmt", ["coco", "yolo", "hf"])
def test_ls_root_is_refused_for_other_formats(run_dir, tmp_path, fmt):
    root = tmp_path / "root"
    code, _, err = _cli(run_dir, "--to", root / "d", "--format", fmt, "--ls-root", root)
    assert code == 2 and "--ls-root is for --format label-studio only" in err
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("which", ["annotations.json", "sources.json", "both"])
def test_a_utf8_bom_is_accepted(run_dir, tmp_path, which):
    run = _copy_run(run_dir, tmp_path / "run")
    for name in (["annotations.json", "sources.json"] if which == "both" else [which]):
        (run / name).write_bytes(codecs.BOM_UTF8 + (run / name).read_bytes())
    plain = export_dataset(run_dir, tmp_path / "plain", format="yolo")
    s = export_dataset(run, tmp_path / "bom", format="yolo")
    assert s.ok and s.images == plain.images and s.annotations == plain.annotations
    assert _tree(tmp_path / "bom") == _tree(tmp_path / "plain")


@settings(max_examples=25, deadline=None)
@given(images=st.integers(0, 8), seed=st.integers(0, 10**6), shuffle=st.booleans())
def test_the_reader_reads_a_file_with_a_bom_as_the_file_without(images, seed, shuffle):
    """Property: a UTF-8 BOM changes nothing the reader gives (records, counts, the whole load)."""
    from test_coco_stream import _dataset

    from visionkit.formats.coco_stream import CocoFile

    ds = _dataset(images, seed)
    if shuffle:
        random.Random(seed).shuffle(ds["annotations"])
    with tempfile.TemporaryDirectory() as tmp:
        plain, bom = Path(tmp) / "plain.json", Path(tmp) / "bom.json"
        plain.write_bytes(json.dumps(ds).encode())
        bom.write_bytes(codecs.BOM_UTF8 + plain.read_bytes())
        a, b = CocoFile(plain), CocoFile(bom)
        assert [(r.image, r.annotations, r.indices) for r in a.records()] == \
            [(r.image, r.annotations, r.indices) for r in b.records()]
        facts = [(c.counts, c.names, c.has_masks, c.with_score, c.annotations) for c in (a, b)]
        assert facts[0] == facts[1]
        assert a.load() == b.load()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("at", [1, 2])
def test_an_interruption_among_the_final_moves_is_redone_by_the_rerun(run_dir, tmp_path, monkeypatch, fmt,
                                                                    at):
    dest, clean = tmp_path / "d", tmp_path / "clean"
    args = ("--format", fmt, "--split", "val=0.3", "--seed", 2)
    assert _cli(run_dir, "--to", clean, *args)[0] == 0
    real, calls = os.replace, []

    def replace(src, dst):  # the at-th move of a finished entry from the staging folder into dest
        if Path(src).parent == dest / PARTIAL and Path(dst).parent == dest:
            calls.append(1)
            if len(calls) == at:
                raise KeyboardInterrupt
        return real(src, dst)
    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        code, _, err = _cli(run_dir, "--to", dest, *args)
    assert code == 130
    assert (dest / PARTIAL / MOVING).is_file()
    code, _, err = _cli(run_dir, "--to", dest, *args)
    assert code == 0, err
    assert not (dest / PARTIAL).exists()
    assert _same_labels(_tree(dest), _tree(clean))


def test_an_interrupted_move_never_removes_what_is_not_ours(run_dir, tmp_path):
    dest = tmp_path / "d"
    (dest / PARTIAL).mkdir(parents=True)
    (dest / PARTIAL / MOVING).write_text(json.dumps(["annotations"]))
    (dest / "annotations").mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="choose a new --to folder"):
        export_dataset(run_dir, dest)
    assert (dest / "mine.txt").read_text() == "keep" and (dest / "annotations").is_dir()


# -- one pass: failures and the train split ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_when_every_train_image_fails_the_nearest_written_image_moves_there(run_dir, tmp_path, fmt):
    bad = "exif_rot6.jpg"
    run = _with_bad_mask(run_dir, tmp_path, bad)  # also the run's only EXIF-rotated image
    names = sorted(p.name for p in (FIXTURES / "images").iterdir())
    seed = next(s for s in range(2000)
                if [n for n, p in assign_splits(names, {"val": 0.6}, s).items() if p == "train"] == [bad])
    seen = []
    s = export_dataset(run, tmp_path / "d", format=fmt, split="val=0.6", seed=seed,
                       on_image=lambda name, error: seen.append((name, error is None)))
    assert [f["file"] for f in s.failures] == [bad]
    assert sorted(seen) == sorted((n, n != bad) for n in names)  # each image reported once
    assert s.images == {"train": 1, "val": len(names) - 2}
    [note] = [n for n in s.notes if "was moved there" in n]
    assert note.startswith("every image of train failed; ")
    folder = "train" if fmt == "hf" else "images/train"
    moved = note.split("; ")[1].split(" was moved")[0]
    assert sorted(p.name for p in (tmp_path / "d" / folder).iterdir() if p.suffix != ".jsonl") == [moved]


# -- Label Studio and Hugging Face files are streamed, with the whole-list dump's bytes ---------------------
def _items(n: int):
    for i in range(n):
        wh = (40 + i % 7, 30 + i % 5)
        yield (f"img{i:04d}.png", wh,
               Detections([[1, 2, 10, 12], [0, 0, wh[0], wh[1]]], ["cup", "plate"], wh, scores=[0.9, 0.5])
               if i % 3 else Detections.empty(wh))


@pytest.mark.parametrize("n", [0, 1, 5])
def test_streamed_tasks_and_metadata_have_the_bytes_of_the_whole_list(tmp_path, n):
    cats = CategoryMap(["cup"])  # "plate" is unmapped: counted the same way
    report, want_report = Counter(), Counter()
    with TasksWriter(tmp_path, "val", cats, report) as writer:
        for name, wh, dets in _items(n):
            writer.add(name, wh, dets)
    want = [task(f"/data/local-files/?d=images/val/{name}", wh, dets, cats, report=want_report,
                 data={"split": "val", "file_name": name}) for name, wh, dets in _items(n)]
    assert (tmp_path / "tasks_val.json").read_bytes() == json.dumps(want, ensure_ascii=False).encode("utf-8")
    report, want_report = Counter(), Counter()
    with MetadataWriter(tmp_path / "val", cats, report) as writer:
        for item in _items(n):
            writer.add(*item)
    rows = metadata_rows(_items(n), cats, want_report)
    assert (tmp_path / "val" / "metadata.jsonl").read_bytes() == "".join(
        json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    assert report == want_report


@pytest.mark.parametrize("writer", ["tasks", "metadata"])
def test_streamed_writers_hold_no_image_after_writing_it(tmp_path, writer):
    """Peak traced memory while writing 400 images is about that of 100 (the old code held every task)."""
    cats = CategoryMap(["cup", "plate"])

    def peak(n: int, where: Path) -> int:
        tracemalloc.start()
        if writer == "tasks":
            write_split_tasks(where, "train", _items(n), cats, Counter())
        else:
            write_metadata(where / "train", _items(n), cats, Counter())
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, big = peak(100, tmp_path / "a"), peak(400, tmp_path / "b")
    assert big < small * 1.5 + 20_000, (small, big)
