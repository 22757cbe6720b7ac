"""The client against FakeGemini's per-model dialects: every registry row, the 400-learning path, flex."""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visionkit.errors import BadRequestError, NotFoundError, ServerError
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.gemini.thinking import thinking_fix
from visionkit.testing.dialects import DEFAULT_OBJECTS, Dialects, octagon_yx
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.dialect-test-key-0123456789"
MODELS = ["gemini-3.8-flash", "gemini-3.7-flash", "gemini-3.6-flash", "gemini-3.5-flash",
          "gemini-3.5-flash-lite", "gemini-3.1-flash-lite", "gemini-3-flash-preview",
          "gemini-3.1-pro-preview", "gemini-3-pro-preview", "gemini-2.5-flash", "gemini-2.5-flash-lite",
          "gemini-2.5-pro"]


def rgb(w: int = 320, h: int = 240) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 40, 40)
    return arr


@pytest.fixture
def fake():
    with FakeGemini(dialects=True) as server:
        yield server


def client(fake, model, **kw) -> GeminiClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, sleep=lambda s: None, rng=random.Random(0)))
    return GeminiClient(api_key=KEY, model=model, base_url=fake.base_url, **kw)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("task", ["detect", "segment"])
def test_every_row_is_accepted_first_time_and_segments(fake, model, task):
    with client(fake, model) as c:
        dets = c.segment(rgb()) if task == "segment" else c.detect(rgb())
    assert len(fake.generate_requests) == 1  # no 400, no retry
    assert len(dets) == len(DEFAULT_OBJECTS)
    if task == "segment":
        assert dets.masks is not None and all(m is not None and m.data.any() for m in dets.masks)
        assert not dets.warnings


@pytest.mark.parametrize("model, config, message", [
    ("gemini-3.7-flash", {"thinkingLevel": "minimal"},
     "'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high."),
    ("gemini-3.8-flash", {"thinkingLevel": "minimal"}, "Allowed values are: medium, low, high."),
    ("gemini-3.6-flash", {"thinkingBudget": 0},
     "Budget 0 is invalid. This model only works in thinking mode."),
    ("gemini-3.1-pro-preview", {"thinkingBudget": 0}, "only works in thinking mode"),
    ("gemini-2.5-pro", {"thinkingBudget": 0}, "only works in thinking mode"),
    ("gemini-2.5-flash", {"thinkingLevel": "low"}, "Thinking level is not supported"),
    ("gemini-3.8-flash", {"thinkingLevel": "low", "thinkingBudget": 0}, "only one of thinking budget"),
])
def test_the_fake_rejects_what_the_real_api_rejects(fake, model, config, message):
    with client(fake, model) as c, pytest.raises(BadRequestError) as info:
        c.generate("hi", generation_config={"thinkingConfig": config})
    assert message in info.value.api_message
    assert len(fake.generate_requests) == 1


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gemini-1.5-pro"])
def test_the_fake_answers_404_for_retired_ids(fake, model):
    import requests

    r = requests.post(f"{fake.base_url}/v1beta/models/{model}:generateContent", json={"contents": []},
                      timeout=5)
    assert r.status_code == 404 and f"models/{model} is not found" in r.json()["error"]["message"]


def test_polygons_come_back_in_the_stated_order(fake):
    with client(fake, "gemini-3.7-flash") as c:
        dets = c.segment(rgb(1000, 1000))
    # A [y, x] octagon inside each box: with the order known, each mask lies inside its box.
    for i, (_, box) in enumerate(DEFAULT_OBJECTS):
        ys, xs = np.nonzero(dets.mask(i))
        y0, x0, y1, x1 = box
        assert ys.min() >= y0 - 1 and ys.max() <= y1 and xs.min() >= x0 - 1 and xs.max() <= x1
    assert len(octagon_yx(DEFAULT_OBJECTS[0][1])) == 8


# -- learning from a 400 ---------------------------------------------------------------------------------

def test_400_learning_for_a_model_not_in_the_table(fake, caplog):
    # gemini-4.2-flash is unknown to the registry: nothing is sent for thinking by default. A thinking
    # setting given by the caller is rejected; the client reads the allowed values, retries once with
    # the lowest, and keeps it for the rest of the run, logging one line.
    config = {"thinkingConfig": {"thinkingLevel": "minimal"}}
    with caplog.at_level(logging.WARNING, logger="visionkit.gemini"), client(fake, "gemini-4.2-flash") as c:
        result = c.annotate(rgb(), "detect", generation_config=config)
        assert result.attempts == 2
        sent = [r.generation_config.get("thinkingConfig") for r in fake.generate_requests]
        assert sent == [{"thinkingLevel": "minimal"}, {"thinkingLevel": "low"}]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: c.annotate(rgb(), "detect", generation_config=config), range(6)))
    later = [r.generation_config.get("thinkingConfig") for r in fake.generate_requests[2:]]
    assert later == [{"thinkingLevel": "low"}] * 6  # remembered: no more 400s
    lines = [r for r in caplog.records if "rejected thinkingConfig" in r.getMessage()]
    assert len(lines) == 1 and "'low'" in lines[0].getMessage()


def test_unknown_model_without_thinking_sends_none(fake):
    with client(fake, "gemini-4.2-flash") as c:
        c.annotate(rgb(), "detect")
    assert "thinkingConfig" not in fake.generate_requests[0].generation_config


