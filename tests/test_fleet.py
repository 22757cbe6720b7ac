"""Preflight and learning (issue 15): models.get before any image, the least thinking a model accepts
learned from the API's own 400s, and the per-user cache, all against FakeGemini over real HTTP."""

from __future__ import annotations

import json
import os
import threading

import pytest

from visionkit.errors import AuthError, ConfigError, NotFoundError, RateLimitError
from visionkit.gemini import GeminiClient
from visionkit.gemini.fleet import PROBE_TEXT, describe_thinking, preflight
from visionkit.gemini.model_cache import MAX_AGE_DAYS, ModelCache, cache_path
from visionkit.gemini.models import MODELS
from visionkit.gemini.thinking import first_guess, next_setting
from visionkit.testing.dialects import THOUGHTS, Dialects
from visionkit.testing.fake_gemini import FakeGemini, Fault
from visionkit.testing.fake_models import model_resource

KEY = "AQ.fleet-key-7Hd2Lp9QxZ"


@pytest.fixture
def fake():
    with FakeGemini(dialects=True, api_key=KEY) as server:
        yield server


def client_for(fake, model, **kw):
    return GeminiClient(api_key=KEY, model=model, base_url=fake.base_url, max_retries=0, **kw)


def probes(fake):
    return [r for r in fake.generate_requests if r.text == PROBE_TEXT]


# -- next_setting: what to try after each 400 ---------------------------------------------------------------

LISTED = "'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high."
VERTEX = "Thinking level THINKING_LEVEL_MINIMAL is unsupported for this model."
VERTEX_LOW = "Thinking level THINKING_LEVEL_LOW is unsupported for this model."
NO_LEVELS = "Thinking level is not supported for this model."
BUDGET_0 = "Budget 0 is invalid. This model only works in thinking mode."
NO_BUDGET = "Thinking budget is not supported for this model. Use thinking level instead."
RANGE = "The thinking budget must be between 512 and 24576."
NO_THINKING = "Thinking is not enabled for models/gemma-3-27b-it."


@pytest.mark.parametrize("message, sent, tried, expected", [
    (LISTED, {"thinkingLevel": "minimal"}, [], {"thinkingLevel": "low"}),
    (VERTEX, {"thinkingLevel": "minimal"}, [], {"thinkingLevel": "low"}),  # no list: one level up
    (VERTEX_LOW, {"thinkingLevel": "low"}, [{"thinkingLevel": "minimal"}], {"thinkingLevel": "medium"}),
    (NO_LEVELS, {"thinkingLevel": "low"}, [], {"thinkingBudget": 0}),  # budget-only: the least budget
    (BUDGET_0, {"thinkingBudget": 0}, [{"thinkingLevel": "low"}], {"thinkingBudget": 128}),
    (RANGE, {"thinkingBudget": 0}, [], {"thinkingBudget": 512}),
    (NO_BUDGET, {"thinkingBudget": 0}, [], {"thinkingLevel": "minimal"}),
    (NO_BUDGET, {"thinkingBudget": 0}, [{"thinkingLevel": "minimal"}], {"thinkingLevel": "low"}),
    (NO_THINKING, {"thinkingLevel": "low"}, [], None),  # the model does not think: nothing
    ("Thinking level THINKING_LEVEL_XHIGH is unsupported for this model.", {"thinkingLevel": "xhigh"},
     [], "stop"),  # nothing higher to try
    ("Invalid value at 'contents[0]'.", {"thinkingLevel": "low"}, [], "stop"),  # not about thinking
    ("", {"thinkingLevel": "low"}, [], "stop"),
])
def test_next_setting_table(message, sent, tried, expected):
    found = next_setting(message, sent, tried)
    if expected == "stop":
        assert found is None
    else:
        assert found is not None and found[0] == expected, found


def test_next_setting_never_drops_thinking_for_a_refused_level():
    # Walking up from minimal with a message that never lists values ends in an error, never in "none".
    sent, tried = {"thinkingLevel": "minimal"}, []
    seen = []
    while (found := next_setting(f"Thinking level THINKING_LEVEL_{sent['thinkingLevel'].upper()} is "
                                 "unsupported for this model.", sent, tried)) is not None:
        tried.append(sent)
        sent = found[0]
        seen.append(sent)
    assert seen == [{"thinkingLevel": lv} for lv in ("low", "medium", "high", "xhigh")]
    assert None not in seen


