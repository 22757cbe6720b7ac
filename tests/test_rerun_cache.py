"""Incremental reruns (``OUT/.results.jsonl``, :mod:`visionkit.run.results`): a rerun re-parses only what
changed, and writes what a run from scratch writes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import visionkit.run.image_step as image_step
from visionkit import label
from visionkit.run.results import RESULTS_NAME
from visionkit.testing.synthetic import segment_answer, write_labelled_folder


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The answers parsed in this process (runs use threads, processes=False, so every parse is seen)."""
    seen: list[str] = []
    real = image_step.parse_response

    def counting(answer, *args, **kwargs):
        seen.append(answer if isinstance(answer, str) else json.dumps(answer))
        return real(answer, *args, **kwargs)

    monkeypatch.setattr(image_step, "parse_response", counting)
    return seen


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    images, replay = write_labelled_folder(tmp_path / "data", 5, (96, 64), masks=3)
    # a warning to keep: one answer with a mask that does not decode
    bad = json.loads(segment_answer(2, seed=9).split("\n", 1)[1].rsplit("\n", 1)[0])
    bad[1]["mask"] = "data:image/png;base64,@@@"
    (replay / "img00004.txt").write_text("```json\n" + json.dumps(bad) + "\n```", encoding="utf-8")
    return images, replay


def run(images: Path, replay: Path, out: Path, **options):
    return label([images], out, replay=replay, processes=False, **options)