def test_without_allowed_values_the_retry_sends_the_least_budget(fake):
    # 2.5 Pro: budget 0 is rejected with no list of allowed values -> the least budget it may take (128),
    # never "no thinkingConfig", which thinks at the model's default (issue 15).
    config = {"thinkingConfig": {"thinkingBudget": 0}}
    with client(fake, "gemini-2.5-pro") as c:
        c.annotate(rgb(), "detect", generation_config=config)
    sent = [r.generation_config.get("thinkingConfig") for r in fake.generate_requests]
    assert sent == [{"thinkingBudget": 0}, {"thinkingBudget": 128}]


def test_other_400s_are_never_retried():
    with FakeGemini() as fake:
        fake.push_faults(Fault.status(400, message="Request payload size exceeds the limit: 20971520 bytes."))
        with client(fake, "gemini-3.8-flash") as c, pytest.raises(BadRequestError):
            c.annotate(rgb(), "detect")
        assert len(fake.generate_requests) == 1
        # A thinking 400 when no thinking was sent is not ours to fix either.
        fake.push_faults(Fault.status(400, message="'minimal' is not a supported thinking level for this "
                                                   "model. Allowed values are: medium, low, high."))
        with client(fake, "gemini-4.2-flash") as c, pytest.raises(BadRequestError):
            c.annotate(rgb(), "detect")
        assert len(fake.generate_requests) == 2


def test_the_retry_is_made_once_only():
    msg = "'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high."
    with FakeGemini() as fake:
        fake.push_faults(Fault.status(400, message=msg), Fault.status(400, message="'low' is not a supported "
                         "thinking level for this model. Allowed values are: medium, low, high."))
        with client(fake, "gemini-3.1-flash-lite") as c, pytest.raises(BadRequestError) as info:
            c.annotate(rgb(), "detect")
        assert len(fake.generate_requests) == 2 and info.value.attempts == 2


@pytest.mark.parametrize("message, sent, expected", [
    ("'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high.",
     {"thinkingLevel": "minimal"}, {"thinkingLevel": "low"}),
    # No list: the next level up, the least budget, a budget for a budget-only model; never "none" (issue 15).
    ("THINKING_LEVEL_MINIMAL is unsupported", {"thinkingLevel": "minimal"}, {"thinkingLevel": "low"}),
    ("Budget 0 is invalid. This model only works in thinking mode.", {"thinkingBudget": 0},
     {"thinkingBudget": 128}),
    ("Thinking level is not supported for this model.", {"thinkingLevel": "low"}, {"thinkingBudget": 0}),
    ("Allowed values are: HIGH, LOW. 'medium' is not a supported thinking level", {"thinkingLevel": "medium"},
     {"thinkingLevel": "low"}),
])
def test_thinking_fix_table(message, sent, expected):
    fix = thinking_fix(message, sent)
    assert fix is not None and fix.config == expected


@pytest.mark.parametrize("message, sent", [
    ("Request payload size exceeds the limit", {"thinkingLevel": "minimal"}),
    ("API key not valid. Please pass a valid API key.", {"thinkingBudget": 0}),
    ("'minimal' is not a supported thinking level", None),
    ("'low' is not a supported thinking level for this model. Allowed values are: low, high.",
     {"thinkingLevel": "low"}),
    ("", {"thinkingLevel": "low"}),
])
def test_thinking_fix_refuses_what_it_does_not_recognise(message, sent):
    assert thinking_fix(message, sent) is None


# -- flex and usage ----------------------------------------------------------------------------------------

def test_flex_drops_are_retried(fake):
    with client(fake, "gemini-3.8-flash", service_tier="flex") as c:
        result = c.annotate(rgb(), "detect")
    assert result.attempts == 2 and fake.dialects.flex_dropped == 1
    assert [r.json.get("serviceTier") for r in fake.generate_requests] == ["flex", "flex"]


def test_flex_drops_past_the_retry_budget_fail_as_server_errors():
    with FakeGemini(dialects=Dialects(flex_drop_every=1)) as fake, \
            client(fake, "gemini-3.8-flash", service_tier="flex") as c, pytest.raises(ServerError):
        c.annotate(rgb(), "detect")


@pytest.mark.parametrize("media, image_tokens", [(None, 1120), ("low", 280), ("medium", 560),
                                                  ("ultra_high", 2240)])
def test_usage_metadata_follows_media_resolution(fake, media, image_tokens):
    with client(fake, "gemini-3.8-flash", media_resolution=media) as c:
        result = c.annotate(rgb(), "detect")
    usage = result.usage
    assert usage["promptTokensDetails"][0]["tokenCount"] == image_tokens
    assert usage["thoughtsTokenCount"] == 64  # thinkingLevel low
    assert usage["totalTokenCount"] == (usage["promptTokenCount"] + usage["candidatesTokenCount"]
                                        + usage["thoughtsTokenCount"])


def test_retired_model_is_refused_before_the_fake_sees_it(fake):
    with pytest.raises(Exception, match="retired"):
        client(fake, "gemini-2.0-flash")
    assert fake.requests == []
    with client(fake, "gemini-3.8-flash") as c:
        c.model = "gemini-2.0-flash"  # pretend the registry did not know: the 404 still says what to do
        c.info = c.info.__class__(r"(?!)", "x", "unknown", status="unknown")
        with pytest.raises(NotFoundError, match="retired .*gemini-3.8-flash"):
            c.annotate(rgb(), "detect")
