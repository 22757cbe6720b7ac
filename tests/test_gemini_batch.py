"""Batch API wire operations (visionkit.gemini.batch) against FakeGemini's batch endpoints."""

from __future__ import annotations

import json

import pytest

from visionkit.errors import (
    BadRequestError,
    BatchError,
    ExportError,
    NotFoundError,
    ResponseError,
    TransportError,
)
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.gemini import batch as wire
from visionkit.testing import FakeGemini, Fault

KEY = "batch-test-key-0123"


def _request(text: str = "find the cup") -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def _jsonl(tmp_path, keys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"key": k, "request": _request(k)}) + "\n" for k in keys))
    return path


@pytest.fixture
def server():
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def client(server):
    policy = RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)
    with GeminiClient(api_key=KEY, base_url=server.base_url, retry=policy, upload_poll_interval=0) as c:
        yield c


@pytest.mark.parametrize("raw, state", [
    ("BATCH_STATE_RUNNING", "RUNNING"), ("JOB_STATE_RUNNING", "RUNNING"),
    ("JOB_STATE_SUCCEEDED", "SUCCEEDED"),
    ("BATCH_STATE_EXPIRED", "EXPIRED"), ("batch_state_failed", "FAILED"), ("", "UNSPECIFIED"),
    (None, "UNSPECIFIED"), ("CANCELLED", "CANCELLED"),
])
def test_job_state_accepts_both_namings(raw, state):
    assert wire.job_state(raw) == state


@pytest.mark.parametrize("style", ["BATCH", "JOB"])
def test_file_job_runs_through_its_timeline_and_results_download(server, client, tmp_path, style):
    server.batch.state_style = style
    server.batch.script(("PENDING", "RUNNING", "SUCCEEDED"))
    uploaded = wire.upload_jsonl(client, _jsonl(tmp_path, ["a", "b", "c"]), "vk-test")
    job = wire.create_job(client, "vk-test-1", file_name=uploaded.name)
    assert job.state == "PENDING" and job.display_name == "vk-test-1" and not job.terminal
    assert job.raw_state == f"{style}_STATE_PENDING"
    assert wire.get_job(client, job.name).state == "RUNNING"
    done = wire.get_job(client, job.name)
    assert done.state == "SUCCEEDED" and done.terminal and done.succeeded and done.done
    assert (done.request_count, done.succeeded_count, done.pending_count) == (3, 3, 0)
    size = wire.download_file(client, done.responses_file, tmp_path / "out.jsonl")
    assert size == (tmp_path / "out.jsonl").stat().st_size > 0
    lines = list(wire.iter_result_lines(tmp_path / "out.jsonl"))
    assert [k for k, _, _ in lines] == ["a", "b", "c"]
    assert all(r["candidates"] and e is None for _, r, e in lines)


def test_inline_job_and_per_line_errors(server, client, tmp_path):
    server.batch.script(("SUCCEEDED",))
    server.batch.line_error = lambda key, req: {"code": 1, "message": "cancelled"} if key == "b" else None
    lines = _jsonl(tmp_path, ["a", "b"]).read_bytes().splitlines()
    job = wire.create_job(client, "inline-1", inline=wire.inline_body("inline-1", lines))
    body = server.batch.creates[0].json["batch"]
    assert body["displayName"] == "inline-1"
    assert [r["metadata"]["key"] for r in body["inputConfig"]["requests"]["requests"]] == ["a", "b"]
    job = wire.get_job(client, job.name)
    assert job.responses_file is None and job.failed_count == 1
    got = {k: (r, e) for k, r, e in wire.iter_inlined(job)}
    assert got["a"][0]["candidates"] and got["a"][1] is None
    assert got["b"] == (None, {"code": 1, "message": "cancelled"})


def test_lines_without_keys_are_matched_by_position(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"candidates": []}) + "\n\n" + json.dumps({"error": {"code": 3}})
                    + "\nnot json\n")
    got = list(wire.iter_result_lines(path, keys=["x", "y", "z", "w"]))
    assert got[0] == ("x", {"candidates": []}, None)
    assert got[1] == ("z", None, {"code": 3})
    assert got[2][0] == "w" and "not JSON" in got[2][2]["message"]


def test_failed_expired_and_cancelled_jobs(server, client, tmp_path):
    server.batch.script(("PENDING", "FAILED"), ("EXPIRED",), ("PENDING", "RUNNING", "RUNNING"))
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    failed = wire.create_job(client, "f", file_name=up.name)
    failed = wire.get_job(client, failed.name)
    assert failed.state == "FAILED" and failed.error["code"] == 13 and failed.responses_file is None
    expired = wire.create_job(client, "e", file_name=up.name)
    assert expired.state == "EXPIRED" and expired.terminal and not expired.succeeded
    running = wire.create_job(client, "r", file_name=up.name)
    wire.cancel_job(client, running.name)
    assert wire.get_job(client, running.name).state == "CANCELLED"
    wire.delete_job(client, running.name)
    with pytest.raises(NotFoundError):
        wire.get_job(client, running.name)


def test_find_job_pages_through_the_list(server, client, tmp_path):
    server.batch.page_size = 2
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    names = [wire.create_job(client, f"vk-{i}", file_name=up.name).name for i in range(5)]
    assert wire.find_job(client, "vk-0").name == names[0]
    assert wire.find_job(client, "vk-missing") is None
    assert len(server.batch.calls("batch_list")) >= 3 + 3  # two full scans of three pages
    assert [j.display_name for j in wire.list_jobs(client)] == [f"vk-{i}" for i in range(4, -1, -1)]


