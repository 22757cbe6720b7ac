"""The model registry and the shared request builder: every row, against FakeGemini over real HTTP."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from visionkit import parse_response
from visionkit.errors import ConfigError, NotFoundError
from visionkit.gemini import GeminiClient, RequestOptions, build_request, lookup, plan_request
from visionkit.gemini.images import prepare_image
from visionkit.gemini.models import DEFAULT_MODEL, MODELS, UNKNOWN
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.fake-models-key-0123456789"


def rgb(w: int = 320, h: int = 200) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 40, 40)
    return arr


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


# Each registry row, with an id it must match and what a request to it must carry.
ROWS = [
    ("gemini-4-argon", "Gemini 4 Argon", {"thinkingLevel": "low"}, "polygon", "ga"),
    ("gemini-4-hydrogen", "Gemini 4 Hydrogen", {"thinkingLevel": "low"}, "polygon", "ga"),
    ("gemini-4-neon", "Gemini 4 Neon", {"thinkingLevel": "low"}, "polygon", "ga"),
    ("gemini-3.1-flash-lite", "Gemini 3.x Flash-Lite", {"thinkingLevel": "minimal"}, "polygon", "ga"),
    ("gemini-3.5-flash-lite-preview-11-2026", "Gemini 3.x Flash-Lite", {"thinkingLevel": "minimal"},
     "polygon", "preview"),
    ("gemini-3.8-flash", "Gemini 3.8 Flash", {"thinkingLevel": "low"}, "polygon", "ga"),
    ("gemini-3.7-flash", "Gemini 3.7 Flash", {"thinkingLevel": "low"}, "polygon", "routed"),
    ("gemini-3.6-flash", "Gemini 3.6 Flash", {"thinkingLevel": "low"}, "polygon", "ga"),
    ("gemini-3.5-flash", "Gemini 3.5 Flash", {"thinkingLevel": "low"}, "polygon", "routed"),
    ("gemini-3-flash-preview", "Gemini 3 Flash (preview)", {"thinkingLevel": "minimal"}, "polygon",
     "preview"),
    ("gemini-3.1-pro-preview", "Gemini 3.1 Pro", {"thinkingLevel": "low"}, "polygon", "preview"),
    ("gemini-3-pro-preview", "Gemini 3 Pro", {"thinkingLevel": "low"}, "polygon", "preview"),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", {"thinkingBudget": 0}, "png", "ga"),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", {"thinkingBudget": 0}, "png", "routed"),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", {"thinkingBudget": 128}, "png", "routed"),
    ("gemini-robotics-er-2-preview", "Gemini Robotics-ER 2", None, "polygon", "preview"),
    ("gemini-4-ultra", "unknown model", None, "polygon", "unknown"),
    ("my-tuned-model", "unknown model", None, "polygon", "unknown"),
]
RETIRED = ["gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-1.5-pro", "gemini-robotics-er-1.6-preview",
           "gemini-robotics-er-1.5-preview"]


def test_every_row_is_covered_and_sourced():
    names = {name for _, name, *_ in ROWS} | {lookup(m).name for m in RETIRED}
    assert names == {row.name for row in MODELS} | {UNKNOWN.name}
    for row in MODELS:
        assert row.source, row.name
        assert row.thinking in ("level", "budget", "none", "unknown")
        assert row.masks in ("png", "polygon", "none")
        assert row.media in ("global", "per_part", "no", "unknown")
        if row.thinking == "level":
            assert row.least == {"thinkingLevel": row.least_level}
        if row.status in ("retired", "deprecated", "routed"):
            assert row.replacements and row.date
        assert (row.status == "routed") == (row.routed_to is not None)
    assert lookup(DEFAULT_MODEL).status == "ga" and "flash" in DEFAULT_MODEL


@pytest.mark.parametrize("model, name, thinking, masks, status", ROWS)
def test_request_per_row(fake, model, name, thinking, masks, status):
    info = lookup(model)
    assert (info.name, info.masks, info.status) == (name, masks, status)
    with GeminiClient(api_key=KEY, model=model, base_url=fake.base_url) as client:
        result = client.annotate(rgb(), "segment")
    body = fake.generate_requests[-1].json
    config = body["generationConfig"]
    assert config.get("thinkingConfig") == thinking
    assert not {"thinkingBudget", "thinkingLevel"} <= set(config.get("thinkingConfig") or {})
    text = body["contents"][0]["parts"][1]["text"]
    assert list(body["contents"][0]["parts"][0]) == ["inlineData"]
    if masks == "polygon":
        assert "[y, x] points (y first, then x)" in text and result.mask_order == "yx"
    else:
        assert "[y, x] points" not in text and "segmentation mask in key" in text
        assert result.mask_order is None
    assert result.mask_format == masks
    assert "responseMimeType" not in config  # segmentation is never forced into JSON mode
    assert ("temperature" in config) == model.startswith("gemini-2")


@pytest.mark.parametrize("model", RETIRED)
def test_retired_models_fail_before_any_request(fake, model):
    with pytest.raises(ConfigError, match=r"retired.*use gemini-") as info:
        GeminiClient(api_key=KEY, model=model, base_url=fake.base_url)
    assert "return 404" in str(info.value)
    assert fake.requests == []


def test_default_model_and_env_override(fake, monkeypatch):
    with GeminiClient(api_key=KEY, base_url=fake.base_url) as client:
        assert client.model == DEFAULT_MODEL
    monkeypatch.setenv("VISIONKIT_MODEL", "gemini-3.7-flash")
    with GeminiClient(api_key=KEY, base_url=fake.base_url) as client:
        assert client.model == "gemini-3.7-flash"
    with GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-3.1-flash-lite") as client:
        assert client.model == "gemini-3.1-flash-lite"  # the argument beats the environment
    monkeypatch.setenv("VISIONKIT_MODEL", "gemini-2.0-flash")
    with pytest.raises(ConfigError, match="gemini-2.0-flash is retired"):
        GeminiClient(api_key=KEY, base_url=fake.base_url)


def test_404_names_replacements(fake):
    fake.push_faults(Fault.status(404), Fault.status(404))
    with GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-2.5-flash") as client, \
            pytest.raises(NotFoundError, match="routed to gemini-3.5-flash-lite.*use gemini-3.5-flash-lite"):
        client.annotate(rgb(), "detect")
    with GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-9-flash") as client, \
            pytest.raises(NotFoundError, match="retired .*gemini-3.8-flash"):
        client.annotate(rgb(), "detect")


# -- the shared builder ----------------------------------------------------------------------------------

def test_build_request_is_what_annotate_sends(fake):
    prepared = prepare_image(rgb(), 1024)
    with GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-3.7-flash") as client:
        client.annotate(rgb(), "detect", classes=["cup"])
        expected = build_request(prepared, "detect", "gemini-3.7-flash", client.options(classes=["cup"]))
    assert fake.generate_requests[0].json == expected


@pytest.mark.parametrize("model, media, where", [
    ("gemini-3.8-flash", "low", ("config", "MEDIA_RESOLUTION_LOW")),
    ("gemini-2.5-flash", "high", ("config", "MEDIA_RESOLUTION_HIGH")),
    ("gemini-3.8-flash", "ultra_high", ("part", "MEDIA_RESOLUTION_ULTRA_HIGH")),
    ("my-tuned-model", "medium", ("config", "MEDIA_RESOLUTION_MEDIUM")),
    ("gemini-3.8-flash", None, None),
])
def test_media_resolution(model, media, where):
    body = build_request({"inlineData": {"mimeType": "image/png", "data": ""}}, "detect", model,
                         RequestOptions(media_resolution=media))
    config, part = body["generationConfig"], body["contents"][0]["parts"][0]
    if where is None:
        assert "mediaResolution" not in config and "mediaResolution" not in part
    elif where[0] == "config":
        assert config["mediaResolution"] == where[1] and "mediaResolution" not in part
    else:
        assert part["mediaResolution"] == {"level": where[1]} and "mediaResolution" not in config


def test_ultra_high_needs_a_per_part_model():
    with pytest.raises(ConfigError, match="per-part"):
        plan_request("detect", "gemini-2.5-flash", RequestOptions(media_resolution="ultra_high"))
    with pytest.raises(ConfigError, match="media_resolution must be one of"):
        RequestOptions(media_resolution="huge")


@pytest.mark.parametrize("tier, sent", [(None, None), ("standard", None), ("flex", "flex"),
                                        ("priority", "priority")])
def test_service_tier(fake, tier, sent):
    with GeminiClient(api_key=KEY, base_url=fake.base_url, service_tier=tier) as client:
        client.annotate(rgb(), "detect")
        assert client.timeout[1] == (900.0 if tier == "flex" else 60.0)
        assert client.retry.max_total_wait == (1800.0 if tier == "flex" else 300.0)
    assert fake.generate_requests[0].json.get("serviceTier") == sent
    with pytest.raises(ConfigError, match="service_tier"):
        GeminiClient(api_key=KEY, base_url=fake.base_url, service_tier="cheap")


def test_user_prompt_leaves_the_order_unknown():
    plan = plan_request("segment", "gemini-3.8-flash", RequestOptions(prompt="masks please"))
    assert plan.text == "masks please" and plan.mask_format == "polygon" and plan.mask_order is None


def test_mask_format_none_asks_for_boxes():
    plan = plan_request("segment", "gemini-3.8-flash", RequestOptions(mask_format="none"))
    assert "mask" not in plan.text and plan.mask_format == "none"


# -- polygons parsed with the order known -------------------------------------------------------------

@pytest.mark.parametrize("wh", [(640, 480), (480, 720), (1000, 1000), (37, 91)])
def test_polygon_crop_equals_fillpoly_of_the_descaled_polygon(wh):
    w, h = wh
    poly_yx = [[100, 120], [90, 520], [400, 610], [700, 480], [640, 150]]  # [y, x] on 0-1000
    box = [90, 120, 700, 610]
    answer = json.dumps([{"box_2d": box, "label": "thing", "mask": poly_yx}])
    dets = parse_response(answer, wh, mask_order="yx")
    assert dets.masks is not None and not dets.warnings
    # The oracle: a full-canvas cv2.fillPoly of the polygon descaled to pixels (pixel centres at +0.5),
    # within the polygon's pixel bounds [floor(min), ceil(max)).
    xy = np.array([[x / 1000 * w, y / 1000 * h] for y, x in poly_yx])
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round((xy - 0.5) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    bounds = np.zeros((h, w), bool)
    bounds[int(np.floor(xy[:, 1].min())):int(np.ceil(xy[:, 1].max())),
           int(np.floor(xy[:, 0].min())):int(np.ceil(xy[:, 0].max()))] = True
    assert np.array_equal(dets.mask(0), canvas.astype(bool) & bounds)
    assert (canvas.astype(bool) & ~bounds).sum() <= w + h  # only the pixel row/column past the max edge
    assert dets.mask(0).sum() > 0


def test_known_order_beats_the_guess():
    # A polygon that lies inside the box only when read [x, y]: the guess picks xy, the stated order yx.
    poly = [[100, 600], [100, 900], [300, 900], [300, 600]]
    answer = json.dumps([{"box_2d": [600, 100, 900, 300], "label": "a", "mask": poly}])
    guessed = parse_response(answer, (1000, 1000))
    known = parse_response(answer, (1000, 1000), mask_order="yx")
    ys, xs = np.nonzero(known.mask(0))
    assert ys.min() >= 99 and ys.max() <= 300 and xs.min() >= 599  # rows 100-300: y first
    gys, gxs = np.nonzero(guessed.mask(0))
    assert gys.min() >= 599  # read as [x, y]
