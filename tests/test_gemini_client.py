"""GeminiClient against FakeGemini over real HTTP on 127.0.0.1 (no mocks of ``requests``, no real API)."""

from __future__ import annotations

import base64
import io
import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import numpy as np
import pytest
import requests
from PIL import Image

from visionkit.errors import (
    APIError,
    AuthError,
    BadRequestError,
    BlockedError,
    ConfigError,
    HTTPStatusError,
    InputError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from visionkit.gemini import GeminiClient, RetryPolicy, build_generation_config, files_api, model_family
from visionkit.gemini.retry import Failed, parse_duration, parse_retry_after
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.fake-test-key-7f3a9c"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(fake, sleeps):
    """Build a client on the fake with recorded (instant) sleeps; keyword arguments pass through."""
    clients = []

    def build(max_attempts: int = 4, **kw) -> GeminiClient:
        kw.setdefault("retry", RetryPolicy(max_attempts=max_attempts, sleep=sleeps.append,
                                           rng=random.Random(0)))
        kw.setdefault("timeout", (2.0, 5.0))
        kw.setdefault("base_url", fake.base_url)
        kw.setdefault("api_key", KEY)
        kw.setdefault("model", "gemini-2.5-flash")  # these tests were written for its budget thinking
        client = GeminiClient(**kw)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def rgb(w: int = 400, h: int = 300) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (220, 30, 30)
    arr[:, w // 2:] = (30, 30, 220)
    return arr


def error_chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


# -- API key -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, gemini_env, google_env, expected", [
    ("from-arg", "from-gemini", "from-google", "from-arg"),
    (None, "from-gemini", "from-google", "from-gemini"),
    (None, None, "from-google", "from-google"),
    (None, "", "from-google", "from-google"),
    ("   ", "from-gemini", None, "from-gemini"),
    (None, "  from-gemini\n", None, "from-gemini"),
])
def test_key_precedence(fake, monkeypatch, arg, gemini_env, google_env, expected):
    for name, value in (("GEMINI_API_KEY", gemini_env), ("GOOGLE_API_KEY", google_env)):
        if value is not None:
            monkeypatch.setenv(name, value)
    with GeminiClient(api_key=arg, base_url=fake.base_url) as client:
        client.generate("hello")
    assert fake.requests[0].headers["x-goog-api-key"] == expected


@pytest.mark.parametrize("arg, gemini_env, google_env", [
    (None, None, None), ("", "", ""), ("  ", " \n", None),
])
def test_missing_key_is_config_error_before_any_request(fake, monkeypatch, arg, gemini_env, google_env):
    for name, value in (("GEMINI_API_KEY", gemini_env), ("GOOGLE_API_KEY", google_env)):
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY.*GOOGLE_API_KEY"):
        GeminiClient(api_key=arg, base_url=fake.base_url)
    assert fake.requests == []


def test_key_with_control_characters_is_refused_without_echo(fake):
    with pytest.raises(ConfigError) as info:
        GeminiClient(api_key="abc def-secret", base_url=fake.base_url)
    assert "secret" not in str(info.value)


def test_key_travels_only_in_the_header(make, fake, tmp_path):
    client = make()
    client.detect(rgb())
    client.annotate(rgb(), "segment")
    make(inline_limit_bytes=100, upload_poll_interval=0.0).annotate(rgb(), "detect")  # Files API too
    assert len(fake.requests) >= 7
    for rec in fake.requests:
        assert rec.headers["x-goog-api-key"] == KEY
        assert KEY not in rec.path and KEY not in json.dumps(rec.query)
        assert rec.json is None or KEY not in json.dumps(rec.json)
    assert "key" not in {k.lower() for k in fake.requests[0].query}
    assert KEY not in repr(client)
    assert repr(client) == f"GeminiClient(model='gemini-2.5-flash', base_url='{fake.base_url}')"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("fault", [
    Fault.status(400, message=f"API key not valid: {KEY}"),  # even an API that echoed the key is redacted
    Fault.status(401), Fault.status(403), Fault.status(404),
    Fault.status(429, quota_id=PER_DAY),
    Fault.status(503),
    Fault.reset(),
    Fault.raw(200, "<html>not json</html>"),
    Fault.raw(502, "<html>bad gateway</html>"),
    Fault.slow(2.0),
])
def test_key_absent_from_every_error(make, fake, fault):
    fake.push_faults(*[fault] * 2)
    client = make(max_attempts=2, timeout=(1.0, 0.2))
    with pytest.raises(APIError) as info:
        client.detect(rgb())
    for exc in error_chain(info.value):
        assert KEY not in str(exc) and KEY not in repr(exc)
        assert getattr(exc, "request", None) is None  # the prepared request (with headers) is dropped


