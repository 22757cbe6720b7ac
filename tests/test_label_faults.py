"""Issue 11, files and concurrency: a full disk (#16), stale temp files (#17), two runs into one --out and a
response that does not match its record (#18). The full disk is real: writes go to /dev/full (ENOSPC)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from visionkit import label
from visionkit.cli import main
from visionkit.errors import ConfigError
from visionkit.gemini import GeminiClient
from visionkit.media import atomic
from visionkit.testing.fake_gemini import FakeGemini

KEY = "AQ.faults-test-key"
ONE_BOX = '[{"box_2d": [100, 100, 600, 600], "label": "cup"}]'
DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux) for a real ENOSPC")


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 30), (20 * i % 255, 90, 30)).save(folder / f"p{i}.png")
    return folder


def _answers(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


class _Disk:
    """Makes the atomic writes whose target matches ``full(path)`` fail with a real ENOSPC."""

    def __init__(self, monkeypatch, full):
        self.full = full
        real = atomic._create_temp

        def create(path: Path):
            if self.full(path):
                return os.open(DEV_FULL, os.O_WRONLY), path.parent / f".{path.name}.000000000000.tmp"
            return real(path)

        monkeypatch.setattr(atomic, "_create_temp", create)


def _full_spool(monkeypatch):
    monkeypatch.setattr(tempfile, "TemporaryFile",
                        lambda *a, **kw: open(DEV_FULL, "r+b", buffering=0))  # noqa: SIM115


@needs_dev_full
@pytest.mark.parametrize("answers, labelled", [
    ({"p0": ONE_BOX, "p1": ONE_BOX}, 2),      # annotations.json cannot be written
    ({"p0": "Sorry.", "p1": "No."}, 0),       # every image fails; failures.json cannot be written
])
def test_a_full_disk_ends_with_a_summary_not_exit_2(tmp_path, monkeypatch, answers, labelled):
    photos = _images(tmp_path / "photos", 2)
    out = tmp_path / "out"
    assert label([photos], out, replay=_answers(tmp_path / "good", {"p0": ONE_BOX, "p1": ONE_BOX})).ok
    assert json.loads((out / "failures.json").read_text()) == []
    _Disk(monkeypatch, lambda path: True)
    _full_spool(monkeypatch)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["label", str(photos), "--out", str(out), "--replay", str(_answers(tmp_path / "r", answers)),
                 "--no-overlays", "-q"], stdout=stdout, stderr=stderr)
    assert code == 1, stderr.getvalue()
    assert f"{labelled}/2 images labelled" in stdout.getvalue()
    assert "Traceback" not in stderr.getvalue() + stdout.getvalue()
    assert "No space left on device" in stdout.getvalue()
    if labelled:
        assert "NOT WRITTEN: annotations.json could not be written" in stdout.getvalue()
    else:  # the old failures.json said [] although every image failed: it must not survive
        assert not (out / "failures.json").exists()
        assert "NOT WRITTEN: cannot write" in stdout.getvalue() and "failures.json" in stdout.getvalue()


@needs_dev_full
@pytest.mark.parametrize("previous, on_disk", [
    (True, "NOT written; the file on disk is the previous one, unchanged (2 images, 2 annotations)"),
    (False, "NOT written; there is no annotations.json on disk"),
])
def test_the_full_disk_summary_says_what_is_on_disk(tmp_path, monkeypatch, previous, on_disk):
    """Issue 19 #14: it said '2/2 images labelled ... 0 annotations in out/annotations.json' although that
    file was not written."""
    photos = _images(tmp_path / "photos", 2)
    out = tmp_path / "out"
    replay = _answers(tmp_path / "good", {"p0": ONE_BOX, "p1": ONE_BOX})
    if previous:
        assert label([photos], out, replay=_answers(tmp_path / "old", {"p0": ONE_BOX, "p1": ONE_BOX})).ok
    _Disk(monkeypatch, lambda path: path.name == "annotations.json")
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["label", str(photos), "--out", str(out), "--replay", str(replay), "--no-overlays", "-q"],
                stdout=stdout, stderr=stderr)
    assert code == 1, stderr.getvalue()
    line = stdout.getvalue().splitlines()[0]
    assert line.startswith("2/2 images labelled, 0 failed; ") and f"annotations.json {on_disk}" in line
    assert " annotations in " not in line
    assert (out / "annotations.json").exists() == previous


@needs_dev_full
@pytest.mark.parametrize("disk_frees", [True, False])
def test_answers_whose_save_failed_are_kept_and_saved_later(tmp_path, monkeypatch, disk_frees):
    photos = _images(tmp_path / "photos", 3)
    out = tmp_path / "out"
    disk = _Disk(monkeypatch, lambda path: "responses" in path.parts)
    done = []

    def on_image(result):
        done.append(result)
        if disk_frees and len(done) == 3:
            disk.full = lambda path: False

    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        summary = label([photos], out, client=client, on_image=on_image)
        assert summary.succeeded == 3 and summary.requested == 3  # the paid answers were used
        assert all("kept in memory" in str(r.warnings[0]) for r in done)
        assert len(json.loads((out / "annotations.json").read_text())["annotations"]) == 3
        saved = sorted(p.name for p in (out / "responses").glob("*.json"))
        if disk_frees:
            assert summary.ok and summary.unsaved == 0 and saved == ["p0.json", "p1.json", "p2.json"]
            assert any("now saved" in n for n in summary.notices)
            again = label([photos], out, client=client)
            assert again.cached == 3 and len(server.generate_requests) == 3  # nothing paid twice
        else:
            assert not summary.ok and summary.unsaved == 3 and saved == []
            assert any("a rerun will ask for them again" in n for n in summary.notices)


def test_stale_temp_files_of_our_naming_are_removed_on_start(tmp_path):
    photos = _images(tmp_path / "photos", 1)
    out = tmp_path / "out"
    ours = [out / ".annotations.json.0123456789ab.tmp", out / "overlays" / ".p0.png.a1b2c3d4e5f6.tmp",
            out / "responses" / ".p0.json.ffffffffffff.tmp",
            out / "responses" / ".request" / ".p0.json.abcabcabcabc.tmp",
            out / "batch" / ".jobs.json.0a0a0a0a0a0a.tmp"]
    theirs = [out / ".notes.tmp", out / "draft.0123456789ab.tmp", out / "overlays" / ".keep.tmp",
              out / ".annotations.json.0123456789ab.tmp.bak"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by kill -9")
    notes: list[str] = []
    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        assert label([photos], out, client=client, on_notice=notes.append).ok
    assert [p for p in ours if p.exists()] == []
    assert all(p.exists() for p in theirs)
    assert any(f"removed {len(ours)} temp files" in n for n in notes)


def _cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, GEMINI_API_KEY=KEY)
    return subprocess.Popen([sys.executable, "-m", "visionkit", "label", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_into_the_same_folder_fails_fast_naming_the_first(tmp_path):
    photos = _images(tmp_path / "photos", 4)
    out = tmp_path / "out"
    with FakeGemini(api_key=KEY, latency=1.0) as server:
        first = _cli([str(photos), "--out", str(out), "--base-url", server.base_url, "--concurrency", "1",
                      "-q"])
        try:
            deadline = time.monotonic() + 30
            while not server.generate_requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.generate_requests, "the first run never sent a request"
            with GeminiClient(api_key=KEY, base_url=server.base_url) as client, \
                    pytest.raises(ConfigError, match=f"another visionkit run .*pid {first.pid}"):
                label([photos], out, client=client)
            sent = len(server.generate_requests)
        finally:
            first.kill()
            first.communicate(timeout=30)
        assert sent <= 2  # only the first run's requests
        with GeminiClient(api_key=KEY, base_url=server.base_url) as client:
            assert label([photos], out, client=client).ok  # a killed run leaves no stale lock


def test_a_response_that_does_not_match_its_record_is_asked_again(tmp_path):
    photos = _images(tmp_path / "photos", 2)
    out = tmp_path / "out"
    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        label([photos], out, client=client, task="detect")
        # another process wrote p0's response after p0's record (two runs, detect and segment at once)
        other = json.loads((out / "responses" / "p0.json").read_text())
        other["candidates"][0]["content"]["parts"][0]["text"] = '[{"box_2d": [1, 1, 9, 9], "label": "x"}]'
        (out / "responses" / "p0.json").write_text(json.dumps(other))
        notes = []
        again = label([photos], out, client=client, task="detect",
                      on_image=lambda r: notes.extend(str(w) for w in r.warnings))
        assert again.requested == 1 and again.cached == 1 and len(server.generate_requests) == 3
        assert any("does not match its request record" in n for n in notes)


@pytest.mark.skipif(os.name == "nt", reason="flock is POSIX")
@pytest.mark.parametrize("flock_error, outcome", [
    (None, "locked"),
    (BlockingIOError(11, "Resource temporarily unavailable"), "held"),
    (OSError(37, "No locks available"), "unsupported"),    # ENOLCK: a network mount without locks
    (OSError(95, "Operation not supported"), "unsupported"),
])
def test_lock_states(tmp_path, monkeypatch, flock_error, outcome):
    import fcntl

    from visionkit.run import outdir

    photos = _images(tmp_path / "photos", 1)
    replay = _answers(tmp_path / "r", {"p0": ONE_BOX})
    if flock_error is not None:
        def flock(fd, op):
            raise flock_error
        monkeypatch.setattr(fcntl, "flock", flock)
    notes: list[str] = []
    if outcome == "held":
        with pytest.raises(ConfigError, match="another visionkit run is writing to"):
            label([photos], tmp_path / "out", replay=replay)
        return
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / ".annotations.json.0123456789ab.tmp"
    stale.write_text("x")
    assert label([photos], tmp_path / "out", replay=replay, on_notice=notes.append).ok
    if outcome == "locked":
        assert not stale.exists() and not any("no file locks" in n for n in notes)
        with outdir.lock_output(tmp_path / "out") as locked:  # and it was released at the end
            assert locked
    else:  # no lock: the run goes on, says so, and leaves temp files alone (one may be another run's)
        assert stale.exists() and any("has no file locks" in n for n in notes)
