"""Issue 11 #3, #13-#15: a whole-request deadline, a cap on the decoded body, key echoes redacted, and
absurdly nested bodies as typed errors. Each against a FakeGemini fault over real HTTP."""

from __future__ import annotations

import json
import logging
import random
import time

import numpy as np
import pytest

from visionkit.answers.parse import parse_response
from visionkit.errors import BadRequestError, ResponseError, TransportError
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.gemini.transport import redact_key
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.Ab8RN6Lq-echo-SECRET-zz91XyK3m0PqW7vT2"


def rgb() -> np.ndarray:
    return np.zeros((64, 96, 3), np.uint8)


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


def client(fake, **kw) -> GeminiClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=1, sleep=lambda s: None, rng=random.Random(0)))
    return GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-3.8-flash", **kw)


def test_a_dripping_server_is_cut_at_the_deadline(fake):
    fake.push_faults(Fault.drip(0.05))  # ~100 bytes at 20 bytes/s: 5 s without a deadline
    started = time.monotonic()
    with client(fake, timeout=1.0) as c, pytest.raises(TransportError, match="deadline") as info:
        c.annotate(rgb(), "detect")
    took = time.monotonic() - started
    assert took < 3.0, took  # the per-read timeout (1 s) alone would never fire
    assert info.value.attempts == 1


def test_the_deadline_can_be_set_apart_from_the_read_timeout(fake):
    fake.push_faults(Fault.drip(0.01))
    with client(fake, timeout=30, deadline=0.3) as c, pytest.raises(TransportError, match="0.3s deadline"):
        c.annotate(rgb(), "detect")


def test_a_normal_slow_answer_within_the_deadline_is_fine(fake):
    fake.push_faults(Fault.drip(0.001, text=json.dumps({"candidates": [{"content": {"parts": [
        {"text": '[{"box_2d": [1, 2, 300, 400], "label": "a"}]'}]}, "finishReason": "STOP"}]})))
    with client(fake, timeout=10) as c:
        assert c.detect(rgb()).labels.tolist() == ["a"]


def test_a_gzip_bomb_fails_the_image_and_is_never_saved(fake, tmp_path):
    fake.push_faults(Fault.gzip_bomb(1 << 30))  # 1 MB on the wire, 1 GiB inflated
    with client(fake, max_response_bytes=32 << 20) as c, \
            pytest.raises(ResponseError, match="over 32 MiB once decoded") as info:
        c.annotate(rgb(), "detect")
    assert "not saved" in str(info.value) and info.value.attempts == 1


def test_the_default_cap_is_documented_and_large():
    from visionkit.gemini import MAX_RESPONSE_BYTES

    assert MAX_RESPONSE_BYTES == 64 * 1024 * 1024


def test_gzip_answers_within_the_cap_decode(fake):
    fake.push_faults(Fault.gzip_bomb(1000))  # 1000 zero bytes: inflates fine, but is no JSON
    with client(fake) as c, pytest.raises(ResponseError, match="not JSON"):
        c.annotate(rgb(), "detect")


def test_an_oversized_plain_body_is_refused(fake):
    fake.push_faults(Fault.oversize(3 << 20))
    with client(fake, max_response_bytes=2 << 20) as c, pytest.raises(ResponseError, match="over 2 MiB"):
        c.annotate(rgb(), "detect")
    fake.push_faults(Fault.oversize(1 << 20))
    with client(fake, max_response_bytes=2 << 20) as c:
        assert len(c.detect(rgb()).labels[0]) > 1_000_000  # under the cap: parsed


def test_deeply_nested_body_is_a_response_error(fake):
    fake.push_faults(Fault.raw(200, "[" * 200_000, "application/json"))
    with client(fake) as c, pytest.raises(ResponseError, match="nested too deeply"):
        c.annotate(rgb(), "detect")
    fake.push_faults(Fault.raw(400, "[" * 200_000, "application/json"))
    with client(fake) as c, pytest.raises(BadRequestError):
        c.annotate(rgb(), "detect")


def _fragments(key: str) -> list[str]:
    return [key[i:i + 8] for i in range(len(key) - 7)]