@pytest.mark.parametrize("model, level", [("gemini-4.2-flash-exp", "minimal"),
                                          ("gemini-5-flash-lite", "minimal"),
                                          ("gemini-5-pro", "low"), ("my-tuned-model", "low")])
def test_first_guess(model, level):
    assert first_guess(model) == {"thinkingLevel": level}


# -- preflight against the fake ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gemini-4-argon", "gemini-4-hydrogen", "gemini-4-neon",
                                   "gemini-3.8-flash"])
def test_a_sourced_row_wins_and_sends_no_probe(fake, model):
    with client_for(fake, model) as client:
        plan = preflight(client)
    assert plan.sent == {"thinkingLevel": "low"} and plan.status == "GA"
    assert "in the table" in plan.line() and "thinkingLevel low" in plan.line()
    assert [r.kind for r in fake.requests] == ["model_get"]  # one free GET, no probe
    assert not cache_path().exists()


def test_unknown_thinking_model_is_learned_by_probes(fake):
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        plan = preflight(client)
        assert client.thinking.get("gemini-4.2-flash-exp") == {"thinkingLevel": "low"}
    sent = [r.generation_config.get("thinkingConfig") for r in probes(fake)]
    assert sent == [{"thinkingLevel": "minimal"}, {"thinkingLevel": "low"}]  # minimal refused, low taken
    assert all(r.image_wh is None for r in probes(fake))  # text only
    assert plan.status == "learned" and plan.sent == {"thinkingLevel": "low"}
    assert plan.usage.requests == 1 and plan.usage.thoughts == THOUGHTS["low"]  # only the 200 is billed
    line = plan.line()
    assert line.startswith("gemini-4.2-flash-exp: learned; not in the table; thinks (models.get); "
                           "thinkingLevel minimal refused ") and line.endswith("sending thinkingLevel low")
    entry = json.loads(cache_path().read_text())["models"]["gemini-4.2-flash-exp"]
    assert entry["sent"] == {"thinkingLevel": "low"} and entry["thinks"] is True
    assert entry["thinks_source"] == "models.get" and "probe" in entry["sent_source"]
    assert entry["refused"][0]["config"] == {"thinkingLevel": "minimal"}
    assert "THINKING_LEVEL_MINIMAL is unsupported" in entry["refused"][0]["source"]
    assert entry["date"] and KEY not in cache_path().read_text()


def test_the_cache_survives_a_restart(fake):
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        preflight(client)
    fake.clear()
    with client_for(fake, "gemini-4.2-flash-exp") as client:  # a new process would read the same file
        plan = preflight(client)
    assert probes(fake) == [] and plan.sent == {"thinkingLevel": "low"}
    assert "learned " in plan.line() and "refused" in plan.line()
    fake.clear()
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        preflight(client, refresh=True)  # --refresh-models
    assert len(probes(fake)) == 2


@pytest.mark.parametrize("sent", ["low", {"thinkingLevel": "low", "thinkingBudget": 0}, {"thinkingLevel": 3},
                                  {"thinkingBudget": True}, {"thinkingBudget": -5}, [1],
                                  None])  # None: models.get says this model thinks
def test_a_cache_entry_that_is_not_a_setting_is_learned_again(fake, tmp_path, sent):
    cache = ModelCache(tmp_path / "m.json")
    cache.record("gemini-4.2-flash-exp", {"sent": sent})
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        plan = preflight(client, cache=cache)
    assert plan.sent == {"thinkingLevel": "low"} and len(probes(fake)) == 2


def test_an_expired_entry_is_learned_again(fake, tmp_path):
    clock = [1_800_000_000.0]
    cache = ModelCache(tmp_path / "m.json", clock=lambda: clock[0])
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        preflight(client, cache=cache)
    clock[0] += (MAX_AGE_DAYS + 1) * 86400
    assert cache.get("gemini-4.2-flash-exp") is None and cache.entries()["gemini-4.2-flash-exp"]["stale"]
    fake.clear()
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        preflight(client, cache=cache)
    assert len(probes(fake)) == 2


