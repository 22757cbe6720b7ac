"""A refused key stops a run before any image request, whatever the thinking setting's source.

The preflight's ``GET models/{id}`` checks the key. When it gets no answer (a 5xx, a reset), the setting
from the table or the cache sends no probe, so before the fix a wrong key was found only by the image
requests (exit 1, one doomed request per image in flight). Now ``GET models?pageSize=1`` checks the key
then; a 401/403/``API_KEY_INVALID`` stops the run (exit 2, zero image requests), and no answer to the
preflight never stops it. All against FakeGemini over real HTTP: ``server.models[id] = Fault`` is what
models.get of that id answers, before the fake checks the key."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from visionkit.cli import main
from visionkit.errors import AuthError
from visionkit.gemini import GeminiClient
from visionkit.gemini.fleet import sourced_rule
from visionkit.gemini.models import lookup
from visionkit.run.pipeline import label
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.preflight-key-5Tq9Lm2Wx"
WRONG = "AQ.wrong-preflight-000000"
TABLE = "gemini-4-argon"  # a sourced table row: no probe
LEARNED = "gemini-4.2-flash-exp"  # not in the table: learned by probes, then cached


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (120 + 7 * i, 80), (20 * i, 90, 30)).save(folder / f"im{i}.png")
    return folder


def test_the_sources_are_what_the_table_says():
    assert sourced_rule(lookup(TABLE)) and not sourced_rule(lookup(LEARNED))


def _warm_cache(images, model):
    with FakeGemini(dialects=True, api_key=KEY) as server, \
            GeminiClient(api_key=KEY, model=model, base_url=server.base_url, max_retries=0) as client:
        label([images], images.parent / "warm", task="detect", client=client, overlays=False)
        return [r for r in server.generate_requests if r.image_wh is None]  # the probes


def _run(images, model, fault, key):
    with FakeGemini(dialects=True, api_key=KEY, models={model: fault}) as server, \
            GeminiClient(api_key=key, model=model, base_url=server.base_url, max_retries=0) as client:
        try:
            summary = label([images], images.parent / "out", task="detect", client=client, overlays=False)
        except AuthError as exc:
            return exc, server.generate_requests
        return summary, server.generate_requests


@pytest.mark.parametrize("source", ["table", "cache", "probe"])
@pytest.mark.parametrize("fault, key", [
    (Fault.status(401), KEY), (Fault.status(403), KEY),   # models.get refuses the key itself
    (Fault.status(503), WRONG), (Fault.reset(), WRONG),    # no answer; the key is wrong (400 API_KEY_INVALID)
])
def test_a_refused_key_stops_before_any_image(images, source, fault, key):
    model = TABLE if source == "table" else LEARNED
    if source == "cache":
        assert _warm_cache(images, model), "the cache was learned by probes"
    out, sent = _run(images, model, fault, key)
    assert isinstance(out, AuthError), out
    assert "API key was refused" in str(out) and "no image request was made" in str(out)
    assert [r for r in sent if r.image_wh is not None] == []
    assert WRONG not in str(out)


@pytest.mark.parametrize("source", ["table", "cache", "probe"])
@pytest.mark.parametrize("fault", [Fault.status(500), Fault.status(503), Fault.reset()])
def test_no_answer_from_the_preflight_does_not_stop_the_run(images, source, fault):
    model = TABLE if source == "table" else LEARNED
    if source == "cache":
        _warm_cache(images, model)
    summary, sent = _run(images, model, fault, KEY)
    assert not isinstance(summary, Exception), summary
    assert summary.succeeded == 3 and summary.failed == 0
    assert len([r for r in sent if r.image_wh is not None]) == 3


@pytest.mark.parametrize("fault", [Fault.status(401), Fault.status(403)])
def test_the_cli_exits_2_with_a_clear_message(images, monkeypatch, fault):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with FakeGemini(dialects=True, api_key=KEY, models={TABLE: fault}) as server:
        code = main(["label", str(images), "--out", str(images.parent / "out"), "--base-url", server.base_url,
                     "--model", TABLE, "--task", "detect"], stdout=out, stderr=err)
        assert server.generate_requests == []
    assert code == 2
    assert "the API key was refused" in err.getvalue() and "GEMINI_API_KEY" in err.getvalue()


@pytest.mark.parametrize("listed", [Fault.status(404), Fault.status(405), Fault.status(400), Fault.reset()])
def test_a_key_check_that_gets_no_useful_answer_is_a_notice_not_a_stop(images, listed):
    """models.get got no answer and the list is not served either (a proxy that forwards only
    generateContent): the run goes on with the table's setting, and says the key was not checked."""
    with FakeGemini(dialects=True, api_key=KEY, models={TABLE: Fault.status(503)}) as server, \
            GeminiClient(api_key=KEY, model=TABLE, base_url=server.base_url, max_retries=0) as client:
        server.list_fault = listed
        summary = label([images], images.parent / "out", task="detect", client=client, overlays=False)
        sent = [r for r in server.generate_requests if r.image_wh is not None]
    assert summary.succeeded == 3 and len(sent) == 3
    assert any("API key could not be checked" in n for n in summary.notices), summary.notices