def test_key_absent_from_transport_error_on_refused_connection(make, sleeps):
    with pytest.raises(TransportError, match="connection error") as info:
        make(max_attempts=2, base_url=closed_port_url()).generate("hi")
    assert len(sleeps) == 1
    for exc in error_chain(info.value):
        assert KEY not in str(exc) and KEY not in repr(exc)


# -- request shape -------------------------------------------------------------------------------------------

def test_detect_request_body(make, fake):
    make().annotate(rgb(), "detect", classes=["cat", "dog"])
    (rec,) = fake.requests
    assert rec.method == "POST" and rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.headers["Content-Type"] == "application/json"
    (content,) = rec.json["contents"]
    assert content["role"] == "user"
    inline = [p["inlineData"] for p in content["parts"] if "inlineData" in p]
    texts = [p["text"] for p in content["parts"] if "text" in p]
    assert len(inline) == 1 and len(texts) == 1 and len(content["parts"]) == 2
    assert inline[0]["mimeType"] == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(inline[0]["data"]))).size == (400, 300)
    assert '"box_2d"' in texts[0] and 'Only use these labels: "cat", "dog"' in texts[0]
    config = rec.generation_config
    assert config["responseMimeType"] == "application/json"
    assert config["thinkingConfig"] == {"thinkingBudget": 0} and config["temperature"] == 0.5
    schema = config["responseSchema"]
    assert schema["type"] == "ARRAY" and schema["items"]["type"] == "OBJECT"
    props = schema["items"]["properties"]
    assert props["label"] == {"type": "STRING", "enum": ["cat", "dog"]}
    assert props["box_2d"]["items"] == {"type": "INTEGER", "minimum": 0, "maximum": 1000}
    assert (props["box_2d"]["minItems"], props["box_2d"]["maxItems"]) == (4, 4)
    assert set(schema["items"]["required"]) == {"box_2d", "label"} and "mask" not in props


@pytest.mark.parametrize("model, thinking, temperature, path_model", [
    ("gemini-2.5-flash", {"thinkingBudget": 0}, 0.5, "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite", {"thinkingBudget": 0}, 0.5, "gemini-2.5-flash-lite"),
    ("models/gemini-2.5-flash", {"thinkingBudget": 0}, 0.5, "gemini-2.5-flash"),
    ("gemini-2.5-pro", {"thinkingBudget": 128}, 0.5, "gemini-2.5-pro"),
    ("gemini-3-flash-preview", {"thinkingLevel": "minimal"}, None, "gemini-3-flash-preview"),
    ("gemini-3.5-flash", {"thinkingLevel": "low"}, None, "gemini-3.5-flash"),
    ("gemini-3.7-flash", {"thinkingLevel": "low"}, None, "gemini-3.7-flash"),
    ("gemini-3.8-flash", {"thinkingLevel": "low"}, None, "gemini-3.8-flash"),
    ("gemini-3.1-flash-lite", {"thinkingLevel": "minimal"}, None, "gemini-3.1-flash-lite"),
    ("gemini-3.1-pro-preview", {"thinkingLevel": "low"}, None, "gemini-3.1-pro-preview"),
    ("gemini-3-pro-preview", {"thinkingLevel": "low"}, None, "gemini-3-pro-preview"),
    ("some-tuned-model", None, None, "some-tuned-model"),
])
def test_generation_config_per_model(make, fake, model, thinking, temperature, path_model):
    make(model=model).annotate(rgb(), "detect")
    rec = fake.requests[0]
    assert rec.path == f"/v1beta/models/{path_model}:generateContent"
    config = rec.generation_config
    assert config.get("thinkingConfig") == thinking
    assert config.get("temperature") == temperature
    assert not {"thinkingBudget", "thinkingLevel"} <= set(config.get("thinkingConfig", {}))
    assert config["responseMimeType"] == "application/json" and "responseSchema" not in config


def test_segment_does_not_force_json_mode_unless_asked(make, fake):
    client = make()
    client.annotate(rgb(), "segment", classes=["cat"])
    client.annotate(rgb(), "segment", classes=["cat"], json_mode=True)
    client.annotate(rgb(), "detect", json_mode=False)
    default, forced, plain_detect = (r.generation_config for r in fake.requests)
    assert "responseMimeType" not in default and "responseSchema" not in default
    assert default["thinkingConfig"] == {"thinkingBudget": 0}
    assert "segmentation mask" in fake.requests[0].text and '"mask"' in fake.requests[0].text
    assert forced["responseMimeType"] == "application/json"
    items = forced["responseSchema"]["items"]
    assert items["properties"]["mask"] == {"type": "STRING"} and "mask" in items["required"]
    assert "responseMimeType" not in plain_detect