def test_create_is_retried_on_429_only(server, client, tmp_path):
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    server.batch.push_create_faults(Fault.status(429, retry_delay=0))
    job = wire.create_job(client, "vk-1", file_name=up.name)
    assert len(server.batch.creates) == 2 and [j.name for j in server.batch.jobs] == [job.name]
    with pytest.raises(BadRequestError):
        wire.create_job(client, "bad", file_name="files/does-not-exist")
    assert len(server.batch.creates) == 3 and len(server.batch.jobs) == 1  # a 400 is not retried


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.status(503), Fault.status(500)])
def test_ambiguous_create_failure_is_not_retried(server, client, tmp_path, fault):
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    server.batch.push_create_faults(fault)
    with pytest.raises(BatchError) as info:
        wire.create_job(client, "vk-lost", file_name=up.name)
    assert info.value.job == "vk-lost" and "looked up by name" in str(info.value)
    assert len(server.batch.creates) == 1  # never sent twice
    found = wire.find_job(client, "vk-lost")
    assert (found is not None) == (fault.kind == "reset")  # a reset hid a job that exists


def test_create_timeout_is_ambiguous(server, tmp_path):
    policy = RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)
    with GeminiClient(api_key=KEY, base_url=server.base_url, retry=policy, timeout=0.3,
                      upload_poll_interval=0) as client:
        up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
        server.batch.push_create_faults(Fault.slow(2))
        with pytest.raises(BatchError):
            wire.create_job(client, "vk-slow", file_name=up.name)
    assert len(server.batch.creates) == 1 and len(server.batch.jobs) == 1


def test_file_delete_and_refused_result_delete(server, client, tmp_path):
    server.batch.script(("SUCCEEDED",))
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    job = wire.create_job(client, "d", file_name=up.name)
    wire.delete_file(client, up.name)
    with pytest.raises(NotFoundError):
        wire.delete_file(client, up.name)
    server.batch.refuse_result_delete = True
    with pytest.raises(Exception) as info:
        wire.delete_file(client, job.responses_file)
    assert getattr(info.value, "status", None) == 403


def test_download_refuses_uploaded_files_and_bad_names(server, client, tmp_path):
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    with pytest.raises(BadRequestError):
        wire.download_file(client, up.name, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    for bad in ("files/../../etc", "batches/x", "files/A?key=1"):
        with pytest.raises(ResponseError):
            wire.download_file(client, bad, tmp_path / "x")
    with pytest.raises(ResponseError):
        wire.get_job(client, "batches/../files/x")


def test_key_travels_only_in_the_header(server, client, tmp_path):
    server.batch.script(("PENDING", "SUCCEEDED"))
    up = wire.upload_jsonl(client, _jsonl(tmp_path, ["a"]), "x")
    job = wire.create_job(client, "k", file_name=up.name)
    job = wire.get_job(client, job.name)
    wire.download_file(client, job.responses_file, tmp_path / "r.jsonl")
    wire.delete_file(client, job.responses_file)
    wire.find_job(client, "k")
    for request in server.requests:
        assert request.headers.get("x-goog-api-key") == KEY
        assert KEY not in request.path and KEY not in json.dumps(request.query)
    assert KEY not in (tmp_path / "r.jsonl").read_text()


def test_jobs_answer_from_the_servers_responder(tmp_path):
    answers = {"a": "[]", "b": Fault.blocked("SAFETY")}

    def responder(request):
        return answers[request.text]

    with FakeGemini(responder) as server:
        server.batch.script(("SUCCEEDED",))
        with GeminiClient(api_key="k", base_url=server.base_url) as client:
            job = wire.create_job(client, "r", inline=wire.inline_body(
                "r", _jsonl(tmp_path, ["a", "b"]).read_bytes().splitlines()))
            got = {k: r for k, r, _ in wire.iter_inlined(job)}
    assert got["a"]["candidates"][0]["content"]["parts"][0]["text"] == "[]"
    assert got["b"]["promptFeedback"]["blockReason"] == "SAFETY"


def _finished_file_job(server, client, tmp_path, keys=("a", "b", "c")):
    server.batch.script(("SUCCEEDED",))
    up = wire.upload_jsonl(client, _jsonl(tmp_path, list(keys)), "x")
    return wire.create_job(client, "dl", file_name=up.name)


def test_a_download_cut_off_midway_is_started_again(server, client, tmp_path):
    job = _finished_file_job(server, client, tmp_path)
    whole = server.file_data(job.responses_file)
    server.batch.cut_downloads = 2
    size = wire.download_file(client, job.responses_file, tmp_path / "r.jsonl", attempts=3)
    assert (tmp_path / "r.jsonl").read_bytes() == whole and size == len(whole)
    assert len(server.batch.calls("file_download")) == 3


def test_a_download_cut_off_every_time_is_a_transport_error_not_a_disk_error(server, client, tmp_path):
    job = _finished_file_job(server, client, tmp_path)
    server.batch.cut_downloads = 5
    with pytest.raises(TransportError, match="cut off 3 times") as info:
        wire.download_file(client, job.responses_file, tmp_path / "r.jsonl", attempts=3)
    assert not isinstance(info.value, ExportError)
    assert not (tmp_path / "r.jsonl").exists() and list(tmp_path.glob(".r.jsonl.*")) == []
    assert len(server.batch.calls("file_download")) == 3
