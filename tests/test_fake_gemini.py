"""The FakeGemini server itself, driven with plain ``requests`` (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from visionkit.testing.fake_gemini import FakeGemini, Fault, answer_response, text_response

MODEL_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"


def jpeg_b64(w: int, h: int, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def body(text: str = "Detect things.", w: int = 64, h: int = 32, *, snake: bool = False) -> dict:
    image = ({"inline_data": {"mime_type": "image/jpeg", "data": jpeg_b64(w, h)}} if snake
             else {"inlineData": {"mimeType": "image/jpeg", "data": jpeg_b64(w, h)}})
    return {"contents": [{"role": "user", "parts": [image, {"text": text}]}]}


@pytest.fixture
def server():
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def post(http, server, payload, path=MODEL_PATH, **kw):
    return http.post(server.base_url + path, json=payload, headers={"x-goog-api-key": "k"}, timeout=5, **kw)


def answer_text(response: requests.Response) -> str:
    return response.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_default_answers_detection_and_segmentation(server, http):
    r = post(http, server, body("Detect the prominent objects."))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    items = json.loads(answer_text(r))
    assert items == [{"box_2d": [100, 150, 600, 700], "label": "object"}]
    items = json.loads(answer_text(post(http, server, body("Give the segmentation masks for cats."))))
    assert items[0]["mask"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("snake", [False, True])
def test_records_request_details(server, http, snake):
    post(http, server, body(w=80, h=48, snake=snake), params={"alt": "json"})
    (rec,) = server.requests
    assert (rec.kind, rec.method, rec.path, rec.model) == ("generate", "POST", MODEL_PATH, "gemini-2.5-flash")
    assert rec.query == {"alt": ["json"]}
    assert rec.headers["X-GOOG-API-KEY"] == rec.headers["x-goog-api-key"] == "k"
    assert "X-Goog-Api-Key" in rec.headers
    assert rec.image_wh == (80, 48) and rec.image_mime == "image/jpeg"
    assert rec.body_size == len(json.dumps(body(w=80, h=48, snake=snake)).encode())
    assert rec.text == "Detect things." and rec.fault is None


def test_faults_are_consumed_in_order(server, http):
    server.push_faults(Fault.status(503), Fault.status(429, retry_delay=2, retry_after=7),
                       Fault.blocked("PROHIBITED_CONTENT"), Fault.finish("MAX_TOKENS", "[{\"box"),
                       Fault.raw(502, "<html>bad gateway</html>"))
    assert server.pending_faults == 5
    got = [post(http, server, body()) for _ in range(6)]
    assert [r.status_code for r in got] == [503, 429, 200, 200, 502, 200]
    assert got[0].json()["error"]["status"] == "UNAVAILABLE"
    error = got[1].json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    types = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    assert types["RetryInfo"]["retryDelay"] == "2s"
    assert types["QuotaFailure"]["violations"][0]["quotaId"].startswith("GenerateRequestsPerMinute")
    assert got[1].headers["Retry-After"] == "7"
    assert got[2].json()["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert "candidates" not in got[2].json()
    assert got[3].json()["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert got[4].text == "<html>bad gateway</html>"
    assert server.pending_faults == 0
    assert [r.fault.kind if r.fault else None for r in server.requests] == [
        "status", "status", "blocked", "finish", "raw", None]


def test_status_fault_with_per_day_quota_and_duration_string(server, http):
    server.push_faults(Fault.status(429, retry_delay="30.5s",
                                    quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    details = post(http, server, body()).json()["error"]["details"]
    assert details[0]["violations"][0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert details[1] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30.5s"}


def test_fault_for_fails_chosen_requests_every_time(http):
    def fault_for(request):
        return Fault.status(400, message="bad image") if request.image_wh == (13, 13) else None

    with FakeGemini(fault_for=fault_for) as server:
        server.push_faults(Fault.status(503))
        codes = [post(http, server, body(w=w, h=w)).status_code for w in (13, 20, 13, 20)]
    assert codes == [400, 503, 400, 200]


@pytest.mark.parametrize("answer, status, check", [
    ("plain text answer", 200, lambda r: answer_text(r) == "plain text answer"),
    (answer_response([{"box_2d": [0, 0, 1, 1], "label": "x"}]), 200,
     lambda r: json.loads(answer_text(r))[0]["label"] == "x"),
    (Fault.status(404), 404, lambda r: r.json()["error"]["status"] == "NOT_FOUND"),
])
def test_responder_return_types(http, answer, status, check):
    with FakeGemini(lambda request: answer) as server:
        r = post(http, server, body())
    assert r.status_code == status and check(r)


def test_responder_error_becomes_500(http):
    def broken(request):
        raise RuntimeError("boom")

    with FakeGemini(broken) as server:
        r = post(http, server, body())
        assert r.status_code == 500 and "boom" in r.json()["error"]["message"]
        assert isinstance(server.errors[0], RuntimeError)


def test_reset_closes_without_answer(server, http):
    server.push_faults(Fault.reset())
    with pytest.raises(requests.ConnectionError):
        post(http, server, body())
    assert post(http, server, body()).status_code == 200  # the pool recovers


def test_slow_answers_after_the_client_timeout(server, http):
    server.push_faults(Fault.slow(2.0))
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        http.post(server.base_url + MODEL_PATH, json=body(), timeout=(1, 0.2))
    assert time.monotonic() - started < 1.0


def test_invalid_json_and_unknown_paths(server, http):
    r = http.post(server.base_url + MODEL_PATH, data=b"{not json",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = http.get(server.base_url + "/v1beta/tunedModels")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    assert server.requests[-1].kind == "unknown"


def test_api_key_checking(http):
    with FakeGemini(api_key="right") as server:
        url = server.base_url + MODEL_PATH
        assert http.post(url, json=body()).status_code == 403
        wrong = http.post(url, json=body(), headers={"x-goog-api-key": "wrong"})
        assert wrong.status_code == 400
        assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        assert http.post(url, json=body(), headers={"x-goog-api-key": "right"}).status_code == 200


def test_files_api_flow(server, http):
    data = base64.b64decode(jpeg_b64(30, 20))
    start = http.post(server.base_url + "/upload/v1beta/files", json={"file": {"display_name": "cat.jpg"}},
                      headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                               "X-Goog-Upload-Header-Content-Length": str(len(data)),
                               "X-Goog-Upload-Header-Content-Type": "image/jpeg"})
    assert start.status_code == 200
    upload_url = start.headers["x-goog-upload-url"]
    assert upload_url.startswith(server.base_url + "/upload/v1beta/files?upload_id=")
    done = http.post(upload_url, data=data, headers={"X-Goog-Upload-Command": "upload, finalize",
                                                     "X-Goog-Upload-Offset": "0"})
    assert done.headers["x-goog-upload-status"] == "final"
    meta = done.json()["file"]
    assert (meta["displayName"], meta["mimeType"], meta["state"]) == ("cat.jpg", "image/jpeg", "PROCESSING")
    assert meta["sizeBytes"] == str(len(data)) and server.file_data(meta["name"]) == data
    states = [http.get(f"{server.base_url}/v1beta/{meta['name']}").json()["state"] for _ in range(3)]
    assert states == ["PROCESSING", "ACTIVE", "ACTIVE"]
    r = post(http, server, {"contents": [{"parts": [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": meta["uri"]}}, {"text": "Detect."}]}]})
    assert r.status_code == 200
    rec = server.requests[-1]
    assert (rec.file_uri, rec.image_wh, rec.image_mime) == (meta["uri"], (30, 20), "image/jpeg")
    assert [r.kind for r in server.requests] == ["upload_start", "upload"] + ["file_get"] * 3 + ["generate"]


def test_files_api_rejects_bad_uploads(server, http):
    url = server.base_url + "/upload/v1beta/files"
    assert http.post(url, json={}, headers={"X-Goog-Upload-Command": "start"}).status_code == 400
    start = http.post(url, json={}, headers={"X-Goog-Upload-Protocol": "resumable",
                                             "X-Goog-Upload-Command": "start",
                                             "X-Goog-Upload-Header-Content-Length": "3",
                                             "X-Goog-Upload-Header-Content-Type": "image/png"})
    bad = http.post(start.headers["x-goog-upload-url"], data=b"abc",
                    headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"})
    assert bad.status_code == 400
    assert http.get(server.base_url + "/v1beta/files/nothere").status_code == 404


def test_failed_file_state(http):
    with FakeGemini(file_states=("PROCESSING", "FAILED")) as server:
        start = http.post(server.base_url + "/upload/v1beta/files", json={},
                          headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                                   "X-Goog-Upload-Header-Content-Length": "1",
                                   "X-Goog-Upload-Header-Content-Type": "image/png"})
        name = http.post(start.headers["x-goog-upload-url"], data=b"x",
                         headers={"X-Goog-Upload-Command": "upload, finalize",
                                  "X-Goog-Upload-Offset": "0"}).json()["file"]["name"]
        got = http.get(f"{server.base_url}/v1beta/{name}").json()
    assert got["state"] == "FAILED" and "error" in got


def test_keep_alive_reuses_one_connection(server, http):
    for _ in range(5):
        post(http, server, body())
    assert len({r.peer for r in server.requests}) == 1


def test_many_concurrent_connections_are_served_in_parallel():
    """16 requests with 300 ms latency each: parallel takes ~0.3 s, a serial server would take 4.8 s."""
    with FakeGemini(latency=0.3) as server, requests.Session() as http:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
        http.mount("http://", adapter)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: post(http, server, body()).status_code, range(16)))
        elapsed = time.monotonic() - started
    assert codes == [200] * 16
    assert elapsed < 1.5


def test_lifecycle(http):
    server = FakeGemini()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    assert server.start() is server  # idempotent
    post(http, server, body())  # leaves a kept-alive connection open
    started = time.monotonic()
    server.stop()
    server.stop()
    assert time.monotonic() - started < 2
    assert "stopped" in repr(server)
    server.clear()
    assert server.requests == []


def test_text_response_shape():
    resp = text_response("", "SAFETY")
    assert resp["candidates"][0]["finishReason"] == "SAFETY"
    assert resp["candidates"][0]["content"]["parts"] == []