def without_date(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["info"].pop("date_created")
    return data


def test_a_rerun_parses_nothing_and_writes_the_same_files(folder, tmp_path, parses):
    images, replay = folder
    first = run(images, replay, tmp_path / "o")
    assert len(parses) == 5 and first.warnings >= 1
    saved = {name: (tmp_path / "o" / name).read_bytes() for name in ("warnings.json", "sources.json",
                                                                       "keys.json", "failures.json")}
    coco = without_date(tmp_path / "o" / "annotations.json")
    overlays = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o" / "overlays").iterdir()}
    parses.clear()
    again = run(images, replay, tmp_path / "o")
    assert parses == []
    assert without_date(tmp_path / "o" / "annotations.json") == coco
    for name, data in saved.items():
        assert (tmp_path / "o" / name).read_bytes() == data, name
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o" / "overlays").iterdir()} == overlays
    for field in ("succeeded", "failed", "detections", "annotations", "warnings", "export_report"):
        assert getattr(again, field) == getattr(first, field), field
    # and equal to a run from scratch, byte for byte but the date
    run(images, replay, tmp_path / "fresh")
    assert without_date(tmp_path / "fresh" / "annotations.json") == coco


def test_only_what_changed_is_recomputed(folder, tmp_path, parses):
    images, replay = folder
    out = tmp_path / "o"
    run(images, replay, out)
    # one more image: only it is parsed
    shutil.copy(images / "img00000.jpg", images / "new.jpg")
    (replay / "new.txt").write_text(segment_answer(2, seed=42), encoding="utf-8")
    parses.clear()
    summary = run(images, replay, out)
    assert len(parses) == 1 and summary.succeeded == 6
    # an answer touched but unchanged: not parsed (its hash is the same); one changed: parsed
    os.utime(replay / "img00001.txt", ns=(1, 1))
    (replay / "img00002.txt").write_text(segment_answer(1, seed=77), encoding="utf-8")
    parses.clear()
    run(images, replay, out)
    assert parses == [segment_answer(1, seed=77)]
    # a touched image: its size may have changed, so it is redone
    os.utime(images / "img00003.jpg", ns=(2, 2))
    parses.clear()
    run(images, replay, out)
    assert len(parses) == 1
    # a deleted overlay is drawn again
    (out / "overlays" / "img00000.jpg").unlink()
    parses.clear()
    run(images, replay, out)
    assert len(parses) == 1 and (out / "overlays" / "img00000.jpg").is_file()
    # the result equals a run from scratch
    run(images, replay, tmp_path / "fresh")
    assert without_date(out / "annotations.json") == without_date(tmp_path / "fresh" / "annotations.json")


@pytest.mark.parametrize("change", [{"threshold": 200}, {"polygons": True}, {"dedupe": 0.5},
                                    {"task": "detect"}, {"overlay_format": "png"}, {"overlay_max_side": 32}])
def test_an_option_that_shapes_the_result_recomputes_it(folder, tmp_path, parses, change):
    images, replay = folder
    run(images, replay, tmp_path / "o")
    parses.clear()
    run(images, replay, tmp_path / "o", **change)
    assert len(parses) == 5
    run(images, replay, tmp_path / "fresh", **change)
    assert without_date(tmp_path / "o" / "annotations.json") == \
        without_date(tmp_path / "fresh" / "annotations.json")
    parses.clear()
    run(images, replay, tmp_path / "o", **change)  # and the new results are kept in turn
    assert parses == []


def test_options_that_do_not_shape_it_keep_it(folder, tmp_path, parses):
    images, replay = folder
    run(images, replay, tmp_path / "o")
    parses.clear()
    run(images, replay, tmp_path / "o", overlays=False, concurrency=1)
    run(images, replay, tmp_path / "o")  # the overlays are still there, drawn with the same settings
    assert parses == []
    # a subset run keeps the others' results for later
    run(images, replay, tmp_path / "o", limit=2)
    run(images, replay, tmp_path / "o")
    assert parses == []


def _edit_first(lines: list[bytes], edit) -> None:
    """Edit the first kept line by hand, as JSON, keeping its head first (so it is still indexed)."""
    record = json.loads(lines[0])
    edit(record)
    lines[0] = (json.dumps(record) + "\n").encode()


def _inject(record: dict) -> None:  # an annotation text that closes its object and the list early
    record["annotations"][0][1] = record["annotations"][0][1][:-1] + '}], "evil": {"x": 1}'


HAND_EDITS = {  # R4: each crashed the rerun or wrote a broken annotations.json
    "annotation-without-body": lambda r: r.__setitem__("annotations", [["cup"]]),
    "label-count-not-a-number": lambda r: r["_vk"].__setitem__("labels", {"cup": "x"}),
    "wh-not-numbers": lambda r: r["_vk"].__setitem__("wh", ["a", "b"]),
    "wh-one-number": lambda r: r["_vk"].__setitem__("wh", [96]),
    "annotation-text-injected": _inject,
    "annotation-text-not-an-object": lambda r: r["annotations"][0].__setitem__(1, '"a": 1}, 2'),
    "labels-do-not-count-annotations": lambda r: r["_vk"]["labels"].__setitem__("ghost", 1),
    "detections-not-a-number": lambda r: r["_vk"].__setitem__("detections", "3"),
    "warning-not-a-triple": lambda r: r["_vk"].__setitem__("warnings", [7]),
    "report-not-counts": lambda r: r["_vk"].__setitem__("report", {"dedupe_merged": "x"}),
    "no-annotations": lambda r: r.pop("annotations"),
}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong-key", "not-an-object",
                                    # R3: a cut-off line that still ends in a newline (a crash, an editor)
                                    "cut-off-then-newline", "nul-padded-then-newline", *HAND_EDITS])
