"""Issue 8's five silent-wrong-result cases, each as a table test that failed on the code before the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from visionkit import label
from visionkit.errors import InputError
from visionkit.testing.fake_gemini import FakeGemini

ONE_BOX = '[{"box_2d": [100, 100, 600, 600], "label": "cup"}]'
TWO_BOXES = '[{"box_2d": [100, 100, 600, 600], "label": "cup"}, {"box_2d": [0, 0, 300, 300], "label": "pen"}]'
KEY = "AQ.silent-results-test-key"


def _image(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)
    return path


def _answers(folder: Path, **texts: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def _dataset(out: Path) -> dict:
    return json.loads((out / "annotations.json").read_text())


# 1. Replay: a bare-stem fallback is used only when exactly one image could mean it.
@pytest.mark.parametrize("files, answers, expect", [
    # two images share the stem x, the replay folder has only x.txt: both fail, naming both candidates
    (["a/x.jpg", "b/x.png"], {"x": ONE_BOX}, {"a/x.jpg": "ambiguous", "b/x.png": "ambiguous"}),
    # one image has its own key; the other's fallback is still ambiguous (x.txt may be a's old answer)
    (["a/x.jpg", "b/x.png"], {"x": ONE_BOX, "a__x": TWO_BOXES}, {"a/x.jpg": 2, "b/x.png": "ambiguous"}),
    # each has its own key: no fallback needed
    (["a/x.jpg", "b/x.png"], {"a__x": ONE_BOX, "b__x": TWO_BOXES}, {"a/x.jpg": 1, "b/x.png": 2}),
    # exactly one image could mean x.txt: the fallback applies
    (["sub/x.jpg", "y.png"], {"x": ONE_BOX, "y": TWO_BOXES}, {"sub/x.jpg": 1, "y.png": 2}),
    # the stems differ only in case (one file on macOS and Windows): still two candidates
    (["a/X.png", "b/x.png"], {"x": ONE_BOX}, {"a/X.png": "fails", "b/x.png": "ambiguous"}),
])
def test_replay_fallback_only_when_unambiguous(tmp_path, files, answers, expect):
    images = tmp_path / "in"
    for name in files:
        _image(images / name)
    replay = _answers(tmp_path / "replay", **answers)
    summary = label([images], tmp_path / "out", task="detect", replay=replay, overlays=False)
    failures = {f["file"]: f for f in summary.failures}
    ds = _dataset(tmp_path / "out")
    ids = {i["file_name"]: i["id"] for i in ds["images"]}
    for name, want in expect.items():
        if want in ("ambiguous", "fails"):
            reason = failures[name]["reason"]
            if want == "ambiguous" or "no replay answer" not in reason:  # X.txt is absent on Linux
                assert "could mean" in reason and all(f in reason for f in files), reason
            assert name not in ids
        else:
            assert name not in failures
            assert sum(a["image_id"] == ids[name] for a in ds["annotations"]) == want


# 2. Inputs under --out, and other visionkit output folders, are not read as input.
@pytest.mark.parametrize("layout", ["out_inside_input", "old_output_tree_inside_input"])
def test_output_folders_inside_the_input_are_skipped(tmp_path, layout):
    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png"):
        _image(photos / name)
    replay = _answers(tmp_path / "replay", p1=ONE_BOX, p2=ONE_BOX)
    out = photos / "labels" if layout == "out_inside_input" else tmp_path / "out"
    if layout == "old_output_tree_inside_input":
        # an earlier run's output, moved into the photo folder
        first = label([photos], photos / "run1", replay=replay)
        assert first.total == 2
    for run in range(2):
        summary = label([photos], out, replay=replay)
        assert summary.total == 2 and summary.ok, summary.failures
        assert [i["file_name"] for i in _dataset(out)["images"]] == ["p1.png", "p2.png"]
        if run or layout == "old_output_tree_inside_input":  # said once per run that skipped files
            skipped = [n for n in summary.notices if "skipped" in n]
            assert len(skipped) == 1 and "output folder" in skipped[0], summary.notices


def test_a_file_named_directly_under_out_is_refused(tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "p1.png")
    replay = _answers(tmp_path / "replay", p1=ONE_BOX)
    label([photos], photos / "labels", replay=replay)
    with pytest.raises(InputError, match="no images"):
        label([photos / "labels" / "overlays" / "p1.png"], photos / "labels", replay=replay)


# 3. A rerun in which every image fails keeps the previous dataset and says so.
@pytest.mark.parametrize("second, kept", [
    ({"p1": "Sorry.", "p2": "No."}, True),             # every image fails: the good file is kept
    ({"p1": ONE_BOX, "p2": "No."}, False),             # one lost: written, and the loss is reported
    ({"p1": ONE_BOX, "p2": ONE_BOX}, False),           # nothing lost: written, nothing to report
])
def test_a_worse_rerun_never_replaces_the_dataset_silently(tmp_path, second, kept):
    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png"):
        _image(photos / name)
    out = tmp_path / "out"
    label([photos], out, replay=_answers(tmp_path / "r1", p1=ONE_BOX, p2=TWO_BOXES), overlays=False)
    before = (out / "annotations.json").read_bytes()
    summary = label([photos], out, replay=_answers(tmp_path / "r2", **second), overlays=False)
    failed = [k for k, v in second.items() if not v.startswith("[")]
    assert len(json.loads((out / "failures.json").read_text())) == len(failed)
    if kept:
        assert (out / "annotations.json").read_bytes() == before
        assert summary.kept_previous and "no image succeeded" in summary.kept_previous
    else:
        assert summary.kept_previous is None
        assert len(_dataset(out)["images"]) == 2 - len(failed)
        assert summary.lost_images == [f"{k}.png" for k in failed]
        if failed:  # the previous file is kept beside the new one, so nothing is lost
            assert (out / "annotations.previous.json").read_bytes() == before


# 4. An overlay that cannot be written keeps the image's annotations.
@pytest.mark.parametrize("blocked", [[], ["p1"], ["p1", "p2"]])
def test_an_overlay_failure_keeps_the_annotations(tmp_path, blocked):
    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png"):
        _image(photos / name)
    out = tmp_path / "out"
    for key in blocked:  # a folder where the overlay file should go: the rename onto it fails
        (out / "overlays" / f"{key}.jpg").mkdir(parents=True)
    summary = label([photos], out, replay=_answers(tmp_path / "r", p1=ONE_BOX, p2=TWO_BOXES))
    assert summary.succeeded == 2 and summary.failed == 0
    assert len(_dataset(out)["annotations"]) == 3
    assert [f["file"] for f in summary.overlay_failures] == [f"{k}.png" for k in blocked]
    listed = json.loads((out / "failures.json").read_text())
    assert [(f["file"], f["stage"]) for f in listed] == [(f"{k}.png", "overlay") for k in blocked]
    assert summary.ok == (not blocked)


# 5. Keys stay stable as the folder grows.
def _overlays(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "overlays").iterdir())


@pytest.mark.parametrize("first, added, keys", [
    (["a/x.png"], ["b/x.png"], {"a/x.png": "x", "b/x.png": "b__x"}),
    (["x.png"], ["sub/x.png"], {"x.png": "x", "sub/x.png": "sub__x"}),
    (["a/x.png", "b/x.png"], ["c/x.png"], {"a/x.png": "a__x", "b/x.png": "b__x", "c/x.png": "c__x"}),
    ([], ["x.png"], {"x.png": "x"}),
])
def test_keys_stay_stable_as_the_folder_grows(tmp_path, first, added, keys):
    photos = tmp_path / "photos"
    out = tmp_path / "out"
    answers = {k: ONE_BOX for k in list(keys.values()) + ["x"]}
    replay = _answers(tmp_path / "r", **answers)
    if first:
        for name in first:
            _image(photos / name)
        label([photos], out, replay=replay)
        assert _overlays(out) == sorted(f"{keys[n]}.jpg" for n in first)
    for name in added:
        _image(photos / name)
    seen = {}
    summary = label([photos], out, replay=replay, on_image=lambda r: seen.update({r.file: r.key}))
    assert summary.ok, summary.failures
    assert seen == keys
    assert _overlays(out) == sorted(f"{k}.jpg" for k in keys.values())  # no stale overlay left


def test_an_answered_image_is_not_requested_again_when_a_same_stem_image_arrives(tmp_path):
    from visionkit.gemini import GeminiClient

    photos, out = tmp_path / "photos", tmp_path / "out"
    _image(photos / "a" / "x.png")
    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        label([photos], out, client=client)
        assert len(server.generate_requests) == 1
        _image(photos / "b" / "x.png", size=(50, 20))
        summary = label([photos], out, client=client)
        assert len(server.generate_requests) == 2 and summary.cached == 1
        assert server.generate_requests[-1].image_wh == (50, 20)
    assert sorted(p.name for p in (out / "responses").glob("*.json")) == ["b__x.json", "x.json"]


def test_an_output_folder_from_before_the_key_map_keeps_its_keys(tmp_path):
    """A folder written before keys.json existed: its saved responses still belong to their images."""
    from visionkit.gemini import GeminiClient

    photos, out = tmp_path / "photos", tmp_path / "out"
    _image(photos / "a" / "x.png")
    _image(photos / "y.png", size=(30, 30))
    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        label([photos], out, client=client)
        (out / "keys.json").unlink()  # as the previous version left it
        shutil.rmtree(out / "overlays")
        _image(photos / "b" / "x.png", size=(50, 20))
        summary = label([photos], out, client=client)
        assert summary.cached == 2 and len(server.generate_requests) == 3
    assert _overlays(out) == ["b__x.jpg", "x.jpg", "y.jpg"]


def test_the_cli_says_each_case_once(tmp_path):
    import io

    from visionkit.cli import main

    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png"):
        _image(photos / name)
    out = photos / "labels"
    good = _answers(tmp_path / "good", p1=ONE_BOX, p2=ONE_BOX)
    bad = _answers(tmp_path / "bad", p1="Sorry.", p2="No.")
    half = _answers(tmp_path / "half", p1=ONE_BOX, p2="No.")

    def run(replay: Path) -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = main(["label", str(photos), "--out", str(out), "--replay", str(replay), "-q"], stdout=stdout,
                    stderr=stderr)
        return code, stdout.getvalue(), stderr.getvalue()

    assert run(good)[0] == 0
    code, stdout, stderr = run(bad)  # second run: labels/ is inside photos/ and every image fails
    assert code == 1 and stderr.count("note: skipped visionkit output folders") == 1
    assert "kept as it was" in stdout and "not replaced: no image succeeded" in stdout
    code, stdout, _ = run(half)
    assert code == 1 and "1 images that had annotations in the previous annotations.json have none now: " \
                         "p2.png" in stdout
    (out / "overlays" / "p1.jpg").unlink()
    (out / "overlays" / "p1.jpg").mkdir()
    code, stdout, stderr = run(good)
    assert code == 1 and "OVERLAY NOT WRITTEN p1.png (annotations kept)" in stderr
    assert "2/2 images labelled, 0 failed; 2 annotations" in stdout
    assert "1 overlays could not be written" in stdout


def test_replaying_a_grown_runs_responses_uses_its_recorded_keys(tmp_path):
    """``--replay RUN/responses`` after the folder grew: RUN/keys.json says which answer is whose."""
    from visionkit.gemini import GeminiClient

    photos, run = tmp_path / "photos", tmp_path / "run"
    _image(photos / "a" / "x.png")
    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        label([photos], run, client=client)  # a/x.png -> x
        _image(photos / "b" / "x.png", size=(50, 20))
        label([photos], run, client=client)  # b/x.png -> b__x
    assert sorted(p.name for p in (run / "responses").glob("*.json")) == ["b__x.json", "x.json"]
    again = label([photos], tmp_path / "again", replay=run / "responses")
    assert again.ok, again.failures  # a fresh folder keys them a__x and b__x; RUN's keys find their answers
    assert _dataset(again.out)["images"] == _dataset(run)["images"]


@pytest.mark.parametrize("text, expected", [
    ('{"images": [], "annotations": []}', {}),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}], "annotations": []}',
     {"a.png": 0}),
    ('{"info": {"x": 1}, "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "s/b.png"}], '
     '"annotations": [{"id": 1, "image_id": 2, "segmentation": {"size": [2, 2], "counts": "04"}}, '
     '{"id": 2, "image_id": 2, "segmentation": [[0, 0, 1, 0, 1, 1]]}, {"id": 3, "image_id": 9}]}',
     {"a.png": 0, "s/b.png": 2}),
    ('\ufeff{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"id": 1, "image_id": 1}]}',
     {"a.png": 1}),  # saved by an editor that writes a BOM: still a dataset worth protecting
    ("not json", None),
    ('{"images": "nope", "annotations": []}', None),
    ("[]", None),
])
def test_previous_counts(tmp_path, text, expected):
    from visionkit.run.outdir import previous_counts

    (tmp_path / "annotations.json").write_text(text, encoding="utf-8")
    assert previous_counts(tmp_path / "annotations.json") == expected
    assert previous_counts(tmp_path / "missing.json") is None


def test_previous_counts_come_from_the_index_while_it_matches_the_file(tmp_path):
    from visionkit.run.outdir import INDEX_NAME, previous_counts

    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png"):
        _image(photos / name)
    out = tmp_path / "out"
    label([photos], out, replay=_answers(tmp_path / "r", p1=ONE_BOX, p2=TWO_BOXES), overlays=False)
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["counts"] == {"p1.png": 1, "p2.png": 2} == previous_counts(out / "annotations.json")
    index["counts"] = {"p1.png": 7}  # the index is what is read while it matches the file ...
    (out / INDEX_NAME).write_text(json.dumps(index))
    assert previous_counts(out / "annotations.json") == {"p1.png": 7}
    data = _dataset(out)  # ... and a file changed by someone else is parsed again
    data["annotations"] = data["annotations"][:1]
    (out / "annotations.json").write_text(json.dumps(data))
    assert previous_counts(out / "annotations.json") == {"p1.png": 1, "p2.png": 0}


def test_a_second_lossy_rerun_keeps_the_fullest_previous_copy(tmp_path):
    """full run -> rerun losing one image (previous = the full file) -> rerun losing another: the
    previous copy must stay the full dataset, not become the already-reduced one, and the run says so."""
    photos = tmp_path / "photos"
    for name in ("p1.png", "p2.png", "p3.png"):
        _image(photos / name)
    out = tmp_path / "out"
    good = {"p1": ONE_BOX, "p2": TWO_BOXES, "p3": ONE_BOX}
    label([photos], out, replay=_answers(tmp_path / "r1", **good), overlays=False)
    full = (out / "annotations.json").read_bytes()
    second = label([photos], out, replay=_answers(tmp_path / "r2", **{**good, "p3": "No."}), overlays=False)
    assert second.lost_images == ["p3.png"] and second.previous_note is None
    assert (out / "annotations.previous.json").read_bytes() == full
    third = label([photos], out, replay=_answers(tmp_path / "r3", p1=ONE_BOX, p2="No.", p3="No."),
                  overlays=False)
    assert third.lost_images == ["p2.png"]
    assert (out / "annotations.previous.json").read_bytes() == full  # still the fullest copy
    assert third.previous_note and "annotates 3 images, more than the 2" in third.previous_note