def test_a_model_that_does_not_think_gets_no_field(fake):
    with client_for(fake, "gemma-3-27b-it") as client:
        plan = preflight(client)
    assert plan.sent is None and probes(fake) == [] and "does not think (models.get)" in plan.line()


def test_thinking_unknown_and_not_supported_ends_with_no_field(fake):
    fake.models["gemma-3-1b-it"] = model_resource("gemma-3-1b-it", thinking=None)  # models.get is silent
    with client_for(fake, "gemma-3-1b-it") as client:
        plan = preflight(client)
    sent = [r.generation_config.get("thinkingConfig") for r in probes(fake)]
    assert sent == [{"thinkingLevel": "low"}, None]
    assert plan.sent is None


def test_a_budget_only_model_gets_its_least_budget():
    fake_table = Dialects().table
    with FakeGemini(dialects=Dialects(table=fake_table), api_key=KEY) as fake:
        fake.models["acme-reasoner-2"] = model_resource("acme-reasoner-2", thinking=True)
        from visionkit.testing.dialects import Dialect

        fake.dialects.table = (Dialect(r"acme-reasoner.*", budget=True, budget_zero=False), *fake_table)
        with client_for(fake, "acme-reasoner-2") as client:
            plan = preflight(client)
        sent = [r.generation_config.get("thinkingConfig") for r in probes(fake)]
    assert sent == [{"thinkingLevel": "low"}, {"thinkingBudget": 0}, {"thinkingBudget": 128}]
    assert plan.sent == {"thinkingBudget": 128}


def test_a_model_that_refuses_every_level_stops_the_run():
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        from visionkit.testing.dialects import Dialect

        fake.dialects.table = (Dialect(r"stubborn.*", ("ultra",), list_allowed=False), *fake.dialects.table)
        fake.models["stubborn-1"] = model_resource("stubborn-1", thinking=True)
        with client_for(fake, "stubborn-1") as client, \
                pytest.raises(ConfigError, match="refused thinkingLevel low, thinkingLevel medium"):
            preflight(client)
        assert all(r.image_wh is None for r in fake.generate_requests)


def test_wrong_key_stops_before_anything(fake):
    wrong = GeminiClient(api_key="AQ.wrong-key-000000000", model="gemini-3.8-flash", base_url=fake.base_url)
    with wrong as c, pytest.raises(AuthError, match="API key was refused .*Nothing was sent") as info:
        preflight(c)
    assert "wrong-key" not in str(info.value)
    assert fake.generate_requests == []


@pytest.mark.parametrize("model, match", [("gemini-9-nonexistent", "not found"),
                                          ("gemini-embedding-2", "does not offer generateContent")])
def test_unknown_model_or_no_generate_content_stops(fake, model, match):
    if model == "gemini-9-nonexistent":
        fake.models[model] = None
    with client_for(fake, model) as client, pytest.raises((NotFoundError, ConfigError), match=match):
        preflight(client)
    assert fake.generate_requests == []


def test_network_failure_is_a_notice_not_a_stop(tmp_path):
    with FakeGemini(dialects=True, api_key=KEY) as fake:
        url = fake.base_url
    with GeminiClient(api_key=KEY, model="gemini-4-argon", base_url=url, max_retries=0, timeout=2) as client:
        plan = preflight(client)
    assert plan.sent == {"thinkingLevel": "low"}
    assert any("could not ask the Models API" in n for n in plan.notices)


def test_dry_run_sends_no_probe(fake):
    with client_for(fake, "gemini-4.2-flash-exp") as client:
        plan = preflight(client, probe=False)
    assert probes(fake) == [] and plan.status == "unknown" and "probe" in plan.line()


# -- a cached setting the API or its own record contradicts (review M2) --------------------------------------

