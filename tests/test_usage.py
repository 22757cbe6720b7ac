"""Token accounting (visionkit.core.usage), the up-front model notices, and FakeGemini's command line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from visionkit.cli import main
from visionkit.core.usage import Usage
from visionkit.gemini.models import ModelInfo, lookup
from visionkit.run.pipeline import label
from visionkit.run.usage import answer_usage, model_notices

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("meta, expected", [
    (None, Usage(requests=1)),
    ({}, Usage(requests=1)),
    ({"promptTokenCount": 1120, "candidatesTokenCount": 40, "thoughtsTokenCount": 64,
      "totalTokenCount": 1224}, Usage(1120, 40, 64, 0, 1224, 1)),
    ({"promptTokenCount": 10, "candidatesTokenCount": 5}, Usage(10, 5, 0, 0, 15, 1)),  # total derived
    ({"promptTokenCount": "300", "cachedContentTokenCount": 256}, Usage(300, 0, 0, 256, 300, 1)),
    ({"promptTokenCount": -5, "candidatesTokenCount": float("nan"), "thoughtsTokenCount": True,
      "totalTokenCount": 1e300}, Usage(0, 0, 0, 0, 0, 1)),  # nonsense counts as 0, never crashes
    ({"prompt": 7, "candidates": 3, "thoughts": 1, "cached": 0, "total": 11, "requests": 2},
     Usage(7, 3, 1, 0, 11, 2)),  # visionkit's own summed form
])
def test_usage_of(meta, expected):
    assert Usage.of(meta) == expected


def test_usage_sums_and_prices():
    run = Usage()
    run.add(Usage.of({"promptTokenCount": 1_000_000, "candidatesTokenCount": 200_000,
                      "thoughtsTokenCount": 300_000}))
    run.add(Usage.of({"promptTokenCount": 1_000_000}))
    assert (run.prompt, run.candidates, run.thoughts, run.requests) == (2_000_000, 200_000, 300_000, 2)
    assert run.cost(0.5, 3.0) == pytest.approx(2 * 0.5 + 0.5 * 3.0)  # thinking billed as output
    assert run.cost(0, 0) == 0
    assert "2,000,000 tokens in" in run.describe() and "2 requests" in run.describe()


def test_answer_usage_prefers_visionkits_sum():
    response = {"candidates": [], "usageMetadata": {"promptTokenCount": 5},
                "visionkit": {"usage": {"prompt": 9, "requests": 2}}}
    assert answer_usage(response) == {"prompt": 9, "requests": 2}
    assert answer_usage({"usageMetadata": {"promptTokenCount": 5}})["prompt"] == 5
    assert answer_usage("plain text") is None


class NoMaskClient:
    """A client whose model gives no masks: the run says so once, up front, and asks for boxes."""

    model = "gemini-x-boxes"
    max_side = 1024
    info = ModelInfo(r"gemini-x-boxes", "boxes only", "none", masks="none", status="ga", source="test")

    def __init__(self):
        self.calls = []

    def annotate(self, path, task, **kw):
        self.calls.append(task)
        text = '[{"box_2d": [100, 100, 500, 500], "label": "cup"}]'
        return SimpleNamespace(response={"candidates": [{"content": {"parts": [{"text": text}]},
                                                         "finishReason": "STOP"}]},
                               attempts=1, mask_format="none", mask_order=None, usage={})

    def close(self):
        pass


def test_models_without_masks_are_said_once_up_front(tmp_path):
    notices = []
    client = NoMaskClient()
    summary = label([FIXTURES / "images"], tmp_path / "o", task="segment", client=client,
                    overlays=False, on_notice=notices.append)
    assert summary.ok and len(client.calls) == 8
    said = [n for n in notices if "gives no segmentation masks" in n]
    assert len(said) == 1 and notices.index(said[0]) == 0
    assert summary.warnings == 0  # not a warning per image


def test_model_notices():
    routed = SimpleNamespace(model="gemini-2.5-flash", info=lookup("gemini-2.5-flash"))
    assert [n for n in model_notices(routed, "detect") if "is routed to gemini-3.5-flash-lite" in n
            and "gemini-3.8-flash" in n]
    assert model_notices(SimpleNamespace(model="gemini-3.8-flash", info=lookup("gemini-3.8-flash")),
                         "segment") == []
    assert model_notices(object(), "segment") == []


def test_routed_model_is_said_once_in_the_cli(tmp_path, monkeypatch):
    from visionkit.testing.fake_gemini import FakeGemini

    monkeypatch.setenv("GEMINI_API_KEY", "AQ.notice-test-key-000")
    out, err = io.StringIO(), io.StringIO()
    with FakeGemini(dialects=True) as fake:
        code = main(["label", str(FIXTURES / "images" / "square_1024.png"), "--out", str(tmp_path / "o"),
                     "--task", "detect", "--model", "gemini-2.5-flash", "--base-url", fake.base_url,
                     "--no-overlays"], stdout=out, stderr=err)
    assert code == 0 and err.getvalue().count("is routed to") == 1


def test_fake_gemini_command_line(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "visionkit.testing", "--port", "0",
                             "--dialects", "--log"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = requests.post(f"{url}/v1beta/models/gemini-3.7-flash:generateContent", timeout=10, json={
            "contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "minimal"}}})
        assert r.status_code == 400
        assert "Allowed values are: medium, low, high." in r.json()["error"]["message"]
        r = requests.post(f"{url}/v1beta/models/gemini-3.7-flash:generateContent", timeout=10,
                          json={"contents": [{"parts": [{"text": "Detect things"}]}]})
        assert r.status_code == 200 and r.json()["usageMetadata"]["totalTokenCount"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "gemini-3.7-flash thinking={'thinkingLevel': 'minimal'}" in err


def test_fake_gemini_replay_needs_images():
    proc = subprocess.run([sys.executable, "-m", "visionkit.testing", "--replay",
                           str(FIXTURES / "replay")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--replay needs --images" in proc.stderr


def test_usage_json_counts_only_this_runs_requests(tmp_path, monkeypatch):
    from visionkit.testing.fake_gemini import FakeGemini

    monkeypatch.setenv("GEMINI_API_KEY", "AQ.usage-json-key-000")
    args = ["label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--task", "detect",
            "--no-overlays", "-q"]
    with FakeGemini(dialects=True) as fake:
        assert main([*args, "--base-url", fake.base_url], stdout=io.StringIO(), stderr=io.StringIO()) == 0
        first = json.loads((tmp_path / "o" / "usage.json").read_text())
        out = io.StringIO()
        assert main([*args, "--base-url", fake.base_url], stdout=out, stderr=io.StringIO()) == 0
        again = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert first["usage"]["requests"] == 8 and again["usage"]["requests"] == 0
    assert "tokens:" not in out.getvalue()  # nothing was spent