@pytest.mark.parametrize("overrides, expected", [
    ({"temperature": 0.1, "max_output_tokens": 512}, {"temperature": 0.1, "maxOutputTokens": 512,
                                                      "thinkingConfig": {"thinkingBudget": 0}}),
    ({"thinking_config": {"thinking_budget": 128}}, {"thinkingConfig": {"thinkingBudget": 128}}),
    ({"temperature": None}, {"thinkingConfig": {"thinkingBudget": 0}}),
    ({"responseJsonSchema": {"type": "array"}}, {"responseJsonSchema": {"type": "array"}}),
])
def test_generation_config_overrides_merge(make, fake, overrides, expected):
    make().annotate(rgb(), "detect", classes=["cat"], generation_config=overrides)
    config = fake.requests[0].generation_config
    for key, value in expected.items():
        assert config[key] == value
    if "temperature" in overrides and overrides["temperature"] is None:
        assert "temperature" not in config
    if "responseJsonSchema" in overrides:
        assert "responseSchema" not in config


def test_both_thinking_settings_are_refused_before_sending(make, fake):
    with pytest.raises(ConfigError, match="thinkingBudget and thinkingLevel"):
        make().annotate(rgb(), "detect",
                        generation_config={"thinkingConfig": {"thinkingBudget": 0, "thinkingLevel": "low"}})
    assert fake.requests == []


def test_custom_prompt_and_invalid_arguments(make, fake):
    client = make()
    client.annotate(rgb(), "detect", prompt="Find the red cup.", classes=["cup"])
    assert fake.requests[0].text == 'Find the red cup.\nOnly use these labels: "cup".'
    for kwargs, match in [({"task": "classify"}, "task"), ({"task": "detect", "classes": "cat"}, "classes"),
                          ({"task": "detect", "classes": ["cat", ""]}, "class"),
                          ({"task": "detect", "prompt": " "}, "prompt")]:
        with pytest.raises(ConfigError, match=match):
            client.annotate(rgb(), **kwargs)
    with pytest.raises(InputError):
        client.annotate("/no/such/image.jpg", "detect")
    assert len(fake.requests) == 1


def test_generate_raw(make, fake):
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    out = make().generate(["Say hi.", {"text": "Briefly."}], system_instruction="Be terse.",
                          safety_settings=safety, generation_config={"temperature": 0.0})
    assert "candidates" in out
    body = fake.requests[0].json
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}, {"text": "Briefly."}]}]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert body["generationConfig"] == {"temperature": 0.0}
    make().generate([{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{"text": "b"}]}])
    assert [c["role"] for c in fake.requests[1].json["contents"]] == ["user", "model"]


def test_base_url_from_env_and_validation(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url + "/")
    with GeminiClient(api_key=KEY) as client:
        assert client.base_url == fake.base_url
        client.generate("x")
    assert len(fake.requests) == 1
    for bad in ("ftp://example.com", "generativelanguage.googleapis.com", "https://h/?key=1"):
        with pytest.raises(ConfigError, match="base_url"):
            GeminiClient(api_key=KEY, base_url=bad)
    monkeypatch.delenv("GEMINI_BASE_URL")
    assert GeminiClient(api_key=KEY).base_url == "https://generativelanguage.googleapis.com"


SECRET = "AIzaSy-secret-in-url-0042"


@pytest.mark.parametrize("bad", [
    f"generativelanguage.googleapis.com/v1beta?key={SECRET}",  # no scheme AND a key: both refused
    f"https://generativelanguage.googleapis.com/v1beta?key={SECRET}",
    f"https://generativelanguage.googleapis.com?key={SECRET}",
    f"ftp://example.com/x?key={SECRET}",
    f"https://user:{SECRET}@example.com",
    f"https://{SECRET}@example.com/v1",
    f"ftp://user:{SECRET}@example.com",
    f"user:{SECRET}@example.com/v1",
    f"https://example.com/v1#{SECRET}",
])
def test_base_url_with_a_secret_is_refused_without_echo(fake, monkeypatch, caplog, bad):
    for source in ("argument", "env"):
        kwargs = {"base_url": bad} if source == "argument" else {}
        if source == "env":
            monkeypatch.setenv("GEMINI_BASE_URL", bad)
        with pytest.raises(ConfigError, match="base_url must not contain a query, a fragment or credentials"
                           ) as info:
            GeminiClient(api_key=KEY, **kwargs)
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert fake.requests == []


def test_base_url_error_names_the_url_without_secrets(fake):
    with pytest.raises(ConfigError, match="'generativelanguage.googleapis.com/v1beta'"):
        GeminiClient(api_key=KEY, base_url="generativelanguage.googleapis.com/v1beta")
    with pytest.raises(ConfigError, match=r"'ftp://example.com/x'"):
        GeminiClient(api_key=KEY, base_url="ftp://example.com/x")
    with GeminiClient(api_key=KEY, base_url=fake.base_url + "/") as client:  # a plain URL is still fine
        assert client.base_url == fake.base_url