@pytest.mark.parametrize("model, entry, expected_sent, expected_probes", [
    # models.get says gemma does not think: a cached level is dropped, no field is sent, no probe
    ("gemma-3-27b-it", {"sent": {"thinkingLevel": "high"}}, None, 0),
    ("gemma-3-27b-it", {"sent": {"thinkingBudget": 0}}, None, 0),
    ("gemma-3-27b-it", {"sent": None}, None, 0),  # agrees with models.get: kept
    # the entry's sent is in its own refused list: learned again
    ("gemini-4.2-flash-exp", {"sent": {"thinkingLevel": "minimal"},
                              "refused": [{"config": {"thinkingLevel": "minimal"}, "date": "2026-12-01"}]},
     {"thinkingLevel": "low"}, 2),
    ("gemini-4.2-flash-exp", {"sent": {"thinkingLevel": "medium"},
                              "refused": [{"config": {"thinkingLevel": "minimal"}}]},  # consistent: kept
     {"thinkingLevel": "medium"}, 0),
])
def test_a_cached_setting_models_get_or_its_own_record_contradicts_is_dropped(fake, tmp_path, model, entry,
                                                                               expected_sent,
                                                                               expected_probes):
    cache = ModelCache(tmp_path / "m.json")
    cache.record(model, entry)
    with client_for(fake, model) as client:
        plan = preflight(client, cache=cache)
        assert client.thinking.get(model) == expected_sent
    assert plan.sent == expected_sent and len(probes(fake)) == expected_probes
    assert cache.get(model)["sent"] == expected_sent


@pytest.mark.parametrize("model, cached, learned", [
    ("gemma-3-27b-it", {"thinkingLevel": "high"}, None),  # stale thinking cache, models.get silent
    ("gemini-4.2-flash-exp", {"thinkingLevel": "minimal"}, {"thinkingLevel": "low"}),  # the dialect's least
])
def test_an_in_run_400_correction_is_remembered(fake, tmp_path, model, cached, learned):
    from visionkit.testing.fake_models import model_resource as resource

    fake.models[model] = resource(model, thinking=None)  # models.get cannot tell: the cache is used
    cache = ModelCache(tmp_path / "m.json")
    cache.record(model, {"sent": cached})
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 40)).save(image)
    with client_for(fake, model) as client:
        assert preflight(client, cache=cache).sent == cached
        client.detect(image)  # 400 for the cached setting, retried with the fix, answered
        client.detect(image)  # the fix is kept for the run, and written once
    sent = [r.generation_config.get("thinkingConfig") for r in fake.generate_requests if r.image_wh]
    assert sent == [cached, learned, learned]
    entry = cache.get(model)
    assert entry["sent"] == learned and "retry" in entry["sent_source"]
    assert entry["refused"][-1]["config"] == cached and entry["refused"][-1]["source"].startswith("400: ")
    fake.clear()
    with client_for(fake, model) as client:  # the next run starts with the working setting
        assert preflight(client, cache=cache).sent == learned


# -- the cache file ------------------------------------------------------------------------------------------

def test_cache_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_path() == tmp_path / "visionkit" / "models.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert cache_path().parent.parent.is_absolute()


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 1, "models": []}', b"\xff\xfe",
                                     b'{"version": 99, "models": {}}', b""])
def test_a_corrupt_cache_is_set_aside(tmp_path, content):
    path = tmp_path / "models.json"
    path.write_bytes(content)
    cache = ModelCache(path)
    assert cache.get("x") is None
    assert cache.warnings and "corrupt" in cache.warnings[0] or "cannot be read" in cache.warnings[0]
    assert cache.record("x", {"sent": None})
    assert json.loads(path.read_text())["models"]["x"]["sent"] is None


HOUR = 3600.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize("field, value", [
    ("time", "abc"), ("time", [1]), ("time", "nan"), ("time", None), ("time", True), ("time", {"t": 1}),
    ("time", float("nan")), ("time", float("inf")), ("time", 1e300), ("time", 10 ** 400), ("time", -1.0),
    ("time", NOW + 2 * HOUR),  # later than now + the skew: never stale
    ("sent", "low"), ("sent", {"thinkingLevel": [1]}), ("sent", {"thinkingBudget": 1.5}),
    ("refused", "x"), ("refused", [1]), ("refused", [{"config": "low"}]), ("refused", {"config": None}),
    ("missing time", None),
])
def test_an_invalid_entry_is_ignored_with_a_warning(tmp_path, field, value):
    path = tmp_path / "models.json"
    good = {"time": NOW - HOUR, "date": "2027-01-15", "sent": {"thinkingLevel": "low"}, "refused": []}
    bad = dict(good)
    if field == "missing time":
        del bad["time"]
    else:
        bad[field] = value
    text = json.dumps({"version": 1, "models": {"bad": bad, "good": good}})
    path.write_text(text)
    cache = ModelCache(path, clock=lambda: NOW)
    entries = cache.entries()  # never raises
    assert entries["bad"]["stale"] and not entries["good"]["stale"]
    assert cache.get("bad") is None and cache.get("good")["sent"] == {"thinkingLevel": "low"}
    assert any("'bad' is not used" in w for w in cache.warnings)
    assert path.read_text() == text  # the file is not set aside: the good entries stay
    assert cache.record("bad", {"sent": None}) and ModelCache(path, clock=lambda: NOW).get("bad") is not None


