"""Issue 15's "done when", through the command line against FakeGemini(dialects=True): Gemini 4 ids and an
id no table knows get masks at the least thinking they accept, a model that does not think gets no
thinkingConfig, a wrong key sends no image, a routed id names the model that answered, usage.json holds
every billed token (probes, re-asks, batch answers), the learned cache survives a restart and a corrupt one
does not stop a run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from visionkit.cli import main
from visionkit.core.usage import Usage
from visionkit.gemini.fleet import PROBE_TEXT
from visionkit.gemini.model_cache import cache_path
from visionkit.testing.dialects import DEFAULT_OBJECTS, THOUGHTS
from visionkit.testing.fake_cli import log_request
from visionkit.testing.fake_gemini import FakeGemini

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted((FIXTURES / "images").iterdir())
KEY = "AQ.fleet-cli-key-Wq3Zr8Tm"


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


@pytest.fixture
def fake():
    with FakeGemini(dialects=True, api_key=KEY) as server:
        yield server


def label(fake, out, model, *extra):
    return run("label", FIXTURES / "images", "--out", out, "--task", "segment", "--model", model,
               "--base-url", fake.base_url, "--no-overlays", "-q", *extra)


def image_requests(fake):
    return [r for r in fake.generate_requests if r.image_wh is not None]


def summed(usages) -> dict:
    total = Usage()
    for u in usages:
        total.add(Usage.of(u))
    return total.to_json()


def check_masks(out: Path) -> None:
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == len(IMAGES)
    assert len(coco["annotations"]) == len(IMAGES) * len(DEFAULT_OBJECTS)
    assert all(a["segmentation"] and a["area"] > 0 for a in coco["annotations"])


@pytest.mark.parametrize("model", ["gemini-4-argon", "gemini-4-neon", "gemini-4-hydrogen",
                                   "gemini-4.2-flash-exp"])
def test_gemini_4_and_an_unknown_id_get_masks_at_the_least_thinking(fake, tmp_path, model):
    code, out, err = label(fake, tmp_path / "o", model, "--price-in", "1", "--price-out", "5")
    assert code == 0, err + out
    check_masks(tmp_path / "o")
    images = image_requests(fake)
    assert len(images) == len(IMAGES)  # no image request was refused: at most one may be, here none is
    assert all(r.generation_config["thinkingConfig"] == {"thinkingLevel": "low"} for r in images)
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["images"]["thoughts"] == THOUGHTS["low"] * len(IMAGES)  # low, not the model's default
    # usage.json holds exactly every answered request's usageMetadata, probes included.
    assert usage["usage"] == summed(fake.billed)
    probes = [r for r in fake.generate_requests if r.text == PROBE_TEXT]
    if model == "gemini-4.2-flash-exp":  # minimal refused without a list -> one level up
        assert [p.generation_config["thinkingConfig"] for p in probes] == [{"thinkingLevel": "minimal"},
                                                                            {"thinkingLevel": "low"}]
        assert usage["probes"]["requests"] == 1 and "learned" in usage["model_line"]
        assert "1 of them text-only probes" in out
    else:
        assert probes == [] and usage["probes"]["requests"] == 0
    assert f"{model}: " in err and "sending thinkingLevel low" in err  # the up-front line
    assert "model: " + usage["model_line"] in out  # ... and again in the summary
    assert usage["cost_usd"] == pytest.approx(Usage.of(usage["usage"]).cost(1, 5), abs=1e-6)


def test_the_learned_setting_survives_a_restart(fake, tmp_path):
    code, _, err = label(fake, tmp_path / "a", "gemini-4.2-flash-exp")
    assert code == 0, err
    assert json.loads(cache_path().read_text())["models"]["gemini-4.2-flash-exp"]["sent"] == \
        {"thinkingLevel": "low"}
    fake.clear()
    code, out, err = label(fake, tmp_path / "b", "gemini-4.2-flash-exp")  # a new run, a new client
    assert code == 0, err
    assert [r for r in fake.generate_requests if r.image_wh is None] == []  # no probe
    assert len(fake.generate_requests) == len(IMAGES) and len(fake.billed) == len(IMAGES)  # no 400
    assert "learned " in err
    fake.clear()
    code, _, err = label(fake, tmp_path / "c", "gemini-4.2-flash-exp", "--refresh-models")
    assert code == 0 and len([r for r in fake.generate_requests if r.text == PROBE_TEXT]) == 2


def test_a_corrupt_cache_does_not_stop_a_run(fake, tmp_path):
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text('{"version": 1, "models": {"gemini-4.2-flash-exp": ')
    code, out, err = label(fake, tmp_path / "o", "gemini-4.2-flash-exp")
    assert code == 0, err
    assert "was corrupt" in err and list(cache_path().parent.glob("models.json.corrupt-*"))
    check_masks(tmp_path / "o")


@pytest.mark.parametrize("stamp", ['"abc"', "[1]", "NaN", "1e300"])
def test_an_entry_with_a_bad_time_does_not_stop_a_run(fake, tmp_path, stamp):
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text('{"version": 1, "models": {"gemini-4.2-flash-exp": {"time": ' + stamp
                            + ', "sent": {"thinkingLevel": "high"}}}}')
    code, out, err = label(fake, tmp_path / "o", "gemini-4.2-flash-exp")
    assert code == 0, err
    asked = [r for r in fake.generate_requests if r.text == PROBE_TEXT]
    assert "is not used" in err and len(asked) == 2  # learned again, not the bad entry's high
    assert json.loads(cache_path().read_text())["models"]["gemini-4.2-flash-exp"]["sent"] == \
        {"thinkingLevel": "low"}
    check_masks(tmp_path / "o")


def test_a_model_that_does_not_think_gets_no_thinking_config(fake, tmp_path):
    code, out, err = label(fake, tmp_path / "o", "gemma-3-27b-it")
    assert code == 0, err + out
    assert len(image_requests(fake)) == len(IMAGES)
    assert all("thinkingConfig" not in r.generation_config for r in fake.generate_requests)
    assert "does not think (models.get)" in err and "sending no thinkingConfig" in err


@pytest.mark.parametrize("mode", [[], ["--batch", "--poll-interval", "0.001"], ["--dry-run"]])
def test_a_wrong_key_sends_no_image(fake, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("GEMINI_API_KEY", "AQ.not-the-right-key-00000")
    code, out, err = label(fake, tmp_path / "o", "gemini-3.8-flash", *mode)
    assert code != 0
    assert fake.generate_requests == [] and fake.batch.creates == []
    assert err.count("API key was refused") == 1 and "Nothing was sent" in err
    assert not (tmp_path / "o" / "annotations.json").exists()
    assert not (tmp_path / "o").exists() or mode == ["--dry-run"]


@pytest.mark.parametrize("model, says", [("gemini-9-nonexistent", "is not found"),
                                         ("gemini-embedding-2", "does not offer generateContent")])
def test_an_unknown_model_stops_before_any_image(fake, tmp_path, model, says):
    fake.models["gemini-9-nonexistent"] = None
    code, out, err = label(fake, tmp_path / "o", model)
    assert code == 2 and says in err and fake.generate_requests == []


def test_a_routed_id_names_the_model_that_answered(fake, tmp_path):
    code, out, err = label(fake, tmp_path / "o", "gemini-3.7-flash")
    assert code == 0, err
    assert err.count("requested gemini-3.7-flash, answered by gemini-3.8-flash") == 1  # said once
    assert f"{len(IMAGES)} answers came from gemini-3.8-flash, not gemini-3.7-flash" in out
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["answered_by"] == {"gemini-3.8-flash": len(IMAGES)}
    for saved in (tmp_path / "o" / "responses").glob("*.json"):
        assert json.loads(saved.read_text())["visionkit"]["answeredBy"] == "gemini-3.8-flash"


def test_a_version_suffix_is_the_same_model(tmp_path):
    from visionkit.run.model_check import answered_by

    assert answered_by("gemini-3.8-flash", "gemini-3.8-flash-001") is None
    assert answered_by("gemini-3.8-flash", "models/gemini-3.8-flash") is None
    assert answered_by("gemini-3.7-flash", "gemini-3.8-flash") == "gemini-3.8-flash"
    assert answered_by("gemini-3.7-flash", None) is None and answered_by("gemini-3.7-flash", "") is None


def test_reasks_count_in_usage(tmp_path):
    from visionkit.testing.dialects import Dialects

    with FakeGemini(dialects=Dialects(seg_tokens=True), api_key=KEY) as fake:
        code, out, err = label(fake, tmp_path / "o", "gemini-2.5-flash")
        billed = list(fake.billed)
    assert code == 0, err
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["usage"] == summed(billed) and usage["usage"]["requests"] == 2 * len(IMAGES)
    per_image = [json.loads(p.read_text())["visionkit"]["usage"]
                 for p in (tmp_path / "o" / "responses").glob("*.json")]
    assert summed(per_image) == usage["images"] == usage["usage"]


def test_dry_run_says_the_model_line(fake, tmp_path, monkeypatch):
    code, out, err = label(fake, tmp_path / "o", "gemini-4.2-flash-exp", "--dry-run")
    assert code == 0 and out.startswith("model    gemini-4.2-flash-exp: unknown;") and "probe" in out
    assert [r.kind for r in fake.requests] == ["model_get"]  # free, and nothing billed
    monkeypatch.delenv("GEMINI_API_KEY")
    code, out, err = label(fake, tmp_path / "o", "gemini-4-neon", "--dry-run")
    assert code == 0 and "gemini-4-neon: GA; in the table" in out and "no API key" in out


# -- Batch on the same footing -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gemini-4.2-flash-exp", "gemini-4-neon"])
def test_batch_lines_carry_the_learned_setting_and_usage_is_summed(fake, tmp_path, model):
    logged = io.StringIO()
    fake.log = lambda record: log_request(record, logged)
    code, out, err = label(fake, tmp_path / "o", model, "--batch", "--poll-interval", "0.001",
                           "--price-in", "2", "--price-out", "10")
    assert code == 0, err + out
    check_masks(tmp_path / "o")
    lines = [line for job in fake.batch.jobs for _, line in job.requests] or None
    assert lines is None or all(line["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low"}
                                for line in lines)
    assert image_requests(fake) == []  # every image went through the batch job
    assert all(j.failed_lines == 0 for j in fake.batch.jobs)  # none failed on thinking
    usage = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert usage["usage"] == summed(fake.billed)  # batch answers + probes: every billed token
    assert usage["images"]["requests"] == len(IMAGES) and usage["batch_answers"] == len(IMAGES)
    assert usage["service_tier"] == "batch"
    images, probes = Usage.of(usage["images"]), Usage.of(usage["probes"])
    assert usage["cost_usd"] == pytest.approx(images.cost(2, 10) / 2 + probes.cost(2, 10), abs=1e-6)
    assert "Batch API price, half of $2/$10" in out and "tokens:" in out
    assert err.count(f"note: {model}: ") == 1 and "sending thinkingLevel low" in err  # up front, once
    assert logged.getvalue().count("batch line " + model) == len(IMAGES)  # --log shows batch lines
    assert "batch_create POST" in logged.getvalue()
    code, out, err = run("batch", "status", tmp_path / "o", "--base-url", fake.base_url)
    assert code == 0 and f"tokens so far: {Usage.of(usage['images']).describe()}" in out


def test_batch_lines_follow_the_dialect(fake, tmp_path):
    # The fake speaks dialects on batch lines too: a thinking level the model refuses fails the line.
    from visionkit.testing.fake_generate import GenerateEndpoint  # noqa: F401  (documented home)
    from visionkit.testing.fake_records import RecordedRequest, _Headers

    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "minimal"}}}
    record = RecordedRequest(index=-1, kind="batch_line", method="POST", path="", query={},
                             headers=_Headers(), body_size=0, json=body, model="gemini-4-neon")
    response, error = fake._answer_line(record)
    assert response is None and "THINKING_LEVEL_MINIMAL" in error["message"]
    body["generationConfig"]["thinkingConfig"] = {"thinkingLevel": "low"}
    response, error = fake._answer_line(record)
    assert error is None and response["usageMetadata"]["thoughtsTokenCount"] == THOUGHTS["low"]
    routed = RecordedRequest(index=-1, kind="batch_line", method="POST", path="", query={},
                             headers=_Headers(), body_size=0, json=body, model="gemini-3.5-flash")
    assert fake._answer_line(routed)[0]["modelVersion"] == "gemini-3.6-flash"


# -- visionkit models ---------------------------------------------------------------------------------------

def test_models_command(fake, tmp_path):
    from visionkit.cli import build_parser

    assert "models" in build_parser().format_help()  # visionkit --help lists it
    label(fake, tmp_path / "o", "gemini-4.2-flash-exp")
    code, out, err = run("models")
    assert code == 0
    assert "gemini-4-argon" in out and "routed" in out and "gemini-4.2-flash-exp" in out
    assert "learned" in out and "thinkingLevel low" in out
    code, out, err = run("models", "--online", "--base-url", fake.base_url)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "NOT IN THE TABLE" in rows["gemma-3-27b-it"] and "Gemini 4 Argon" in rows["gemini-4-argon"]
    assert "learned" in rows["gemini-4.2-flash-exp"]
    assert "no" in rows["gemini-embedding-2"].split()[1]


def test_a_reask_after_a_routed_answer_says_which_model_answered(tmp_path):
    from visionkit.testing.dialects import DIALECTS, Dialect, Dialects

    routed = Dialect(r"gemini-2\.5-flash", budget=True, budget_zero=True, masks="png", image_tokens=258,
                     routed_to="gemini-3.5-flash-lite")
    with FakeGemini(dialects=Dialects(seg_tokens=True, table=(routed, *DIALECTS)), api_key=KEY) as fake:
        code, out, err = run("label", FIXTURES / "images" / "square_1024.png", "--out", tmp_path / "o",
                             "--model", "gemini-2.5-flash", "--base-url", fake.base_url, "--no-overlays")
    assert code == 0, err
    assert "asked again with the polygon prompt" in err
    assert "(the answer came from gemini-3.5-flash-lite, not gemini-2.5-flash)" in err
    assert "requested gemini-2.5-flash, answered by gemini-3.5-flash-lite" in err


def test_a_batch_rerun_from_kept_results_bills_the_same(fake, tmp_path):
    """Kept results (OUT/.results.jsonl) carry a batch answer's usage: a rerun re-parses nothing and its
    usage.json counts the batch answers as the first run did."""
    code, out, err = label(fake, tmp_path / "o", "gemini-4-neon", "--batch", "--poll-interval", "0.001")
    assert code == 0, err + out
    first = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert (tmp_path / "o" / ".results.jsonl").is_file()
    code, out, err = label(fake, tmp_path / "o", "gemini-4-neon", "--batch", "--poll-interval", "0.001")
    assert code == 0, err + out
    again = json.loads((tmp_path / "o" / "usage.json").read_text())
    assert again["batch_answers"] == first["batch_answers"] == len(IMAGES)
    assert again["images"] == first["images"]