# -- image preparation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("image, max_side, mime, sent_wh", [
    (rgb(3000, 1000), 1024, "image/jpeg", (1024, 341)),
    (rgb(800, 2000), 512, "image/jpeg", (205, 512)),
    (rgb(200, 100), 1024, "image/jpeg", (200, 100)),  # never upscaled
    (np.dstack([rgb(64, 48), np.full((48, 64), 128, np.uint8)]), 1024, "image/png", (64, 48)),
    (np.dstack([rgb(64, 48), np.full((48, 64), 255, np.uint8)]), 1024, "image/jpeg", (64, 48)),
    (np.full((50, 70), 77, np.uint8), 1024, "image/jpeg", (70, 50)),
])
def test_image_is_prepared(make, fake, image, max_side, mime, sent_wh):
    result = make(max_side=max_side).annotate(image, "detect")
    rec = fake.requests[0]
    assert (rec.image_mime, rec.image_wh) == (mime, sent_wh)
    assert result.sent_wh == sent_wh
    assert result.original_wh == (image.shape[1], image.shape[0])


def test_exif_rotated_image_is_sent_upright(make, fake, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 400x200; displayed turned 90 degrees clockwise, so 200x400
    Image.fromarray(rgb(400, 200)).save(path, exif=exif.tobytes(), quality=95)
    dets = make(max_side=300).detect(path)
    rec = fake.requests[0]
    assert rec.image_wh == (150, 300)
    assert dets.image_wh == (200, 400)
    data = base64.b64decode(rec.parts[0]["inlineData"]["data"])
    sent = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert sent[20, 75, 0] > 150 and sent[20, 75, 2] < 100  # the stored left (red) half is now on top
    assert sent[280, 75, 2] > 150 and sent[280, 75, 0] < 100
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) is None


def test_16bit_png_is_sent_scaled_not_white(make, fake, tmp_path):
    """Pillow's convert("RGB") clips 16-bit gray at 255: a mid-gray 16-bit image was sent almost white."""
    deep = np.full((60, 80), 32768, np.uint16)
    deep[:, 40:] = 8192
    path = tmp_path / "deep16.png"
    Image.fromarray(deep).save(path)
    result = make().annotate(path, "detect")
    assert result.original_wh == result.sent_wh == (80, 60)
    data = base64.b64decode(fake.requests[0].parts[0]["inlineData"]["data"])
    sent = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
    assert abs(sent[30, 10] - 128) <= 3 and abs(sent[30, 70] - 32) <= 3


def test_detections_map_to_the_original_size(make):
    dets = make().detect(rgb(3000, 1000))  # default answer: box_2d [100, 150, 600, 700]
    assert dets.image_wh == (3000, 1000)
    np.testing.assert_allclose(dets.xyxy, [[450, 100, 2100, 600]])
    assert list(dets.labels) == ["object"]
    seg = make().segment(rgb(3000, 1000))
    assert seg.masks is not None and seg.masks[0] is not None and seg.masks[0].area() > 0


def test_default_threshold_comes_from_masks(monkeypatch):
    """detect/segment default to visionkit.core.masks.DEFAULT_THRESHOLD, not a copy of its value."""
    import importlib.util
    import inspect
    import sys

    from visionkit.core import masks
    from visionkit.gemini import client as client_module

    assert inspect.signature(GeminiClient.detect).parameters["threshold"].default == masks.DEFAULT_THRESHOLD
    monkeypatch.setattr(masks, "DEFAULT_THRESHOLD", 99)
    spec = importlib.util.spec_from_file_location("visionkit.gemini._client_copy", client_module.__file__)
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, copy)  # dataclasses look their module up there
    spec.loader.exec_module(copy)  # a fresh copy, so the real module and its classes are untouched
    for name in ("detect", "segment"):
        assert inspect.signature(getattr(copy.GeminiClient, name)).parameters["threshold"].default == 99


# -- retries -------------------------------------------------------------------------------------------------