@pytest.mark.parametrize("time_value", ['"abc"', "[1]", "NaN", "1e300"])
def test_an_invalid_time_does_not_stop_the_models_command(monkeypatch, tmp_path, time_value):
    import io

    from visionkit.cli import main

    cache_path().parent.mkdir(parents=True, exist_ok=True)
    entry = '{"gemini-x-exp": {"time": ' + time_value + ', "sent": null}}'
    cache_path().write_text('{"version": 1, "models": ' + entry + "}")
    out, err = io.StringIO(), io.StringIO()
    assert main(["models"], stdout=out, stderr=err) == 0
    assert "gemini-x-exp" in out.getvalue() and "learned (expired)" in out.getvalue()
    assert "is not used" in err.getvalue()


def test_a_corrupt_cache_another_run_just_replaced_is_not_set_aside(tmp_path):
    # The reader saw a corrupt file; before it takes the lock, another run writes a good one: kept.
    path = tmp_path / "models.json"
    path.write_text("{not json")

    good = tmp_path / "other" / "models.json"
    ModelCache(good).record("m", {"sent": {"thinkingLevel": "low"}})

    class Racing(ModelCache):
        def _locked(self):
            if good.exists():
                os.replace(good, path)  # the other run's atomic write lands first
            return super()._locked()

    cache = Racing(path)
    assert cache.get("m")["sent"] == {"thinkingLevel": "low"}
    assert not list(tmp_path.glob("models.json.corrupt-*")) and not cache.warnings


def test_two_set_asides_keep_both_files(tmp_path):
    path = tmp_path / "models.json"
    for content in ("{one", "{two"):
        path.write_text(content)
        assert ModelCache(path).get("x") is None
    kept = sorted(p.read_text() for p in tmp_path.glob("models.json.corrupt-*"))
    assert kept == ["{one", "{two"]


def test_concurrent_writers_keep_every_entry(tmp_path):
    path = tmp_path / "models.json"
    errors = []

    def write(i):
        try:
            ModelCache(path).record(f"model-{i}", {"sent": {"thinkingLevel": "low"}})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(json.loads(path.read_text())["models"]) == {f"model-{i}" for i in range(16)}


def test_an_unwritable_cache_is_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ModelCache(blocker / "sub" / "models.json")
    assert cache.record("x", {"sent": None}) is False and "cannot be written" in cache.warnings[0]


def test_the_key_never_reaches_the_cache(tmp_path):
    cache = ModelCache(tmp_path / "m.json")
    cache.record("x", {"refused": [{"source": f"400: echo {KEY}"}]},
                 redact=lambda t: t.replace(KEY, "[redacted]"))
    assert KEY not in (tmp_path / "m.json").read_text()


def test_describe_thinking():
    assert describe_thinking(None) == "no thinkingConfig"
    assert describe_thinking({"thinkingLevel": "low"}) == "thinkingLevel low"
    assert describe_thinking({"thinkingBudget": 0}) == "thinkingBudget 0"


def test_every_gemini_4_row_is_sourced():
    rows = {row.name: row for row in MODELS}
    for name in ("Gemini 4 Argon", "Gemini 4 Hydrogen", "Gemini 4 Neon"):
        assert rows[name].least == {"thinkingLevel": "low"} and "docs" in rows[name].source
    assert rows["Gemini 3.7 Flash"].routed_to == "gemini-3.8-flash"
    assert rows["Gemini 3.5 Flash"].routed_to == "gemini-3.6-flash"
    assert rows["Gemini 2.5 Flash"].status == rows["Gemini 2.5 Pro"].status == "routed"


# -- readers of outside data: any message, any cache file --------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_CONFIGS = st.one_of(st.fixed_dictionaries({"thinkingLevel": st.sampled_from(
    ["minimal", "low", "medium", "high", "xhigh", "LOW", "ultra"])}),
    st.fixed_dictionaries({"thinkingBudget": st.integers(-1, 40000)}))
