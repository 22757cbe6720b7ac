"""`visionkit label` online, against a local HTTP server (FakeGemini) on 127.0.0.1: never the real API."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from PIL import Image

from visionkit import label
from visionkit.cli import main
from visionkit.gemini import GeminiClient
from visionkit.gemini.retry import RetryPolicy
from visionkit.run.pipeline import RateLimiter
from visionkit.testing.fake_gemini import FakeGemini, Fault
from visionkit.testing.replay_responder import ReplayResponder

KEY = "AQ.test-key-must-never-leak-7f3a9c"
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def fixture_server():
    with FakeGemini(ReplayResponder([FIXTURES / "images"], FIXTURES / "replay"), api_key=KEY) as server:
        yield server


def client_for(server, **kw) -> GeminiClient:
    return GeminiClient(api_key=KEY, base_url=server.base_url, retry=kw.pop("retry", FAST_RETRY), **kw)


def without_date(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["info"].pop("date_created")
    return data


def test_online_equals_offline_and_resumes_for_free(fixture_server, tmp_path):
    fixture_server.clear()
    online, offline, replayed = tmp_path / "online", tmp_path / "offline", tmp_path / "replayed"
    with client_for(fixture_server) as client:
        summary = label([FIXTURES / "images"], online, task="segment", client=client, concurrency=4)
    assert summary.ok and summary.requested == 8 and summary.cached == 0
    # The answer with <seg_N> tokens is asked again once with the polygon prompt (the recorded answer
    # repeats itself, so the first one is kept).
    assert len(fixture_server.generate_requests) == 9 and summary.reasked == 1
    for req in fixture_server.generate_requests:
        assert req.headers["x-goog-api-key"] == KEY and KEY not in req.path and not req.query
        assert max(req.image_wh) <= 1024
    assert sorted(p.name for p in (online / "responses").glob("*.json")) == sorted(
        p.stem + ".json" for p in (FIXTURES / "replay").iterdir())

    label([FIXTURES / "images"], offline, task="segment", replay=FIXTURES / "replay")
    assert without_date(online / "annotations.json") == without_date(offline / "annotations.json")

    # --replay DIR/responses reproduces the run; rerunning the same command sends nothing.
    label([FIXTURES / "images"], replayed, task="segment", replay=online / "responses")
    assert without_date(replayed / "annotations.json") == without_date(online / "annotations.json")
    fixture_server.clear()
    with client_for(fixture_server) as client:
        again = label([FIXTURES / "images"], online, task="segment", client=client)
    assert again.cached == 8 and again.requested == 0 and fixture_server.generate_requests == []
    assert without_date(online / "annotations.json") == without_date(offline / "annotations.json")


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (64 + i, 48), (10 * i % 255, 80, 160)).save(folder / f"img{i:03d}.png")
    return folder


def test_failures_are_data_not_crashes(tmp_path):
    images = _images(tmp_path / "im", 6)

    def fault_for(request):
        return Fault.status(400, message="Request contains an invalid argument.") \
            if request.image_wh == (66, 48) else None

    with FakeGemini(api_key=KEY, fault_for=fault_for) as server:
        server.push_faults(Fault.status(503), Fault.status(429, retry_delay=0.05), Fault.reset())
        with client_for(server) as client:
            summary = label([images], tmp_path / "out", client=client, concurrency=3)
        failed = [r for r in server.generate_requests if r.image_wh == (66, 48)]
    assert summary.failed == 1 and summary.succeeded == 5
    assert len(failed) == 1  # a permanent 400 is not retried
    assert summary.retries == 3
    (failure,) = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert failure["file"] == "img002.png" and failure["error"] == "BadRequestError"
    assert "400" in failure["reason"] and "invalid argument" in failure["reason"]
    assert not (tmp_path / "out" / "responses" / "img002.json").exists()
    ds = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(ds["images"]) == 5


def test_blocked_answers_fail_and_are_not_cached(tmp_path):
    images = _images(tmp_path / "im", 2)
    with FakeGemini(api_key=KEY, fault_for=lambda r: Fault.blocked("SAFETY") if r.image_wh == (64, 48)
                    else None) as server, client_for(server) as client:
        summary = label([images], tmp_path / "out", client=client)
    assert summary.failed == 1 and summary.failures[0]["error"] == "BlockedError"
    assert sorted(p.name for p in (tmp_path / "out" / "responses").glob("*.json")) == ["img001.json"]


def test_classes_fix_category_order_and_drop_unmapped(fixture_server, tmp_path):
    with client_for(fixture_server) as client:
        summary = label([FIXTURES / "images" / "square_1024.png"], tmp_path / "o", client=client,
                        classes=["spoon", "plate", "cup"])
    ds = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert [(c["id"], c["name"]) for c in ds["categories"]] == [(1, "spoon"), (2, "plate"), (3, "cup")]
    assert ds["info"]["visionkit"]["unmapped_labels"] == {"napkin": 1}
    assert summary.export_report["unmapped_detections"] == 1
    # Detection runs in JSON mode with a schema whose label enum is the class list, in order.
    with client_for(fixture_server) as client:
        label([FIXTURES / "images" / "square_1024.png"], tmp_path / "d", client=client, task="detect",
              classes=["spoon", "plate", "cup"])
    schema = fixture_server.generate_requests[-1].generation_config["responseSchema"]
    assert schema["items"]["properties"]["label"]["enum"] == ["spoon", "plate", "cup"]


def test_rate_limiter_spaces_request_starts():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
    assert slept == [0.5, 0.5, 0.5]
    RateLimiter(None).acquire()


def _cli(args, env_key=KEY, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["GEMINI_API_KEY"] = env_key
    return subprocess.Popen([sys.executable, "-m", "visionkit", "label", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_key_appears_nowhere(tmp_path):
    images = _images(tmp_path / "im", 3)

    def fault_for(request):
        return Fault.status(403, message="Permission denied") if request.image_wh == (65, 48) else None

    with FakeGemini(api_key=KEY, fault_for=fault_for) as server:
        proc = _cli([str(images), "--out", str(tmp_path / "out"), "--base-url", server.base_url, "-v"])
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "img001.png" in stderr and "AuthError" in stderr
    assert "visionkit.gemini" in stderr  # debug logging was on
    assert KEY not in stdout and KEY not in stderr
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    # and a bad key is reported without echoing it
    with FakeGemini(api_key="another-key") as server:
        err = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GEMINI_API_KEY", KEY)
            code = main(["label", str(images), "--out", str(tmp_path / "o2"), "--base-url", server.base_url],
                        stdout=io.StringIO(), stderr=err)
    # the key is checked before any image (issue 15): a configuration error, nothing was labelled
    assert code == 2 and "API key not valid" in err.getvalue() and KEY not in err.getvalue()


def test_kill_minus_9_then_resume(tmp_path):
    images = _images(tmp_path / "im", 16)
    reference = tmp_path / "reference"
    with FakeGemini(api_key=KEY) as server, client_for(server) as client:
        label([images], reference, client=client)

    out = tmp_path / "out"
    with FakeGemini(api_key=KEY, latency=0.25) as server:
        proc = _cli([str(images), "--out", str(out), "--base-url", server.base_url, "--concurrency", "2",
                     "-q"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answered = list((out / "responses").glob("*.json")) if (out / "responses").is_dir() else []
            if len(answered) >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        answered = {p.stem for p in (out / "responses").glob("*.json")}
        first_run = len(server.generate_requests)
    assert 5 <= len(answered) < 16
    assert not (out / "annotations.json").exists()  # never half-written
    # no spool or temp file left behind; keys.json is written before any image is processed, and the
    # lock file stays (the lock itself went with the killed process)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".visionkit.lock", "keys.json"]

    with FakeGemini(api_key=KEY) as server:
        proc = _cli([str(images), "--out", str(out), "--base-url", server.base_url, "--concurrency", "2",
                     "-q"])
        stdout, stderr = proc.communicate(timeout=120)
        second_run = len(server.generate_requests)
    assert proc.returncode == 0, stderr
    # Only the unanswered images are requested again; at most the 2 in flight at the kill were paid twice.
    assert second_run == 16 - len(answered)
    assert first_run <= len(answered) + 2
    assert without_date(out / "annotations.json") == without_date(reference / "annotations.json")


def test_unparseable_answers_are_saved_so_a_rerun_does_not_pay_again(tmp_path):
    images = _images(tmp_path / "im", 3)

    def responder(request):
        return "Sorry, I cannot help with that." if request.image_wh == (65, 48) else \
            '[{"box_2d": [10, 10, 500, 500], "label": "thing"}]'

    with FakeGemini(responder, api_key=KEY) as server, client_for(server) as client:
        first = label([images], tmp_path / "out", client=client)
        second = label([images], tmp_path / "out", client=client)
        sent = len(server.generate_requests)
    assert first.failed == second.failed == 1 and first.failures[0]["stage"] == "parse"
    assert sent == 3 and second.cached == 3
    assert (tmp_path / "out" / "responses" / "img001.json").is_file()


def test_saved_answers_are_reused_only_for_the_same_request_and_image(tmp_path):
    images = _images(tmp_path / "im", 3)
    out = tmp_path / "out"
    with FakeGemini(api_key=KEY) as server, client_for(server) as client:
        label([images], out, client=client, task="detect")
        assert len(server.generate_requests) == 3
        # Another task: the saved detection answers do not fit; every image is asked again, with a note.
        notes = []
        again = label([images], out, client=client, task="segment",
                      on_image=lambda r: notes.extend(str(w) for w in r.warnings))
        assert again.requested == 3 and again.cached == 0 and len(server.generate_requests) == 6
        stale = "saved answer was for another request (task changed); asked again"
        assert sum(stale in n for n in notes) == 3
        # Re-thresholding or re-exporting never pays twice.
        label([images], out, client=client, task="segment", threshold=200, polygons=True)
        assert len(server.generate_requests) == 6
        # A changed image is asked again; the others are not.
        Image.new("RGB", (64, 48), (250, 250, 0)).save(images / "img000.png")
        os.utime(images / "img000.png", ns=(1, 1))
        changed = label([images], out, client=client, task="segment")
        assert changed.requested == 1 and changed.cached == 2 and len(server.generate_requests) == 7
        # Only the mtime changed (a copy): same bytes, so the saved answer still fits.
        os.utime(images / "img001.png", ns=(5, 5))
        label([images], out, client=client, task="segment")
        assert len(server.generate_requests) == 7


@pytest.mark.parametrize("fault, error", [
    (Fault.status(429, quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"), "RateLimitError"),
    (Fault.status(403, message="Permission denied"), "AuthError"),
    (Fault.status(404, message="models/nope is not found"), "NotFoundError"),
])
def test_failures_that_would_repeat_stop_the_run(tmp_path, fault, error):
    images = _images(tmp_path / "im", 12)
    with FakeGemini(api_key=KEY, fault_for=lambda r: fault) as server, client_for(server) as client:
        summary = label([images], tmp_path / "out", client=client, concurrency=2)
        sent = len(server.generate_requests)
    assert sent <= 4  # the first failure, plus what was already in flight
    assert summary.stopped and error in summary.stopped
    assert summary.failed == 12 and summary.succeeded == 0
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert len(failures) == 12
    assert sum(f["stage"] == "not attempted" for f in failures) >= 8
    assert all("would repeat for every image" in f["reason"] for f in failures if f["error"] == "Stopped")


def test_requests_and_retries_of_failed_images_are_counted(tmp_path):
    images = _images(tmp_path / "im", 2)
    with FakeGemini(api_key=KEY, fault_for=lambda r: Fault.status(503)) as server, \
            client_for(server) as client:
        summary = label([images], tmp_path / "out", client=client)
        sent = len(server.generate_requests)
    assert sent == 2 * FAST_RETRY.max_attempts
    assert summary.failed == 2 and summary.requested == 2 and summary.retries == sent - 2


def test_bad_class_list_and_unwritable_output_fail_before_any_request(tmp_path):
    images = _images(tmp_path / "im", 2)
    (tmp_path / "file").write_text("not a folder")
    with FakeGemini(api_key=KEY) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEMINI_API_KEY", KEY)
        for argv, message in [
            (["--classes", "cup,Cups", "--out", str(tmp_path / "o")], "duplicate category"),
            (["--out", str(tmp_path / "file")], "cannot write to the output folder"),
        ]:
            err = io.StringIO()
            code = main(["label", str(images), "--base-url", server.base_url, *argv], stdout=io.StringIO(),
                        stderr=err)
            assert code == 2 and message in err.getvalue() and "Traceback" not in err.getvalue()
        assert server.generate_requests == []


def test_ctrl_c_drops_queued_work(tmp_path):
    images = _images(tmp_path / "im", 12)
    with FakeGemini(api_key=KEY, latency=1.0) as server:
        proc = _cli([str(images), "--out", str(tmp_path / "out"), "--base-url", server.base_url,
                     "--concurrency", "2", "-q"])
        deadline = time.monotonic() + 30
        while len(server.generate_requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
        sent = len(server.generate_requests)
    assert proc.returncode == 130 and "interrupted" in stderr
    assert sent <= 4  # the two in flight, perhaps the next two; never the whole queue of 12
    assert took < 3.0
