"""``visionkit overlays DIR``: the overlays of a finished run, (re)drawn from its saved answers."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from visionkit.cli import build_parser, main
from visionkit.errors import ConfigError, InputError
from visionkit.run.redraw import redraw_overlays
from visionkit.testing.synthetic import write_labelled_folder


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def run_dirs(tmp_path):
    images, replay = write_labelled_folder(tmp_path / "data", 5, (200, 150), masks=3)
    return images, replay, tmp_path


@pytest.mark.parametrize("processes", [False, True])
def test_redrawn_overlays_equal_the_ones_label_writes(run_dirs, processes):
    images, replay, tmp = run_dirs
    assert _cli("label", str(images), "--out", str(tmp / "with"), "--replay", str(replay), "-q")[0] == 0
    assert _cli("label", str(images), "--out", str(tmp / "without"), "--replay", str(replay), "-q",
                "--no-overlays")[0] == 0
    assert not (tmp / "without" / "overlays").exists()
    before = (tmp / "without" / "annotations.json").read_bytes()
    summary = redraw_overlays(tmp / "without", replay=replay, processes=processes)
    assert (summary.total, summary.drawn, summary.failures) == (5, 5, [])
    names = sorted(p.name for p in (tmp / "with" / "overlays").iterdir())
    assert names == sorted(p.name for p in (tmp / "without" / "overlays").iterdir()) and len(names) == 5
    for name in names:
        assert (tmp / "with" / "overlays" / name).read_bytes() == \
            (tmp / "without" / "overlays" / name).read_bytes()
    assert (tmp / "without" / "annotations.json").read_bytes() == before  # untouched


def test_cli_other_format_and_size_from_the_responses_folder(run_dirs):
    from PIL import Image

    images, replay, tmp = run_dirs
    out = tmp / "out"
    assert _cli("label", str(images), "--out", str(out), "--replay", str(replay), "-q",
                "--no-overlays")[0] == 0
    shutil.copytree(replay, out / "responses")  # as an online run leaves them
    code, stdout, _ = _cli("overlays", str(out), "--overlay-format", "png", "--overlay-max-side", "100")
    assert code == 0 and "5/5 overlays written" in stdout
    with Image.open(out / "overlays" / "img00000.png") as im:
        assert im.format == "PNG" and im.size == (100, 75)


def test_an_image_without_an_answer_is_reported_and_the_others_drawn(run_dirs):
    images, replay, tmp = run_dirs
    out = tmp / "out"
    assert _cli("label", str(images), "--out", str(out), "--replay", str(replay), "-q",
                "--no-overlays")[0] == 0
    (replay / "img00002.txt").unlink()
    code, stdout, stderr = _cli("overlays", str(out), "--replay", str(replay))
    assert code == 1 and "4/5 overlays written" in stdout and "1 failed" in stdout
    assert "FAILED img00002.jpg" in stderr and "no replay answer" in stderr
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        f"img0000{i}.jpg" for i in (0, 1, 3, 4)]


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="sources.json"):
        redraw_overlays(tmp_path)
    code, _, stderr = _cli("overlays", str(tmp_path))
    assert code == 2 and "not a finished label run" in stderr


def test_a_replay_run_without_replay_says_where_the_answers_are(run_dirs):
    images, replay, tmp = run_dirs
    assert _cli("label", str(images), "--out", str(tmp / "o"), "--replay", str(replay), "-q")[0] == 0
    with pytest.raises(InputError, match="--replay"):
        redraw_overlays(tmp / "o")


@pytest.mark.parametrize("kwargs", [{"overlay_format": "bmp"}, {"overlay_max_side": -1}, {"threshold": 300},
                                    {"concurrency": 0}, {"dedupe": 1.5}])
def test_bad_options(tmp_path, kwargs):
    (tmp_path / "sources.json").write_text(json.dumps({"images": {}}))
    with pytest.raises(ConfigError):
        redraw_overlays(tmp_path, **kwargs)


def test_help_lists_the_command_and_its_options():
    parser = build_parser()
    assert "overlays" in parser.format_help()
    sub = parser._subparsers._group_actions[0].choices["overlays"].format_help()
    for flag in ("--replay", "--overlay-format", "--overlay-max-side", "--threshold", "--dedupe"):
        assert flag in sub


def test_a_detect_run_is_redrawn_as_detect(run_dirs):
    """The fixture answers hold masks; a detect run ignored them, and so must its redrawn overlays."""
    images, replay, tmp = run_dirs
    assert _cli("label", str(images), "--out", str(tmp / "with"), "--replay", str(replay), "-q",
                "--task", "detect")[0] == 0
    assert _cli("label", str(images), "--out", str(tmp / "without"), "--replay", str(replay), "-q",
                "--task", "detect", "--no-overlays")[0] == 0
    code, _, err = _cli("overlays", str(tmp / "without"), "--replay", str(replay), "--task", "detect")
    assert code == 0, err
    names = sorted(p.name for p in (tmp / "with" / "overlays").iterdir())
    assert len(names) == 5
    for name in names:
        assert (tmp / "with" / "overlays" / name).read_bytes() == \
            (tmp / "without" / "overlays" / name).read_bytes()


def test_redraw_takes_the_run_folder_lock(run_dirs):
    from visionkit.run.outdir import lock_output

    images, replay, tmp = run_dirs
    assert _cli("label", str(images), "--out", str(tmp / "run"), "--replay", str(replay), "-q")[0] == 0
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp / "run"), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ConfigError, match="another visionkit run"):
            redraw_overlays(tmp / "run", replay=replay)
    finally:
        release.set()
        holder.join(30)
    with lock_output(tmp / "run"):
        pass  # released again


def _hold_lock(out, ready, release):
    from pathlib import Path

    from visionkit.run.outdir import lock_output

    with lock_output(Path(out)):
        ready.set()
        release.wait(30)