def test_a_damaged_results_file_is_only_a_miss(folder, tmp_path, parses, damage):
    images, replay = folder
    out = tmp_path / "o"
    run(images, replay, out)
    coco = without_date(out / "annotations.json")
    path = out / RESULTS_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "garbage":
        lines[0] = b'{"_vk": {"key": "img00000", "sig": \xff\xfe}\n'
    elif damage == "truncated":
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
    elif damage == "empty":
        lines = []
    elif damage == "wrong-key":  # a line filed under another image's key
        lines[0] = lines[0].replace(b'"key": "img00000"', b'"key": "img00001"', 1)
    elif damage == "cut-off-then-newline":  # cut in its annotations, after a whole head
        lines[0] = lines[0][: len(lines[0]) * 3 // 4] + b"\n"
    elif damage == "nul-padded-then-newline":
        lines[0] = lines[0][: len(lines[0]) * 3 // 4] + b"\0" * 64 + b"\n"
    elif damage in HAND_EDITS:
        _edit_first(lines, HAND_EDITS[damage])
    else:
        lines[0] = b'{"_vk": [1, 2, 3]}\n'
    path.write_bytes(b"".join(lines))
    parses.clear()
    summary = run(images, replay, out)
    assert summary.ok or summary.failed == 0
    assert 1 <= len(parses) <= 5
    assert without_date(out / "annotations.json") == coco


def test_a_result_kept_under_other_options_is_not_used(folder, tmp_path, parses):
    """The kept line of another folder (other threshold) copied in: its signature does not match."""
    images, replay = folder
    run(images, replay, tmp_path / "a", threshold=250)
    run(images, replay, tmp_path / "b")
    shutil.copy(tmp_path / "a" / RESULTS_NAME, tmp_path / "b" / RESULTS_NAME)
    coco = without_date(tmp_path / "b" / "annotations.json")
    parses.clear()
    run(images, replay, tmp_path / "b")
    assert len(parses) == 5 and without_date(tmp_path / "b" / "annotations.json") == coco


def test_failed_images_are_tried_again(folder, tmp_path, parses):
    images, replay = folder
    (replay / "img00003.txt").unlink()
    first = run(images, replay, tmp_path / "o")
    assert first.failed == 1
    (replay / "img00003.txt").write_text(segment_answer(2, seed=5), encoding="utf-8")
    parses.clear()
    again = run(images, replay, tmp_path / "o")
    assert again.failed == 0 and len(parses) == 1


def test_process_pool_reruns_use_the_kept_results(folder, tmp_path):
    images, replay = folder
    first = label([images], tmp_path / "o", replay=replay, processes=True, concurrency=2)
    before = (tmp_path / "o" / RESULTS_NAME).read_bytes()
    again = label([images], tmp_path / "o", replay=replay, processes=True, concurrency=2)
    assert again.succeeded == first.succeeded == 5
    assert (tmp_path / "o" / RESULTS_NAME).read_bytes() == before


@pytest.mark.parametrize("options", [{}, {"polygons": True, "classes": ["cup", "plate"]}])
def test_annotations_json_equals_to_coco_also_when_kept(folder, tmp_path, options):
    """The oracle: to_coco of the same answers. annotations.json is streamed from kept JSON text, so a
    rerun must write exactly what to_coco makes (unmapped labels dropped and counted, polygons)."""
    from PIL import Image

    from visionkit import parse_response, to_coco

    images, replay = folder
    items = []
    for path in sorted(images.iterdir()):
        with Image.open(path) as im:
            wh = im.size
        items.append((path.name, wh, parse_response((replay / f"{path.stem}.txt").read_text(), wh)))
    expected = to_coco(items, options.get("classes"), polygons=options.get("polygons", False))
    expected["info"].pop("date_created")
    out = tmp_path / "o"
    for _ in range(2):  # the first run, then the rerun from kept results
        run(images, replay, out, overlays=False, **options)
        assert without_date(out / "annotations.json") == expected


def test_overlays_redrawn_since_are_drawn_again(folder, tmp_path, parses):
    """`visionkit overlays` redrew them smaller: a rerun with the run's own settings draws them again."""
    from visionkit.run.redraw import redraw_overlays

    images, replay = folder
    out = tmp_path / "o"
    run(images, replay, out, overlay_max_side=64)
    before = (out / "overlays" / "img00000.jpg").read_bytes()
    redraw_overlays(out, replay=replay, overlay_max_side=32, processes=False)
    assert (out / "overlays" / "img00000.jpg").read_bytes() != before
    parses.clear()
    run(images, replay, out, overlay_max_side=64)
    assert len(parses) == 5 and (out / "overlays" / "img00000.jpg").read_bytes() == before
    # a result kept from a run without overlays is redone when overlays are asked for and missing
    run(images, replay, tmp_path / "p", overlays=False)
    parses.clear()
    run(images, replay, tmp_path / "p")
    assert len(parses) == 5 and len(list((tmp_path / "p" / "overlays").iterdir())) == 5


def _same_size_edit(path: Path, edit) -> None:
    """Change ``path`` in place to ``edit(bytes)`` (same size), then restore its mtime as ``touch -r``."""
    before = path.stat()
    data = edit(path.read_bytes())
    assert len(data) == before.st_size and data != path.read_bytes()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _mug(data: bytes) -> bytes:
    assert b'"cup"' in data
    return data.replace(b'"cup"', b'"mug"', 1)


def _edit_answer_touch_r(images: Path, replay: Path, tmp_path: Path) -> Path:
    _same_size_edit(replay / "img00000.txt", _mug)
    return replay


def _edit_answer_cp_p(images: Path, replay: Path, tmp_path: Path) -> Path:
    """``cp -p edited original``: the edited copy carries the original's mtime into the same inode."""
    edited = tmp_path / "edited.txt"
    edited.write_bytes(_mug((replay / "img00001.txt").read_bytes()))
    shutil.copystat(replay / "img00001.txt", edited)
    shutil.copy2(edited, replay / "img00001.txt")
    return replay


def _edit_copied_replay(images: Path, replay: Path, tmp_path: Path) -> Path:
    """``cp -rp replay copy``, a same-size edit in the copy (mtime restored), then ``--replay copy``."""
    copy = shutil.copytree(replay, tmp_path / "copy")
    _same_size_edit(copy / "img00002.txt", _mug)
    return copy


def _flip_orientation(images: Path, replay: Path, tmp_path: Path) -> Path:
    """EXIF orientation 6 -> 1 (same size, mtime restored): the image's upright size swaps."""
    _same_size_edit(images / "img00003.jpg", lambda _: _exif_jpeg(tmp_path, 1))
    return replay


def _exif_jpeg(tmp_path: Path, orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (96, 64), (90, 140, 30)).save(tmp_path / "exif.jpg", exif=exif)
    return (tmp_path / "exif.jpg").read_bytes()


@pytest.mark.parametrize("change", [_edit_answer_touch_r, _edit_answer_cp_p, _edit_copied_replay,
                                    _flip_orientation], ids=lambda f: f.__name__.strip("_"))
def test_a_same_size_edit_with_its_mtime_restored_is_seen(folder, tmp_path, parses, change):
    """R1, R2: size and mtime can both survive an edit (``touch -r``, ``cp -p``, ``rsync``, ``tar``); the
    ctime, inode and path cannot, so the file is read again and the rerun equals a run from scratch."""
    images, replay = folder
    (images / "img00003.jpg").write_bytes(_exif_jpeg(tmp_path, 6))  # stored 96x64, upright 64x96
    out = tmp_path / "o"
    run(images, replay, out)
    used = change(images, replay, tmp_path)
    parses.clear()
    again = run(images, used, out)
    assert len(parses) == 1
    fresh = run(images, used, tmp_path / "fresh")
    assert (again.succeeded, again.failed) == (fresh.succeeded, fresh.failed) == (5, 0)
    assert without_date(out / "annotations.json") == without_date(tmp_path / "fresh" / "annotations.json")


@pytest.mark.parametrize(("limit", "failed"), [(96 * 64, 0), (96 * 64 - 1, 5)])
def test_a_kept_result_obeys_max_pixels(folder, tmp_path, parses, monkeypatch, limit, failed):
    """R5: a rerun under a lower ``--max-pixels`` refuses what a fresh run refuses; at the limit, reuses."""
    from visionkit.media import imageio

    images, replay = folder
    run(images, replay, tmp_path / "o")
    monkeypatch.setattr(imageio, "MAX_PIXELS", limit)
    parses.clear()
    again = run(images, replay, tmp_path / "o")
    fresh = run(images, replay, tmp_path / "fresh")
    assert again.failed == fresh.failed == failed
    assert again.reused == (5 if not failed else 0)


def test_the_cli_says_how_many_results_were_reused(folder, tmp_path, capsys):
    """R6: a replay rerun reuses every kept result; its summary said "0 from cache" and nothing else."""
    from visionkit.cli import main

    images, replay = folder
    argv = ["label", str(images), "--out", str(tmp_path / "o"), "--task", "segment", "--replay", str(replay)]
    assert main(argv) == 0
    assert "reused" not in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 from cache, 5 reused from kept results," in capsys.readouterr().out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path, bytes]:
    root = tmp_path_factory.mktemp("finished")
    images, replay = write_labelled_folder(root / "data", 2, (96, 64), masks=2)
    label([images], root / "o", replay=replay, processes=False, overlays=False)
    return images, replay, root / "o", (root / "o" / RESULTS_NAME).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 10_000), cut=st.integers(0, 64), junk=st.binary(max_size=24))