_WORDS = st.sampled_from(["thinking", "level", "budget", "Thinking level", "THINKING_LEVEL_MINIMAL",
                          "is not supported", "unsupported", "Allowed values are:", "low,", "high", "medium",
                          "between 12 and 900", "invalid", "not enabled", "must be", ".", " "])


@settings(max_examples=300, deadline=None)
@given(message=st.one_of(st.text(max_size=200), st.lists(_WORDS, max_size=14).map(" ".join)),
       sent=_CONFIGS, tried=st.lists(_CONFIGS, max_size=4))
def test_next_setting_never_raises_and_never_repeats(message, sent, tried):
    found = next_setting(message, sent, tried)
    if found is not None:
        config, why = found
        assert config != sent and config not in tried and isinstance(why, str)
        if config is None:  # only a model that says it does not think gets no field
            assert "not enabled" in message.lower() or "not supported" in message.lower()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                   lambda inner: st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                                   max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_any_cache_file_is_read_or_set_aside(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "models.json"
    path.write_bytes(data)
    cache = ModelCache(path)
    entries = cache.entries()  # never raises: a corrupt file is set aside, with a warning
    assert isinstance(entries, dict)
    assert bool(cache.warnings) == (not path.exists())
    assert cache.record("m", {"sent": {"thinkingLevel": "low"}})
    assert ModelCache(path).get("m")["sent"] == {"thinkingLevel": "low"}


_HOSTILE = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 300),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                           max_size=2))
_ENTRY = st.fixed_dictionaries({}, optional={
    "time": st.one_of(_HOSTILE, st.floats(0, 2 * NOW)), "date": _HOSTILE,
    "sent": st.one_of(_HOSTILE, _CONFIGS), "sent_source": _HOSTILE,
    "refused": st.one_of(_HOSTILE, st.lists(st.one_of(_HOSTILE, st.fixed_dictionaries(
        {"config": st.one_of(_HOSTILE, _CONFIGS)})), max_size=3))})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models=st.dictionaries(st.text(max_size=10), _ENTRY, max_size=4))
def test_any_cache_entry_is_used_only_when_valid(tmp_path_factory, models):
    path = tmp_path_factory.mktemp("e") / "models.json"
    text = json.dumps({"version": 1, "models": models})  # NaN and Infinity as Python's json writes them
    path.write_text(text)
    cache = ModelCache(path, clock=lambda: NOW)
    entries = cache.entries()  # never raises, never sets the file aside
    assert set(entries) == set(models) and path.read_text() == text
    for model in models:
        entry = cache.get(model)
        if entry is None:
            continue
        stamp = entry["time"]
        assert isinstance(stamp, (int, float)) and not isinstance(stamp, bool)
        assert NOW - MAX_AGE_DAYS * 86400 <= stamp <= NOW + HOUR
        assert "sent" not in entry or entry["sent"] is None or len(entry["sent"]) == 1
        assert all(isinstance(r, dict) for r in entry.get("refused", []))


@pytest.mark.parametrize("fault, stops", [
    (Fault.status(503), False),
    (Fault.status(500), False),
    (Fault.status(429), False),                                        # per minute: the images retry
    (Fault.raw(200, b"<html>proxy</html>"), False),                    # an answer that is no response
    (Fault.status(429, quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"), True),  # the day's
])
def test_a_probe_without_a_usable_answer_does_not_stop_the_run(fault, stops):
    """Learning is an optimisation: a probe answered 5xx, per-minute 429 or garbage leaves the first
    guess (which the images' own 400s correct); only a spent daily quota, which no image would pass
    either, stops the run."""
    def on_probe(request):
        return fault if request.text == PROBE_TEXT else None

    with FakeGemini(dialects=True, api_key=KEY, fault_for=on_probe) as server, \
            client_for(server, "gemini-4.2-flash-exp") as client:
        if stops:
            with pytest.raises(RateLimitError):
                preflight(client)
            return
        plan = preflight(client)
    assert plan.sent == first_guess("gemini-4.2-flash-exp")
    assert "the probe got no answer" in plan.line()
    assert not cache_path().exists()  # a guess is not remembered as learned