def http_date_in(seconds: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("faults, min_first_delay, reason", [
    ([Fault.status(429, retry_delay=2)], 2.0, "HTTP 429 RESOURCE_EXHAUSTED"),
    ([Fault.status(429, retry_delay="1.5s")], 1.5, "HTTP 429"),
    ([Fault.status(503, retry_after=3)], 3.0, "HTTP 503 UNAVAILABLE"),
    ([Fault.status(429, retry_after="HTTP-DATE")], 8.0, "HTTP 429"),
    ([Fault.status(503)], 0.0, "HTTP 503"),
    ([Fault.status(500), Fault.status(502)], 0.0, "HTTP 500 INTERNAL"),
    ([Fault.status(504), Fault.status(408)], 0.0, "HTTP 504"),
    ([Fault.reset()], 0.0, "connection error"),
    ([Fault.reset(), Fault.status(503), Fault.reset()], 0.0, "connection error"),
])
def test_retryable_failures_then_success(make, fake, sleeps, faults, min_first_delay, reason):
    faults = [Fault.status(f.code, retry_after=http_date_in(10)) if f.retry_after == "HTTP-DATE" else f
              for f in faults]
    fake.push_faults(*faults)
    calls = []
    result = make(on_retry=lambda *args: calls.append(args)).annotate(rgb(), "detect")
    assert result.attempts == len(faults) + 1
    assert len(fake.generate_requests) == len(faults) + 1
    assert len(sleeps) == len(faults)
    assert sleeps[0] >= min_first_delay
    assert [c[0] for c in calls] == list(range(1, len(faults) + 1))
    assert [c[1] for c in calls] == sleeps
    assert calls[0][2].startswith(reason)


def test_slow_answers_time_out_then_transport_error(make, fake, sleeps):
    fake.push_faults(*[Fault.slow(2.0)] * 3)
    started = time.monotonic()
    with pytest.raises(TransportError, match="timeout.*gave up after 3 attempts") as info:
        make(max_attempts=3, timeout=(1.0, 0.2)).annotate(rgb(), "detect")
    assert time.monotonic() - started < 2.0
    assert len(fake.generate_requests) == 3 and len(sleeps) == 2
    # The read timeout and the deadline (by default the same 0.2 s) race: either one is the cause.
    assert isinstance(info.value.__cause__, (requests.Timeout, TimeoutError))


def test_slow_answer_then_success(make, fake):
    fake.push_faults(Fault.slow(2.0))
    assert make(timeout=(1.0, 0.2)).annotate(rgb(), "detect").attempts == 2


@pytest.mark.parametrize("code, cls, api_status", [
    (400, BadRequestError, "INVALID_ARGUMENT"),
    (401, AuthError, "UNAUTHENTICATED"),
    (403, AuthError, "PERMISSION_DENIED"),
    (404, NotFoundError, "NOT_FOUND"),
    (409, HTTPStatusError, "ABORTED"),
])
def test_permanent_errors_are_not_retried(make, fake, sleeps, code, cls, api_status):
    fake.push_faults(Fault.status(code, message="the API's own words"))
    with pytest.raises(cls) as info:
        make().detect(rgb())
    err = info.value
    assert type(err) is cls
    assert (err.status, err.api_status, err.api_message) == (code, api_status, "the API's own words")
    expected = f"Gemini API {code} {api_status}: the API's own words (model gemini-2.5-flash)"
    assert str(err).startswith(expected)
    assert len(fake.generate_requests) == 1 and sleeps == []


def test_per_day_quota_is_raised_at_once(make, fake, sleeps):
    fake.push_faults(Fault.status(429, retry_delay=30, quota_id=PER_DAY))
    with pytest.raises(RateLimitError, match="daily quota is exhausted") as info:
        make().annotate(rgb(), "detect")
    err = info.value
    assert err.per_day is True and err.quota_id == PER_DAY and err.retry_delay == 30
    assert len(fake.generate_requests) == 1 and sleeps == []


def test_server_delay_beyond_max_total_wait_stops(make, fake, sleeps):
    fake.push_faults(Fault.status(429, retry_delay="3600s"))
    retry = RetryPolicy(max_total_wait=300, sleep=sleeps.append)
    with pytest.raises(RateLimitError, match="3600s, more than max_total_wait 300s") as info:
        make(retry=retry).annotate(rgb(), "detect")
    assert info.value.per_day is False and info.value.retry_delay == 3600
    assert len(fake.generate_requests) == 1 and sleeps == []


@pytest.mark.parametrize("fault, cls", [(Fault.status(503), ServerError),
                                        (Fault.status(429), RateLimitError)])
def test_retries_exhausted(make, fake, sleeps, fault, cls):
    fake.push_faults(*[fault] * 5)
    # a 429 without a retry delay is paced by the client's shared throttle, not backed off per request,
    # and draws on max_total_wait, not on max_attempts (issue 19, 10b): 0 s here, so it stops at once
    paced = cls is RateLimitError
    retry = RetryPolicy(max_attempts=3, max_total_wait=0.0 if paced else 300.0, sleep=sleeps.append,
                        rng=random.Random(0), base_delay=0.0)
    gave_up = "gave up after 2 attempts, 2 of them" if paced else "gave up after 3 attempts"
    with pytest.raises(cls, match=gave_up) as info:
        make(retry=retry).annotate(rgb(), "detect")
    assert len(fake.generate_requests) == (2 if paced else 3) and len(sleeps) == (0 if paced else 2)
    if cls is RateLimitError:
        assert info.value.per_day is False
        assert info.value.quota_id == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


def test_total_wait_budget_caps_retries(make, fake, sleeps):
    fake.push_faults(*[Fault.status(503, retry_after=4)] * 5)
    retry = RetryPolicy(max_attempts=10, max_total_wait=10, sleep=sleeps.append)
    with pytest.raises(ServerError, match="max_total_wait"):
        make(retry=retry).annotate(rgb(), "detect")
    assert sleeps == [4, 4] and len(fake.generate_requests) == 3


def test_max_retries_argument(fake, sleeps):
    fake.push_faults(*[Fault.status(500)] * 5)
    with GeminiClient(api_key=KEY, base_url=fake.base_url, max_retries=1, timeout=2) as client:
        assert client.retry.max_attempts == 2
        client._http.retry = RetryPolicy(max_attempts=client.retry.max_attempts, base_delay=0.001)
        with pytest.raises(ServerError):
            client.generate("x")
    assert len(fake.generate_requests) == 2


# -- attempts on failures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("faults, max_attempts, cls, attempts", [
    ([Fault.status(503)] * 5, 3, ServerError, 3),  # retries used up
    ([Fault.status(503)] * 5, 1, ServerError, 1),
    ([Fault.status(503), Fault.reset(), Fault.status(503), Fault.status(429, retry_delay=0)], 4,
     RateLimitError, 4),
    ([Fault.status(400)], 4, BadRequestError, 1),  # not retried
    ([Fault.status(503), Fault.status(404)], 4, NotFoundError, 2),
    ([Fault.status(429, retry_delay=30, quota_id=PER_DAY)], 4, RateLimitError, 1),
    ([Fault.status(503), Fault.status(429, retry_delay="3600s")], 4, RateLimitError, 2),  # > max_total_wait
    ([Fault.status(503), Fault.raw(200, "<html>portal</html>")], 4, ResponseError, 2),  # 2xx, not JSON
])
def test_failed_requests_report_their_attempts(make, fake, sleeps, faults, max_attempts, cls, attempts):
    fake.push_faults(*faults)
    with pytest.raises(cls) as info:
        make(max_attempts=max_attempts).annotate(rgb(), "detect")
    assert info.value.attempts == attempts == len(fake.generate_requests)