def test_any_damage_to_a_kept_line_is_a_miss_or_a_well_formed_hit(finished, at, cut, junk):
    """Property: whatever bytes replace part of the kept file, a lookup never raises, and what it
    returns is whole JSON whose annotation texts are each exactly one object's remainder."""
    images, replay, out, kept = finished
    at %= len(kept)
    (out / RESULTS_NAME).write_bytes(kept[:at] + junk + kept[at + cut:])
    assert _hits(out, images, replay) <= 2
    (out / RESULTS_NAME).write_bytes(kept)
    assert _hits(out, images, replay) == 2  # the undamaged file: every result fits


def _hits(out: Path, images: Path, replay: Path) -> int:
    from visionkit.run.image_step import StepConfig
    from visionkit.run.pipeline import DEFAULT_THRESHOLD
    from visionkit.run.results import ResultCache

    options = StepConfig(out, "segment", DEFAULT_THRESHOLD, False, None).options()
    cache = ResultCache(out, {**options, "answers_only": False}, None)
    try:
        for image in sorted(images.iterdir()):
            hit = cache.lookup(image.stem, image.name, image, replay / f"{image.stem}.txt")
            if hit is not None:
                record = json.loads(hit[1])
                for _, body in record["annotations"]:
                    assert isinstance(json.loads("{" + body), dict)
    finally:
        cache.close()
    return cache.hits


