"""The issue's acceptance test: ``visionkit label fixtures/images --task segment --model M --base-url
<fake>`` gets masks for every object with no 400s, against a FakeGemini that enforces each model's rules
(thinking levels and budgets, polygons, seg tokens, usage, flex drops)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from visionkit.cli import main
from visionkit.testing.dialects import DEFAULT_OBJECTS, Dialects
from visionkit.testing.fake_gemini import FakeGemini, Fault, answer_response

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted(p for p in (FIXTURES / "images").iterdir())
KEY = "AQ.acceptance-key-5Kq8ZmT1"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def _check_masks(out: Path) -> dict:
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == len(IMAGES)
    assert len(coco["annotations"]) == len(IMAGES) * len(DEFAULT_OBJECTS)
    for ann in coco["annotations"]:
        assert ann["segmentation"] and ann["segmentation"]["counts"], ann  # a mask for every object
        assert ann["area"] > 0
    return coco


@pytest.mark.parametrize("model", ["gemini-3.7-flash", "gemini-3.8-flash", "gemini-3.6-flash",
                                   "gemini-3.1-flash-lite", "gemini-3.1-pro-preview"])
def test_segment_gets_masks_with_no_400s(tmp_path, model):
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--task",
                             "segment", "--model", model, "--base-url", fake.base_url, "--no-overlays", "-q",
                             "--price-in", "0.5", "--price-out", "3")
        requests = fake.generate_requests
    assert code == 0, err + out
    assert len(requests) == len(IMAGES)  # each image asked once: nothing was rejected and retried
    for req in requests:
        thinking = req.generation_config["thinkingConfig"]
        assert list(thinking) == ["thinkingLevel"] and thinking["thinkingLevel"] != "minimal" \
            or model.endswith("flash-lite")
        assert "[y, x] points (y first, then x)" in req.text
    _check_masks(tmp_path / "o")
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["model"] == model and usage["usage"]["requests"] == len(IMAGES)
    assert usage["usage"]["prompt"] > 1120 * len(IMAGES) and usage["cost_usd"] > 0
    assert "tokens:" in out and "cost: $" in out


def test_gemini_2_5_seg_tokens_are_reasked_as_polygons(tmp_path):
    with FakeGemini(dialects=Dialects(seg_tokens=True), api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--task",
                             "segment", "--model", "gemini-2.5-flash", "--base-url", fake.base_url,
                             "--no-overlays")
        requests = fake.generate_requests
    assert code == 0, err + out
    assert len(requests) == 2 * len(IMAGES)  # each image: the PNG prompt, then the polygon prompt
    first = [r for r in requests if "[y, x] points" not in r.text]
    assert len(first) == len(IMAGES) and all(r.generation_config["thinkingConfig"] == {"thinkingBudget": 0}
                                             for r in requests)
    _check_masks(tmp_path / "o")
    assert "asked again with the polygon prompt" in err and "is routed to" in err
    assert f"{len(IMAGES)} images asked again" in out
    # The saved response is the one used (the polygons), with both requests in its usage.
    saved = json.loads(next((tmp_path / "o" / "responses").glob("*.json")).read_text())
    assert "[[" in saved["candidates"][0]["content"]["parts"][0]["text"]
    assert saved["visionkit"]["usage"]["requests"] == 2 and saved["visionkit"]["maskOrder"] == "yx"
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["usage"]["requests"] == 2 * len(IMAGES) and usage["reasked"] == len(IMAGES)
    # A rerun reuses the saved polygons: nothing is asked, the same masks come out.
    with FakeGemini(dialects=Dialects(seg_tokens=True), api_key=KEY) as fake:
        code, out, _ = run("label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--task",
                           "segment", "--model", "gemini-2.5-flash", "--base-url", fake.base_url,
                           "--no-overlays", "-q")
        assert fake.generate_requests == []
    assert code == 0
    _check_masks(tmp_path / "o")


def test_no_reask_keeps_boxes_and_says_why(tmp_path):
    with FakeGemini(dialects=Dialects(seg_tokens=True), api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--task",
                             "segment", "--model", "gemini-2.5-flash", "--base-url", fake.base_url,
                             "--no-overlays", "--no-reask")
        assert len(fake.generate_requests) == len(IMAGES)
    assert code == 0
    coco = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert coco["annotations"] and not any(isinstance(a["segmentation"], dict) for a in coco["annotations"])
    assert "seg_N> tokens" in err and "asked again" not in err


def test_flex_tier_retries_dropped_requests(tmp_path):
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images" / "square_1024.png"), "--out",
                             str(tmp_path / "o"), "--task", "detect", "--tier", "flex", "--base-url",
                             fake.base_url, "--no-overlays")
        assert [r.json.get("serviceTier") for r in fake.generate_requests] == ["flex", "flex"]
        assert fake.dialects.flex_dropped == 1
    assert code == 0, err
    assert "1 retries" in out


def test_retired_model_fails_before_any_request(tmp_path):
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images"), "--out", str(tmp_path / "o"), "--model",
                             "gemini-2.0-flash", "--base-url", fake.base_url)
        assert fake.requests == []
    assert code == 2 and "retired" in err and "gemini-3.8-flash" in err
    assert not (tmp_path / "o").exists()


def test_media_resolution_flag_reaches_the_request(tmp_path):
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images" / "square_1024.png"), "--out",
                             str(tmp_path / "o"), "--task", "detect", "--media-resolution", "low",
                             "--base-url", fake.base_url, "--no-overlays")
        config = fake.generate_requests[0].generation_config
    assert code == 0, err
    assert config["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())["usage"]
    assert usage["prompt"] < 1120  # 280 image tokens at low


def test_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["label", "--help"])
    text = capsys.readouterr().out
    for flag in ("--media-resolution", "--tier", "--no-reask", "--price-in", "--price-out", "--model"):
        assert flag in text
    assert "gemini-3.8-flash" in text and "default standard" in text


def _seg_tokens_then(second):
    """A responder: seg tokens for the PNG prompt; ``second(request)`` for the polygon re-ask."""
    def respond(request):
        if "[y, x] points" in request.text:
            return second(request)
        return answer_response([{"box_2d": [100, 100, 600, 700], "label": "cup",
                                 "mask": "<start_of_mask><seg_4><seg_20><end_of_mask>"}])
    return respond


def _cup(mask):
    return answer_response([{"box_2d": [100, 100, 600, 700], "label": "cup", "mask": mask}])


@pytest.mark.parametrize("second, used, says", [
    (lambda r: Fault.status(400), "first", "asking again with the polygon prompt failed"),
    (lambda r: _cup("gimme_mask_for_this"), "first", "the first answer is kept"),  # a placeholder string
    (lambda r: _cup([[100, 100], [100, 700], [600, 400]]), "second", "that answer is used"),
])
def test_reask_outcomes(tmp_path, second, used, says):
    with FakeGemini(_seg_tokens_then(second), api_key=KEY) as fake:
        code, out, err = run("label", str(FIXTURES / "images" / "square_1024.png"), "--out",
                             str(tmp_path / "o"), "--task", "segment", "--model", "gemini-2.5-flash",
                             "--base-url", fake.base_url, "--no-overlays")
        assert len(fake.generate_requests) == 2  # one re-ask, never more
    assert code == 0, err
    assert says in err
    saved = json.loads((tmp_path / "o" / "responses" / "square_1024.json").read_text())
    text = saved["candidates"][0]["content"]["parts"][0]["text"]
    assert ("seg_4" in text) == (used == "first")
    assert saved["visionkit"]["reasked"] and saved["visionkit"]["requests"] == (2 if used == "second"
                                                                                 or "kept" in says else 1)
    coco = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert isinstance(coco["annotations"][0]["segmentation"], dict) == (used == "second")