def test_generate_and_detect_errors_report_attempts(make, fake, sleeps):
    fake.push_faults(*[Fault.status(500)] * 3)
    with pytest.raises(ServerError) as info:
        make(max_attempts=3).generate("x")
    assert info.value.attempts == 3
    fake.push_faults(Fault.status(502), Fault.blocked("SAFETY"))
    with pytest.raises(BlockedError) as info:  # the request succeeded on attempt 2; the answer is withheld
        make().detect(rgb())
    assert info.value.attempts == 2


def test_timeouts_and_unsendable_requests_report_attempts(make, fake, sleeps):
    fake.push_faults(*[Fault.slow(2.0)] * 2)
    with pytest.raises(TransportError) as info:
        make(max_attempts=2, timeout=(1.0, 0.2)).annotate(rgb(), "detect")
    assert info.value.attempts == 2
    client = make(max_attempts=3)
    client.base_url = "http://127.0.0.1:1\x00"  # requests refuses to send: raised from the attempt itself
    with pytest.raises(TransportError, match="could not be sent") as info:
        client.generate("x")
    assert info.value.attempts == 1


def test_failed_upload_reports_attempts(sleeps):
    with FakeGemini(file_states=("PROCESSING", "FAILED")) as fake:
        client = GeminiClient(api_key=KEY, base_url=fake.base_url, inline_limit_bytes=10,
                              retry=RetryPolicy(sleep=sleeps.append))
        with pytest.raises(ResponseError, match="FAILED") as info:
            client.annotate(rgb(), "detect")
        assert info.value.attempts == 1


def test_retry_policy_sets_attempts():
    policy = RetryPolicy(max_attempts=3, sleep=lambda d: None)
    with pytest.raises(ServerError) as info:
        policy.run(lambda: Failed(ServerError("x", status=503), None, "HTTP 503"))
    assert info.value.attempts == 3
    with pytest.raises(BadRequestError) as info:
        policy.run(lambda: Failed(BadRequestError("x", status=400), None, "HTTP 400"))
    assert info.value.attempts == 1
    outcomes = iter([Failed(ServerError("x", status=500), None, "HTTP 500")])

    def send():
        outcome = next(outcomes, None)
        if outcome is None:
            raise TransportError("cannot send")
        return outcome

    with pytest.raises(TransportError) as info:  # raised by send itself, on attempt 2
        policy.run(send)
    assert info.value.attempts == 2