def _leaks(text: str) -> list[str]:
    return [f for f in _fragments(KEY) if f in text]


@pytest.mark.parametrize("where", ["status", "message", "html", "label"])
def test_key_echoes_are_redacted_everywhere(fake, where, caplog):
    fake.push_faults(Fault.echo_key(where))
    with caplog.at_level(logging.DEBUG, logger="visionkit"), client(fake) as c:
        try:
            result = c.annotate(rgb(), "detect")
        except Exception as exc:  # the error path: every field the server gave
            texts = [str(exc), repr(exc), str(getattr(exc, "api_status", "")),
                     str(getattr(exc, "api_message", "")), str(exc.__cause__ or "")]
        else:
            dets = parse_response(result.response, result.original_wh)
            texts = [json.dumps(result.response), " ".join(dets.labels.tolist())]
    texts += [r.getMessage() for r in caplog.records]
    leaks = [leak for t in texts for leak in _leaks(t)]
    assert leaks == []
    assert any("[redacted]" in t for t in texts)
    assert any("echoed (part of) the API key" in r.getMessage() for r in caplog.records)


def test_a_key_fragment_at_offset_70_of_an_html_page(fake):
    fake.push_faults(Fault.echo_key("html"))
    with client(fake) as c, pytest.raises(ResponseError) as info:
        c.annotate(rgb(), "detect")
    assert _leaks(str(info.value)) == [] and "[redacted]" in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("nothing secret here", "nothing secret here"),
    (f"a {KEY} b", "a [redacted] b"),
    (f"x{KEY[3:11]}y", "x[redacted]y"),           # exactly 8 characters of the key
    (f"x{KEY[3:10]}y", f"x{KEY[3:10]}y"),         # 7 are not redacted
    (f"{KEY[:12]} and {KEY[-9:]}", "[redacted] and [redacted]"),
    (f"{KEY[:20]}{KEY[25:]}", "[redacted]"),      # two runs touching: one redaction
])
def test_redact_key_table(text, expected):
    assert redact_key(text, KEY) == expected
    assert redact_key(text.encode(), KEY) == expected.encode()


def test_a_bomb_fails_one_image_in_a_run_and_nothing_is_saved(tmp_path):
    from PIL import Image

    from visionkit.run.pipeline import label

    for i in range(3):
        Image.new("RGB", (80 + i, 60), (40 * i, 90, 150)).save(tmp_path / f"im{i}.png")
    def bomb(request):
        return Fault.gzip_bomb(256 << 20) if request.image_wh == (81, 60) else None

    with FakeGemini(fault_for=bomb) as fake, client(fake, max_response_bytes=8 << 20) as c:
        summary = label([tmp_path], tmp_path / "out", task="detect", client=c, overlays=False)
    assert summary.succeeded == 2 and summary.failed == 1
    failure = summary.failures[0]
    assert failure["file"] == "im1.png" and failure["error"] == "ResponseError"
    assert "over 8 MiB once decoded" in failure["reason"]
    assert sorted(p.name for p in (tmp_path / "out" / "responses").glob("*.json")) == ["im0.json", "im2.json"]


def test_a_slow_upload_does_not_count_against_the_answer_deadline(fake, tmp_path):
    """The deadline bounds the answer, not the time the body takes to go up (a big batch JSONL)."""
    import io

    from visionkit.gemini import files_api

    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * (8192 * 12))

    class SlowFile(io.FileIO):
        def read(self, n=-1):
            time.sleep(0.05)  # each read is quick; the whole upload (~0.6 s) outlasts the deadline
            return super().read(n)

    with client(fake, timeout=5.0, deadline=0.3) as c, SlowFile(path, "rb") as fh:
        def request(method, url, **kw):
            return c._request(method, url, what="upload", **kw)[0]

        uploaded = files_api.upload_bytes(request, c.base_url, fh, "application/jsonl", poll_interval=0)
    assert fake.file_data(uploaded.name) == path.read_bytes()
    assert len([r for r in fake.requests if r.kind == "upload"]) == 1  # sent once, not re-sent