@pytest.mark.parametrize("orientation, rotated", [(1, 0), (6, 1), (8, 1)])
def test_a_kept_result_still_counts_its_exif_rotation(folder, tmp_path, parses, orientation, rotated):
    """The summary's note that loaders reading originals need ``visionkit export`` counts rotated images;
    a rerun that keeps every result says the same as the first run."""
    images, replay = folder
    (images / "img00003.jpg").write_bytes(_exif_jpeg(tmp_path, orientation))
    first = run(images, replay, tmp_path / "o")
    parses.clear()
    again = run(images, replay, tmp_path / "o")
    assert parses == [] and again.reused == 5
    assert first.rotated == again.rotated == rotated


def test_the_exif_note_is_in_the_summary_of_a_rerun_that_keeps_every_result(folder, tmp_path, capsys):
    """What the user reads: the note that loaders reading the originals need ``visionkit export`` is in
    the first run's summary and in a rerun's that reuses every kept result (it was dropped there)."""
    from visionkit.cli import main

    images, replay = folder
    (images / "img00003.jpg").write_bytes(_exif_jpeg(tmp_path, 6))
    argv = ["label", str(images), "--out", str(tmp_path / "o"), "--task", "segment", "--replay", str(replay)]
    said = []
    for _ in range(2):
        assert main(argv) == 0
        said.append(" ".join(capsys.readouterr()))
    assert "5 reused from kept results" in said[1]
    for text in said:
        assert "`visionkit export` writes upright copies" in text, text


def test_a_rerun_that_keeps_every_line_leaves_the_results_file_alone(folder, tmp_path, parses):
    """Nothing to write: the previous file already holds this run's lines in this order. Any change (a new
    image, a changed answer, a line of another order) writes it again, with every image's line."""
    images, replay = folder
    out = tmp_path / "o"
    run(images, replay, out)
    path = out / RESULTS_NAME
    before = path.stat()
    again = run(images, replay, out)
    assert again.reused == 5
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    (replay / "img00002.txt").write_text(segment_answer(2, seed=77), encoding="utf-8")
    parses.clear()
    run(images, replay, out)
    assert len(parses) == 1 and path.stat().st_ino != before.st_ino
    keys = [json.loads(line)["_vk"]["key"] for line in path.read_bytes().splitlines()]
    assert keys == [f"img{i:05d}" for i in range(5)]

    run(images, replay, out, exclude=["img00001.jpg"])  # a line looked up out of order: written again
    keys = [json.loads(line)["_vk"]["key"] for line in path.read_bytes().splitlines()]
    assert sorted(keys) == [f"img{i:05d}" for i in range(5)]
    parses.clear()
    assert run(images, replay, out).reused == 5 and parses == []