# -- answers that are not detections -------------------------------------------------------------------------

@pytest.mark.parametrize("fault, reason", [
    (Fault.blocked("PROHIBITED_CONTENT"), "PROHIBITED_CONTENT"),
    (Fault.finish("SAFETY"), "SAFETY"),
    (Fault.finish("RECITATION", "[]"), "RECITATION"),
])
def test_blocked_answers(make, fake, sleeps, fault, reason):
    fake.push_faults(fault)
    client = make()
    with pytest.raises(BlockedError) as info:
        client.detect(rgb())
    assert info.value.reason == reason
    assert len(fake.generate_requests) == 1 and sleeps == []
    fake.push_faults(fault)
    assert client.annotate(rgb(), "detect").response  # annotate returns the raw answer; parsing decides


def test_non_json_200_is_response_error(make, fake):
    fake.push_faults(Fault.raw(200, "<html>captive portal</html>"))
    with pytest.raises(ResponseError, match="not JSON.*captive portal"):
        make().annotate(rgb(), "detect")
    assert len(fake.generate_requests) == 1


def test_non_json_error_status(make, fake):
    fake.push_faults(Fault.raw(502, "<html>bad gateway</html>"))
    client = make()
    assert client.annotate(rgb(), "detect").attempts == 2  # 502 is retried
    fake.push_faults(Fault.raw(404, "nope", "text/plain"))
    with pytest.raises(NotFoundError, match="Gemini API 404: Not Found .*non-JSON") as info:
        client.annotate(rgb(), "detect")
    assert info.value.api_status is None and info.value.api_message is None


# -- Files API -----------------------------------------------------------------------------------------------

def test_large_request_goes_through_the_files_api(make, fake, sleeps):
    client = make(inline_limit_bytes=2_000, upload_poll_interval=0.25)
    image = rgb(640, 480)
    result = client.annotate(image, "detect")
    kinds = [r.kind for r in fake.requests]
    assert kinds == ["upload_start", "upload", "file_get", "file_get", "generate"]
    start, upload, *_, generate = fake.requests
    data = client.prepare(image).data
    assert start.headers["X-Goog-Upload-Protocol"] == "resumable"
    assert start.headers["X-Goog-Upload-Command"] == "start"
    assert start.headers["X-Goog-Upload-Header-Content-Length"] == str(len(data))
    assert start.headers["X-Goog-Upload-Header-Content-Type"] == "image/jpeg"
    assert start.json == {"file": {"display_name": "image"}}
    assert upload.headers["X-Goog-Upload-Command"] == "upload, finalize"
    assert upload.headers["X-Goog-Upload-Offset"] == "0" and upload.body_size == len(data)
    assert all(r.headers["x-goog-api-key"] == KEY for r in fake.requests)
    file_parts = [p["fileData"] for p in generate.parts if "fileData" in p]
    assert not any("inlineData" in p for p in generate.parts)
    assert file_parts[0]["mimeType"] == "image/jpeg"
    assert file_parts[0]["fileUri"] == generate.file_uri and generate.file_uri.startswith(fake.base_url)
    assert generate.image_wh == result.sent_wh == (640, 480)
    assert fake.file_data(generate.file_uri.rsplit("/", 1)[-1]) == data
    assert sleeps == [0.25, 0.25]  # two polls: PROCESSING, then ACTIVE


def test_failed_upload_is_response_error(sleeps):
    with FakeGemini(file_states=("PROCESSING", "FAILED")) as fake:
        client = GeminiClient(api_key=KEY, base_url=fake.base_url, inline_limit_bytes=10,
                              retry=RetryPolicy(sleep=sleeps.append))
        with pytest.raises(ResponseError, match="FAILED"):
            client.annotate(rgb(), "detect")
        assert [r.kind for r in fake.requests] == ["upload_start", "upload", "file_get"]


def test_upload_never_active_times_out(sleeps):
    with FakeGemini(file_states=("PROCESSING",)) as fake:
        client = GeminiClient(api_key=KEY, base_url=fake.base_url, inline_limit_bytes=10,
                              upload_poll_interval=1.0, upload_poll_timeout=3.0,
                              retry=RetryPolicy(sleep=sleeps.append))
        with pytest.raises(ResponseError, match="still PROCESSING after 3s"):
            client.annotate(rgb(), "detect")
    assert sleeps == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("url", ["https://evil.example.com/upload?id=1",
                                 f"https://{KEY}@evil.example.com/upload",
                                 f"https://user:{KEY}@evil.example.com:8443/upload"])
