"""``visionkit label --batch`` and ``visionkit batch``: idempotent jobs, sharding, every job state, per-line
errors, cleanup, secrets, mixed runs. Against FakeGemini's batch endpoints; never the real API."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.cli import main
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.run import batch_steps, batching
from visionkit.run.batch_book import JobBook
from visionkit.testing import FakeGemini, Fault
from visionkit.testing.fake_batch import slow_timeline

KEY = "sekrit-batch-KEY-4242"
REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, size=(64, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        w, h = (size[0] + 8 * i, size[1]) if i % 2 else size  # non-square, differing sizes
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini(api_key=KEY) as fake:
        yield fake


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def label_batch(server, images, out, *extra):
    return run("label", images, "--out", out, "--task", "detect", "--batch", "--base-url", server.base_url,
               "--poll-interval", "0.001", *extra)


def created_keys(server) -> list[list[str]]:
    """The image keys of each create request, whether inline or from an uploaded JSONL file."""
    keys = []
    for create in server.batch.creates:
        config = create.json["batch"]["inputConfig"]
        if "fileName" in config:
            data = server.file_data(config["fileName"]) if config["fileName"].removeprefix("files/") in \
                server._files else b""
            keys.append([json.loads(line)["key"] for line in data.splitlines() if line.strip()])
        else:
            keys.append([r["metadata"]["key"] for r in config["requests"]["requests"]])
    return keys


def failures(out: Path) -> dict[str, dict]:
    return {f["key"]: f for f in json.loads((out / "failures.json").read_text())}


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3.7-flash"])
def test_batch_run_writes_what_online_mode_writes(server, tmp_path, model):
    make_images(tmp_path / "imgs", 5)
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "b", "--model", model)
    assert code == 0, stderr
    assert "5/5 images labelled" in stdout and "batch: 1 job(s), 5 of 5 requests answered" in stdout
    assert len(server.batch.creates) == 1 and not server.generate_requests  # nothing was asked online
    assert server.batch.creates[0].path == f"/v1beta/models/{model}:batchGenerateContent"
    code, _, _ = run("label", tmp_path / "imgs", "--out", tmp_path / "o", "--task", "detect",
                     "--base-url", server.base_url, "--model", model)
    assert code == 0
    batch_coco = json.loads((tmp_path / "b" / "annotations.json").read_text())
    online_coco = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert batch_coco["annotations"] == online_coco["annotations"]
    assert batch_coco["images"] == online_coco["images"]
    assert sorted(p.name for p in (tmp_path / "b" / "overlays").iterdir()) == \
        sorted(p.name for p in (tmp_path / "o" / "overlays").iterdir())
    # The batch answers carry online mode's request fingerprint: an online rerun asks for nothing.
    asked = len(server.generate_requests)
    code, stdout, _ = run("label", tmp_path / "imgs", "--out", tmp_path / "b", "--task", "detect",
                          "--base-url", server.base_url, "--model", model)
    assert code == 0 and len(server.generate_requests) == asked and "5 from cache" in stdout
    # ... and each batch line was the online request for that image.
    online = sorted((r.text, r.generation_config == server.generate_requests[0].generation_config)
                    for r in server.generate_requests)
    inline = server.batch.creates[0].json["batch"]["inputConfig"]["requests"]["requests"]
    texts = sorted("\n".join(p["text"] for p in r["request"]["contents"][0]["parts"] if "text" in p)
                   for r in inline)
    assert texts == [t for t, _ in online]
    assert all(r["request"]["generationConfig"] == server.generate_requests[0].generation_config
               for r in inline)


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3.7-flash"])
def test_saved_batch_answers_carry_what_online_answers_carry(server, tmp_path, model):
    make_images(tmp_path / "imgs", 2)
    for out, extra in (("b", ("--batch", "--poll-interval", "0.001")), ("o", ())):
        code, _, stderr = run("label", tmp_path / "imgs", "--out", tmp_path / out, "--task", "segment",
                              "--model", model, "--base-url", server.base_url, *extra)
        assert code == 0, stderr
    batch = json.loads((tmp_path / "b/responses/img00.json").read_text())["visionkit"]
    online = json.loads((tmp_path / "o/responses/img00.json").read_text())["visionkit"]
    assert batch["batch"] == "batches/fakebatch-0001"
    for field in ("maskFormat", "maskOrder", "usage", "requests"):
        assert batch[field] == online[field], field
    assert json.loads((tmp_path / "b/annotations.json").read_text())["annotations"] == \
        json.loads((tmp_path / "o/annotations.json").read_text())["annotations"]


def test_rerun_while_running_waits_for_the_same_job(server, tmp_path):
    make_images(tmp_path / "imgs", 3)
    server.batch.script(slow_timeline(pending=1, running=1000))
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait")
    assert code == 0 and "batches/fakebatch-0001" in stdout
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait")
    assert code == 0 and len(server.batch.creates) == 1
    server.batch.set_state("batches/fakebatch-0001", "SUCCEEDED")
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0 and "3/3 images labelled" in stdout and len(server.batch.creates) == 1


def test_kill_9_mid_wait_then_rerun_creates_no_second_job(server, tmp_path):
    make_images(tmp_path / "imgs", 4)
    server.batch.script(slow_timeline(pending=2, running=100000))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "visionkit", "label", str(tmp_path / "imgs"), "--out", str(out), "--task",
           "detect", "--batch", "--base-url", server.base_url, "--poll-interval", "0.02"]
    env = dict(os.environ, GEMINI_API_KEY=KEY, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(server.batch.calls("batch_get")) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch run never polled"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(server.batch.creates) == 1
    record = json.loads((out / "batch" / "jobs.json").read_text())
    assert [j["step"] for j in record["jobs"]] == ["submitted"]
    server.batch.set_state("batches/fakebatch-0001", "SUCCEEDED")
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(server.batch.creates) == 1  # resumed, not created again
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 4


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.status(503)])
def test_create_lost_in_flight_is_looked_up_not_repeated(server, tmp_path, fault):
    make_images(tmp_path / "imgs", 3)
    server.batch.push_create_faults(fault)
    code, _, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 2 and "may have created it" in stderr
    record = json.loads((tmp_path / "o/batch/jobs.json").read_text())
    assert [j["step"] for j in record["jobs"]] == ["creating"]
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0, stderr
    assert len(server.batch.jobs) == 1  # one paid job, whatever happened to the first answer
    assert len(server.batch.creates) == (1 if fault.kind == "reset" else 2)
    assert server.batch.calls("batch_list")  # the lost job was looked up by name first
    assert "3/3 images labelled" in stdout


@pytest.mark.parametrize("limit, sizes", [("--batch-max-requests=3", [3, 3, 1]),
                                          ("--batch-max-requests=7", [7]),
                                          ("--batch-max-requests=1", [1] * 7)])
def test_sharding_by_request_count(server, tmp_path, limit, sizes):
    make_images(tmp_path / "imgs", 7)
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", limit)
    assert code == 0 and "7/7 images labelled" in stdout
    keys = created_keys(server)
    assert [len(k) for k in keys] == sizes
    assert sorted(k for ks in keys for k in ks) == [f"img{i:02d}" for i in range(7)]
    assert f"batch: {len(sizes)} job(s)" in stdout


def test_sharding_by_bytes_and_file_upload_with_cleanup(server, tmp_path):
    make_images(tmp_path / "imgs", 5)
    with GeminiClient(base_url=server.base_url, upload_poll_interval=0) as client:
        line = len(json.dumps({"key": "img00", "request": batch_steps.request_body(
            client, tmp_path / "imgs/img00.png", "detect", None, None)})) + 1
        limit = int(line * 2.5)  # two or three lines per job
        st = batching.submit([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect",
                             max_file_bytes=limit, max_inline_bytes=0)
        assert all(j.mode == "file" and j.bytes <= limit for j in st.jobs) and len(st.jobs) in (2, 3)
        assert sum(j.requests for j in st.jobs) == 5
        inputs = {j.input_file for j in st.jobs}
        assert len(server.batch.calls("upload")) == len(st.jobs)
        left = [p.name for p in (tmp_path / "o/batch").glob("*.jsonl") if not p.name.endswith(".keys.jsonl")]
        assert not left  # request files are deleted once their job exists
        st = batching.poll(tmp_path / "o", client=client, poll_interval=0)
        summary = batching.collect([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect")
    assert summary.succeeded == 5 and summary.failed == 0
    deleted = {r.path.removeprefix("/v1beta/") for r in server.batch.calls("file_delete")}
    results = {j.result_file for j in st.jobs}
    assert deleted == inputs | results and len(results) == len(st.jobs)
    assert not server._files  # nothing left to fill the project's file quota
    assert all(j.cleaned and not j.warnings for j in st.jobs)
    assert not any((tmp_path / "o/batch").glob("*.results.jsonl"))


def test_refused_result_delete_is_a_warning(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    server.batch.refuse_result_delete = True
    with GeminiClient(base_url=server.base_url, upload_poll_interval=0) as client:
        batching.submit([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect", max_inline_bytes=0)
        events = []
        st = batching.poll(tmp_path / "o", client=client, poll_interval=0, on_event=events.append)
    (job,) = st.jobs
    assert job.step == "collected" and not job.cleaned
    assert any("could not delete files/" in w and "expires 48 hours" in w for w in job.warnings)
    assert any(e.startswith("warning:") for e in events)


@pytest.mark.parametrize("end, words", [
    ("EXPIRED", "more than 48 hours"), ("FAILED", "FAILED: Batch job failed"),
    ("CANCELLED", "was CANCELLED")])
def test_ended_job_fails_its_images_then_a_rerun_resubmits_them(server, tmp_path, end, words):
    make_images(tmp_path / "imgs", 3)
    server.batch.script(("PENDING", end))
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 1 and "0/3 images labelled" in stdout
    assert words in stderr and "unanswered again" in stderr
    fails = failures(tmp_path / "o")
    assert sorted(fails) == ["img00", "img01", "img02"]
    assert all(f["error"] == "BatchLineError" and words in f["reason"] for f in fails.values())
    assert not server.generate_requests  # never asked online instead
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0 and "3/3 images labelled" in stdout
    assert [sorted(k) for k in created_keys(server)] == [["img00", "img01", "img02"]] * 2


def test_per_line_errors_land_in_failures_and_only_they_are_resubmitted(server, tmp_path):
    make_images(tmp_path / "imgs", 4)
    server.batch.line_error = lambda key, req: ({"code": 1, "message": "The operation was cancelled."}
                                                if key in ("img01", "img03") else None)
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 1 and "2/4 images labelled" in stdout
    fails = failures(tmp_path / "o")
    assert sorted(fails) == ["img01", "img03"]
    assert fails["img01"]["reason"] == "the batch line failed (code 1): The operation was cancelled."
    assert fails["img01"]["stage"] == "answer" and fails["img01"]["error"] == "BatchLineError"
    assert not (tmp_path / "o/responses/img01.json").exists()
    server.batch.line_error = None
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0 and "4/4 images labelled" in stdout
    assert [sorted(k) for k in created_keys(server)] == [["img00", "img01", "img02", "img03"],
                                                          ["img01", "img03"]]


def test_blocked_line_is_a_failure_and_not_saved(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    server.responder = lambda r: Fault.blocked("SAFETY") if r.image_wh == (72, 48) else "[]"
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 1
    fails = failures(tmp_path / "o")
    assert list(fails) == ["img01"] and "BlockedError" in fails["img01"]["reason"]
    assert not (tmp_path / "o/responses/img01.json").exists()
    assert (tmp_path / "o/responses/img00.json").exists()


def test_mixed_run_reuses_online_answers(server, tmp_path):
    paths = make_images(tmp_path / "imgs", 5)
    code, _, _ = run("label", paths[0], paths[3], "--out", tmp_path / "o", "--task", "detect",
                     "--base-url", server.base_url)
    assert code == 0 and len(server.generate_requests) == 2
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0 and "5/5 images labelled" in stdout
    assert [sorted(k) for k in created_keys(server)] == [["img01", "img02", "img04"]]
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 0 and len(server.batch.creates) == 1  # everything answered: no new job


def test_changed_settings_while_a_job_runs_get_their_own_job(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    server.batch.script(slow_timeline(pending=1, running=100000))
    assert label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait")[0] == 0
    assert label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait")[0] == 0
    assert len(server.batch.creates) == 1  # the same request: waits for the same job
    server.batch.script(("PENDING", "SUCCEEDED"))
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--classes", "cat")
    assert code == 0 and "2/2 images labelled" in stdout, stderr  # without waiting for the other job
    assert len(server.batch.creates) == 2  # other classes are another request
    assert server.batch.job("batches/fakebatch-0001").state == "RUNNING"
    server.batch.set_state("batches/fakebatch-0001", "SUCCEEDED")  # the old job ends after the new one
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--classes", "cat")
    assert code == 0 and "2/2 images labelled" in stdout, stderr
    assert "superseded" in stderr
    record = json.loads((tmp_path / "o/responses/.request/img00.json").read_text())
    assert record["request"]["classes"] == ["cat"]  # the newer paid answer was not overwritten


def test_changed_settings_ask_again(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    assert label_batch(server, tmp_path / "imgs", tmp_path / "o")[0] == 0
    code, _, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--classes", "cat")
    assert code == 0 and [len(k) for k in created_keys(server)] == [2, 2]


@pytest.mark.parametrize("style", ["BATCH", "JOB"])
def test_both_state_namings(server, tmp_path, style):
    make_images(tmp_path / "imgs", 2)
    server.batch.state_style = style
    server.batch.script(("PENDING", "RUNNING", "SUCCEEDED"), ("PENDING", "EXPIRED"))
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "a", "--batch-max-requests=1")
    assert code == 1 and "1/2 images labelled" in stdout
    record = json.loads((tmp_path / "a/batch/jobs.json").read_text())["jobs"]
    assert [(j["state"], j["step"]) for j in record] == [("SUCCEEDED", "collected"), ("EXPIRED", "ended")]


def test_key_never_lands_in_a_file_or_a_log(server, tmp_path):
    make_images(tmp_path / "imgs", 3)
    server.batch.script(("PENDING", "SUCCEEDED"), ("PENDING", "EXPIRED"))
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o", "-v",
                                       "--batch-max-requests=2")
    code2, stdout2, stderr2 = run("batch", "status", tmp_path / "o", "-v")
    for text in (stdout, stderr, stdout2, stderr2):
        assert KEY not in text
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert any(p.name == "jobs.json" for p in files) and any(p.name == "run.json" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    for request in server.requests:
        assert KEY not in request.path and request.headers.get("x-goog-api-key") == KEY
        assert KEY not in json.dumps(request.json or {})


def test_no_wait_status_collect_and_cancel(server, tmp_path):
    make_images(tmp_path / "imgs", 4)
    server.batch.script(slow_timeline(pending=1, running=10000), slow_timeline(pending=1, running=10000))
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait",
                                  "--batch-max-requests=2")
    assert code == 0 and "fakebatch-0001" in stdout and "fakebatch-0002" in stdout
    assert not (tmp_path / "o/annotations.json").exists()
    code, stdout, _ = run("batch", "status", tmp_path / "o")
    assert code == 0 and stdout.count("submitted\tPENDING") + stdout.count("submitted\tRUNNING") == 2
    assert "2 unfinished" in stdout
    server.batch.set_state("batches/fakebatch-0001", "SUCCEEDED")
    code, stdout, _ = run("batch", "cancel", tmp_path / "o")
    assert code == 0 and "cancel requested for 2 job(s)" in stdout  # the record has not seen the success
    assert server.batch.job("batches/fakebatch-0002").state == "CANCELLED"
    assert server.batch.job("batches/fakebatch-0001").state == "SUCCEEDED"  # too late to cancel
    code, stdout, stderr = run("batch", "collect", tmp_path / "o")
    assert code == 1 and "2/4 images labelled" in stdout, stderr
    assert sorted(failures(tmp_path / "o")) == ["img02", "img03"]
    assert len(server.batch.creates) == 2  # collect submits nothing
    assert "CANCELLED" in failures(tmp_path / "o")["img02"]["reason"]


def test_batch_commands_on_a_folder_without_a_run(tmp_path):
    code, _, stderr = run("batch", "status", tmp_path)
    assert code == 2 and "holds no batch run" in stderr


def test_replay_and_batch_exclude_each_other(server, tmp_path):
    make_images(tmp_path / "imgs", 1)
    code, _, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--replay", tmp_path)
    assert code == 2 and "exclude each other" in stderr and not server.requests


def test_quota_full_holds_a_job_until_another_finishes(server, tmp_path):
    make_images(tmp_path / "imgs", 4)
    server.batch.push_create_faults(None, Fault.status(429))  # the first job fits, the second does not
    with GeminiClient(base_url=server.base_url, retry=RetryPolicy(max_attempts=1)) as client:
        events: list[str] = []
        st = batching.submit([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect",
                             max_requests=2, on_event=events.append)
        assert [j.step for j in st.jobs] == ["submitted", "built"]
        assert any("quota is full" in e for e in events)
        st = batching.poll(tmp_path / "o", client=client, poll_interval=0, on_event=events.append)
    assert st.done and [j.step for j in st.jobs] == ["collected", "collected"]
    assert len(server.batch.jobs) == 2 and len(server.batch.creates) == 3


def test_record_that_cannot_be_read_is_never_replaced(tmp_path):
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "jobs.json").write_text("{not json")
    with pytest.raises(Exception) as info:
        JobBook(tmp_path)
    assert "names paid jobs" in str(info.value)
    assert (tmp_path / "batch" / "jobs.json").read_text() == "{not json"


@pytest.mark.parametrize("job_id, ok", [
    ("visionkit-1a2b3c4d-1", True),
    ("../../victim", False),
    ("/tmp/victim", False),
    ("sub/x", False),
    ("", False),
    (7, False),
    ("a" * 129, False),
])
def test_a_hand_edited_job_id_never_names_a_file_outside_the_batch_folder(tmp_path, job_id, ok):
    from visionkit.errors import InputError

    (tmp_path / "batch").mkdir()
    record = {"version": 1, "run_id": "1a2b3c4d", "counter": 1,
              "jobs": [{"id": job_id, "step": "built", "request": {}, "model": "m"}]}
    (tmp_path / "batch" / "jobs.json").write_text(json.dumps(record))
    if ok:
        assert JobBook(tmp_path).jobs[0].id == job_id
        return
    with pytest.raises(InputError, match=r"jobs\[0\]\.id: .* is not a job id"):
        JobBook(tmp_path)


def test_a_second_run_cannot_create_jobs_while_one_waits_but_status_and_cancel_work(server, tmp_path):
    import threading

    make_images(tmp_path / "imgs", 3)
    server.batch.script(slow_timeline(pending=1, running=100000))
    result = {}
    waiting = threading.Thread(target=lambda: result.update(
        first=label_batch(server, tmp_path / "imgs", tmp_path / "o", "--poll-interval", "0.01")))
    waiting.start()
    try:
        deadline = time.monotonic() + 30
        while len(server.batch.calls("batch_get")) < 2:
            assert time.monotonic() < deadline and waiting.is_alive()
            time.sleep(0.01)
        code, _, stderr = label_batch(server, tmp_path / "imgs", tmp_path / "o")
        assert code == 2 and "another visionkit run" in stderr
        code, stdout, _ = run("batch", "status", tmp_path / "o")
        assert code == 0 and "RUNNING" in stdout
        code, stdout, _ = run("batch", "cancel", tmp_path / "o")
        assert code == 0 and "cancel requested for 1 job(s)" in stdout
    finally:
        server.batch.set_state("batches/fakebatch-0001", "CANCELLED")
        waiting.join(timeout=30)
    code, stdout, _ = result["first"]
    assert code == 1 and "0/3 images labelled" in stdout
    assert len(server.batch.creates) == 1


def test_a_job_cut_off_while_its_lines_are_written_is_dropped_and_rebuilt(server, tmp_path, monkeypatch):
    make_images(tmp_path / "imgs", 3)
    real = batch_steps.request_body
    calls = []

    def interrupted(client, path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(client, path, *args)

    monkeypatch.setattr(batch_steps, "request_body", interrupted)
    with GeminiClient(base_url=server.base_url) as client:
        with pytest.raises(KeyboardInterrupt):
            batching.submit([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect",
                            concurrency=1)
        assert [j.step for j in JobBook(tmp_path / "o").jobs] == ["building"]
        assert not list((tmp_path / "o/batch").glob("*.part"))  # no half file left behind
        assert not server.batch.creates
        monkeypatch.setattr(batch_steps, "request_body", real)
        st = batching.submit([tmp_path / "imgs"], tmp_path / "o", client=client, task="detect")
    assert [(j.step, j.requests) for j in st.jobs] == [("submitted", 3)]
    assert len(server.batch.creates) == 1


@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_batch_with_an_interactive_tier_is_a_usage_error_before_anything_is_sent(server, tmp_path, tier):
    images = make_images(tmp_path / "in", 2)[0].parent
    code, out, err = label_batch(server, images, tmp_path / "out", "--tier", tier)
    assert code == 2 and f"--tier {tier} applies to interactive requests" in err
    assert server.requests == [] and not (tmp_path / "out").exists()


def test_an_unreadable_saved_answer_is_skipped_not_fatal_and_not_resubmitted(server, tmp_path):
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "o"
    (out / "responses").mkdir(parents=True)
    (out / "responses" / "img01.json").write_text("{not json")  # on disk: paid for, never asked again
    code, stdout, stderr = label_batch(server, tmp_path / "imgs", out)
    assert code == 1, stderr
    assert created_keys(server) == [["img00", "img02"]]
    assert (out / "responses" / "img01.json").read_text() == "{not json"
    failed = failures(out)
    assert list(failed) == ["img01"] and "not valid JSON" in failed["img01"]["reason"]
    assert "img01" in stderr and "not submitted" in stderr
    assert server.generate_requests == []


def test_collect_uses_the_model_the_run_resolved_not_todays_environment(server, tmp_path, monkeypatch):
    make_images(tmp_path / "imgs", 2)
    server.batch.script(slow_timeline(pending=1, running=1000))
    monkeypatch.setenv("VISIONKIT_MODEL", "gemini-3.7-flash")
    assert label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait")[0] == 0
    saved = json.loads((tmp_path / "o/batch/run.json").read_text())
    assert saved["model"] == "gemini-3.7-flash" and saved["max_side"] == 1024
    monkeypatch.delenv("VISIONKIT_MODEL")  # a new shell (or an upgrade that changes the default model)
    server.batch.set_state("batches/fakebatch-0001", "SUCCEEDED")
    code, stdout, stderr = run("batch", "collect", tmp_path / "o")
    assert code == 0 and "2/2 images labelled" in stdout, (stdout, stderr)
    assert server.generate_requests == [] and len(server.batch.creates) == 1


def test_a_saved_batch_answer_for_other_settings_says_so(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "o"
    with GeminiClient(base_url=server.base_url, model="gemini-3.7-flash") as asked, \
            GeminiClient(base_url=server.base_url, model="gemini-2.5-flash") as other:
        batching.submit([tmp_path / "imgs"], out, client=asked, task="detect")
        batching.poll(out, client=asked, poll_interval=0)
        summary = batching.collect([tmp_path / "imgs"], out, client=other, task="detect", overlays=False)
    assert summary.failed == 2 and summary.requested == 0
    reason = failures(out)["img00"]["reason"]
    assert "saved" in reason and "other settings" in reason and "gemini-3.7-flash" in reason, reason
    assert "in no batch job" not in reason
    assert server.generate_requests == []


def test_a_batch_run_summary_counts_no_online_requests(server, tmp_path):
    make_images(tmp_path / "imgs", 3)
    server.batch.line_error = lambda key, req: {"code": 13, "message": "gone"} if key == "img01" else None
    code, stdout, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o")
    assert code == 1 and "2/3 images labelled" in stdout
    assert "(0 requested" in stdout, stdout


@pytest.mark.parametrize("inline_bytes", [0, batching.MAX_INLINE_BYTES], ids=["file", "inline"])
def test_a_key_echoed_inside_a_result_line_never_reaches_a_file(server, tmp_path, inline_bytes, caplog):
    import logging

    make_images(tmp_path / "imgs", 2)
    server.responder = lambda r: json.dumps([{"box_2d": [100, 100, 500, 500], "label": f"cup {KEY}"}])
    server.batch.script(("SUCCEEDED",))
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING, logger="visionkit"), \
            GeminiClient(base_url=server.base_url, upload_poll_interval=0) as client:
        batching.submit([tmp_path / "imgs"], out, client=client, task="detect", max_inline_bytes=inline_bytes)
        batching.poll(out, client=client, poll_interval=0)
        summary = batching.collect([tmp_path / "imgs"], out, client=client, task="detect", overlays=False)
    assert summary.succeeded == 2
    assert bool(server.batch.calls("file_download")) == (inline_bytes == 0)
    for path in [p for p in out.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert [KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8].encode() in data] == [], path
    assert "[redacted]" in (out / "responses" / "img00.json").read_text()
    assert any("echoed (part of) the API key" in r.getMessage() for r in caplog.records)


def test_inline_or_file_is_decided_on_the_bytes_actually_sent(server, tmp_path):
    """Non-ASCII classes: the inline create body must fit the limit the choice was made against."""
    make_images(tmp_path / "imgs", 3)
    classes = ["café crème", "猫", "чашка", "☕ cup"]

    def submit(out, limit):
        with GeminiClient(base_url=server.base_url, upload_poll_interval=0) as client:
            before = len(server.batch.creates)
            batching.submit([tmp_path / "imgs"], out, client=client, task="detect", classes=classes,
                            max_inline_bytes=limit)
        create = server.batch.creates[before]
        inline = "requests" in create.json["batch"]["inputConfig"]
        return inline, create.body_size

    inline, size = submit(tmp_path / "big", batching.MAX_INLINE_BYTES)
    assert inline
    assert submit(tmp_path / "exact", size)[0]  # exactly at the limit: inline
    inline, _ = submit(tmp_path / "under", size - 1)  # one byte over: uploaded as a file instead
    assert not inline and server.batch.calls("batch_create")
    for limit in (size - 200, size - 40, size + 3):
        inline, sent = submit(tmp_path / f"l{limit}", limit)
        assert not inline or sent <= limit, (limit, sent)


def test_a_cancel_that_fails_for_one_job_still_cancels_the_others(server, tmp_path):
    make_images(tmp_path / "imgs", 2)
    server.batch.script(slow_timeline(pending=1, running=10000), slow_timeline(pending=1, running=10000))
    code, _, _ = label_batch(server, tmp_path / "imgs", tmp_path / "o", "--no-wait", "--batch-max-requests=1")
    assert code == 0
    from visionkit.gemini import batch as wire

    with GeminiClient(base_url=server.base_url) as client:
        wire.delete_job(client, "batches/fakebatch-0001")  # its cancel now answers 404
    code, stdout, stderr = run("batch", "cancel", tmp_path / "o")
    assert server.batch.job("batches/fakebatch-0002").state == "CANCELLED"
    assert "cancel requested for 1 job(s)" in stdout
    assert "fakebatch-0001" in stderr and "could not cancel" in stderr
    assert code == 1


@pytest.mark.parametrize("media_resolution", [None, "low"])
def test_the_batch_fingerprint_is_what_online_mode_records(server, media_resolution):
    from visionkit.run.answer_source import AnswerSource, RateLimiter, ResponseStore

    with GeminiClient(base_url=server.base_url, model="gemini-3.7-flash", max_side=640,
                      media_resolution=media_resolution) as client:
        online = AnswerSource(None, ResponseStore(Path("unused")), client, RateLimiter(None), "detect",
                              "find cups", ["cup", "猫"]).request
        assert batching.fingerprint(client, "detect", "find cups", ["cup", "猫"]) == online
    assert online["model"] == "gemini-3.7-flash" and online["max_side"] == 640