def test_upload_url_on_another_host_is_refused(url):
    class Answer:
        headers = {"x-goog-upload-url": url}

    calls = []

    def request(method, url, **kw):
        calls.append(url)
        return Answer()

    with pytest.raises(ResponseError, match=r"another host \(evil\.example\.com\)") as info:
        files_api.upload_bytes(request, "https://generativelanguage.googleapis.com", b"x", "image/png")
    assert KEY not in str(info.value)  # the refused URL's user part is never repeated
    assert calls == ["https://generativelanguage.googleapis.com/upload/v1beta/files"]


def test_a_key_echoed_in_a_header_never_reaches_the_error(fake):
    fake.push_faults(Fault.raw(200, b"<html>oops</html>", content_type="text/html; x=" + KEY))
    client = GeminiClient(api_key=KEY, base_url=fake.base_url, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(ResponseError, match="is not JSON") as info:
        client.annotate(rgb(), "detect")
    assert KEY not in str(info.value)


# -- concurrency and lifecycle -------------------------------------------------------------------------------

def test_one_client_from_many_threads(sleeps):
    with FakeGemini(latency=0.1) as fake:
        client = GeminiClient(api_key=KEY, base_url=fake.base_url, retry=RetryPolicy(sleep=sleeps.append))
        fake.push_faults(Fault.status(503), Fault.reset())
        images = [rgb(100 + i, 80) for i in range(24)]
        started = time.monotonic()
        with client, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda im: client.annotate(im, "detect"), images))
        elapsed = time.monotonic() - started
        assert sorted(r.sent_wh for r in results) == sorted((im.shape[1], 80) for im in images)
        assert sum(r.attempts for r in results) == 26
        assert len(fake.generate_requests) == 26
        assert len({r.peer for r in fake.generate_requests}) <= 10  # connections are pooled and reused
    assert elapsed < 24 * 0.1 / 2


def test_context_manager_closes(make, fake):
    with make() as client:
        client.generate("x")
    with pytest.raises(ConfigError, match="closed"):
        client.generate("x")


def test_user_session_is_not_closed(fake):
    with requests.Session() as session:
        with GeminiClient(api_key=KEY, base_url=fake.base_url, session=session) as client:
            client.generate("x")
        assert session.get(fake.base_url + "/v1beta/files/none").status_code == 404  # still usable


def test_client_cannot_be_pickled(make):
    import pickle

    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(make())


# -- retry policy and helpers (no HTTP) ----------------------------------------------------------------------

@pytest.mark.parametrize("jitter, retry, previous, low, high", [
    ("none", 1, None, 1.0, 1.0),
    ("none", 3, None, 4.0, 4.0),
    ("none", 10, None, 60.0, 60.0),  # capped at max_delay
    ("full", 3, None, 0.0, 4.0),
    ("equal", 3, None, 2.0, 4.0),
    ("decorrelated", 2, 5.0, 1.0, 15.0),
    ("decorrelated", 2, 50.0, 1.0, 60.0),
])
def test_backoff_bounds(jitter, retry, previous, low, high):
    policy = RetryPolicy(jitter=jitter, rng=random.Random(1))
    for _ in range(200):
        assert low <= policy.backoff(retry, previous) <= high


@pytest.mark.parametrize("text, seconds", [
    ("53s", 53.0), ("30.5s", 30.5), ("0s", 0.0), (" 7s ", 7.0), ("53", None), ("1m", None), (None, None),
    (53, None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_retry_after():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_policy_validation_and_non_retryable_exceptions():
    for kwargs in ({"max_attempts": 0}, {"jitter": "wild"}, {"base_delay": -1}):
        with pytest.raises(ConfigError):
            RetryPolicy(**kwargs)
    policy = RetryPolicy(sleep=lambda d: None)
    outcomes = iter([Failed(ServerError("x", status=500), None, "HTTP 500"), "done"])
    assert policy.run(lambda: next(outcomes)) == ("done", 2)
    with pytest.raises(ZeroDivisionError):  # exceptions from send are not retried
        policy.run(lambda: 1 / 0)


@pytest.mark.parametrize("model, family", [
    ("gemini-2.5-flash", "2.5-flash"), ("gemini-2.5-flash-lite-preview-09-2025", "2.5-flash"),
    ("gemini-2.5-pro", "2.5-pro"), ("gemini-3-pro-preview", "3-pro"), ("gemini-3.5-flash", "3"),
    ("gemini-robotics-er-1.5-preview", "2.5-flash"), ("gemini-1.5-pro", "2.x"), ("gemma-3-27b-it", "other"),
])
def test_model_family(model, family):
    assert model_family(model) == family
    config = build_generation_config(model, "detect")
    assert not {"thinkingBudget", "thinkingLevel"} <= set(config.get("thinkingConfig", {}))
