"""Check the key and the model before any image, and learn the least thinking the model accepts.

:func:`preflight` runs once per labelling run (online, ``--batch``, and ``--dry-run`` with a key):

1. ``GET /v1beta/models/{model}`` (the Models API: free, no tokens; it returns ``thinking``,
   ``inputTokenLimit``, ``outputTokenLimit`` and ``supportedGenerationMethods``; ai.google.dev/api/models).
   A refused key (400 ``API_KEY_INVALID``, 401, 403), an unknown or retired model (404) or a model without
   ``generateContent`` raises at once, so not one image is sent. A network failure, a 5xx or a 429 here
   is only a notice: the run goes on with what the registry and the cache know. The key is then checked
   by ``GET /v1beta/models?pageSize=1`` (free too), so that a refused key stops the run before any image
   even when the setting comes from the table or the cache and no probe is sent (a probe's refusal stops
   it the same way); no answer to that either is one more notice.
2. The thinking setting to send, first source that knows wins:

   * the registry row, when it has a sourced rule (:mod:`visionkit.gemini.models`);
   * the per-user cache (:mod:`visionkit.gemini.model_cache`), unless ``refresh``;
   * models.get saying ``thinking: false``: no thinking field;
   * otherwise the model is asked: tiny text-only probe requests (:data:`PROBE_TEXT`), starting at the
     least level (:func:`~visionkit.gemini.thinking.first_guess`) and following each 400
     (:func:`~visionkit.gemini.thinking.next_setting`) until one is answered 200. Never "no thinking
     field" for a thinking model. The probes' tokens are billed, so they are counted
     (:attr:`FleetPlan.usage`).

   What was learned goes to the cache, with its sources and date, and into ``client.thinking``, so every
   image request and every Batch line carries it. A cache entry is not used when models.get says the
   model does not think and the entry sends a thinking setting, or when the entry's own ``refused`` list
   holds the setting it sends.
3. When an image request's 400 corrects the thinking setting during the run and the retry is answered
   (:meth:`~visionkit.gemini.thinking.ThinkingMemory.corrected`), the cache is updated, so the next run
   starts with the working setting.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.usage import Usage
from ..errors import (
    APIError,
    AuthError,
    BadRequestError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from .model_cache import ModelCache, is_config, today
from .models import UNKNOWN, ModelInfo, lookup, status_note
from .thinking import about_thinking, first_guess, next_setting

__all__ = ["PROBE_TEXT", "FleetPlan", "answered_by", "describe_thinking", "get_model", "list_models",
           "preflight",
           "sourced_rule"]

logger = logging.getLogger("visionkit.gemini")

#: The probe's prompt: a few tokens in, one word out.
PROBE_TEXT = "Reply with the single word OK."
#: Most probe requests one model may take (minimal, low, medium, high, xhigh, then budgets).
MAX_PROBES = 8
_STATUS = {"ga": "GA", "preview": "preview", "deprecated": "deprecated", "routed": "routed",
           "retired": "retired", "unknown": "unknown"}


def describe_thinking(config: Any) -> str:
    """``thinkingLevel low``, ``thinkingBudget 0``, or ``no thinkingConfig``."""
    if not isinstance(config, dict) or not config:
        return "no thinkingConfig"
    return ", ".join(f"{k} {v}" for k, v in config.items())


@dataclass
class FleetPlan:
    """What :func:`preflight` decided for one model.

    Attributes:
        model: the model id.
        status: ``"GA"``, ``"preview"``, ``"deprecated"``, ``"routed"``, ``"learned"`` or ``"unknown"``.
        sent: the thinkingConfig sent with every image (None: none).
        why: where that comes from.
        facts: the models.get answer ({} when it could not be asked).
        usage: the probes' tokens (billed: count them in the run's usage).
        probes: probe requests answered (200); ``refused``: the settings the API refused (400).
        notices: what the run should say once, besides :meth:`line`.
    """

    model: str
    status: str
    sent: dict | None
    why: str
    facts: dict = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    probes: int = 0
    refused: list = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    counted: bool = False  # set once the run has added the probes' usage to its totals
    announced: bool = False  # set once the run has said :meth:`line` and the notices

    def line(self) -> str:
        """The one up-front line: model, status, thinking setting sent and why."""
        return f"{self.model}: {self.status}; {self.why} -> sending {describe_thinking(self.sent)}"


def sourced_rule(info: ModelInfo) -> bool:
    """True when the registry row knows the model's thinking rule (and says where from)."""
    return info is not UNKNOWN and info.thinking in ("level", "budget", "none") and bool(info.source)


def _bare(model: str) -> str:
    return str(model).strip().lower().removeprefix("models/")


def answered_by(requested: str | None, version: Any) -> str | None:
    """``version`` (a response's ``modelVersion``) when it names another model than ``requested``; None
    when it is the same model, a version of it (``gemini-3.8-flash-001``), or absent."""
    if not requested or not isinstance(version, str) or not version.strip():
        return None
    asked, got = _bare(requested), _bare(version)
    if got == asked or got.startswith(asked + "-") or asked.startswith(got + "-"):
        return None
    return version.strip().removeprefix("models/")


# -- the Models API ------------------------------------------------------------------------------------------

def get_model(client: Any, model: str | None = None) -> dict:
    """``GET /v1beta/models/{model}``: the Model resource (a dict). Raises the transport's APIError."""
    model = model or client.model
    response, _ = client._request("GET", f"{client.base_url}/v1beta/models/{model}",
                                  what=f"Models API get {model}")
    return _json_object(response, f"models.get {model}")


def list_models(client: Any, page_size: int = 1000) -> list[dict]:
    """``GET /v1beta/models``, every page: the Model resources this key can use."""
    found: list[dict] = []
    token = ""
    for _ in range(100):  # a bound, should the API keep sending tokens
        query = f"?pageSize={page_size}" + (f"&pageToken={token}" if token else "")
        response, _ = client._request("GET", f"{client.base_url}/v1beta/models{query}",
                                      what="Models API list")
        page = _json_object(response, "models.list")
        models = page.get("models")
        if isinstance(models, list):
            found.extend(m for m in models if isinstance(m, dict))
        token = page.get("nextPageToken") or ""
        if not isinstance(token, str) or not token:
            break
    return found


def _json_object(response: Any, what: str) -> dict:
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ResponseError(f"the {what} answer is not a JSON object")
    return data


def _probe(client: Any, config: dict | None) -> dict:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": PROBE_TEXT}]}]}
    if config:
        body["generationConfig"] = {"thinkingConfig": config}
    return client._post_generate(body)[0]


# -- preflight -----------------------------------------------------------------------------------------------

def preflight(client: Any, *, cache: ModelCache | None = None, refresh: bool = False, probe: bool = True,
              ask_api: bool = True) -> FleetPlan:
    """Check the key and the model, and decide the thinking setting (see the module docstring).

    ``probe=False`` (``--dry-run``) sends nothing billed: a model that would need probes is reported as
    such. ``ask_api=False`` (no key) skips models.get as well.

    Raises:
        AuthError: the key was refused. NotFoundError: the model does not exist for this key.
        ConfigError: the model does not offer generateContent, or no thinking setting was accepted.
    """
    model = client.model
    cache = cache if cache is not None else ModelCache()
    info = lookup(model)
    notices: list[str] = []
    facts = _ask_models_api(client, model, info, notices) if ask_api else {}
    plan = _decide(client, model, info, facts, cache, refresh, probe)
    plan.facts = facts
    plan.notices = notices + plan.notices + cache.warnings
    note = status_note(model, info)
    if note:
        plan.notices.append(note)
    if not sourced_rule(info):  # a table row is read by the request builder itself
        client.thinking.learn(model, plan.sent)
        with contextlib.suppress(AttributeError):  # a stand-in memory of your own: nothing to update
            client.thinking.on_correct = _on_correct(client, cache, plan, facts)
    return plan


_NO_ANSWER = (TransportError, ServerError, RateLimitError, ResponseError)


def _key_refused(exc: APIError) -> bool:
    """A 401, a 403, or a 400 that says the API key is not valid (``API_KEY_INVALID``)."""
    return isinstance(exc, AuthError) or (isinstance(exc, BadRequestError)
                                          and "api key" in (exc.api_message or str(exc)).lower())


def _refused(exc: Any) -> AuthError:
    return AuthError(f"the API key was refused (HTTP {exc.status}: {exc.api_message or exc}); check "
                     "GEMINI_API_KEY / GOOGLE_API_KEY. Nothing was sent: no image request was made",
                     status=exc.status, api_status=exc.api_status, api_message=exc.api_message)


def _check_key(client: Any, model: str, notices: list[str]) -> None:
    """models.get got no answer, so the key is unchecked, and a setting from the table or the cache sends
    no probe: ask ``models.list`` for one model (free, like models.get) so that a refused key still stops
    the run before any image request. No answer here either is a notice, not a stop."""
    try:
        client._request("GET", f"{client.base_url}/v1beta/models?pageSize=1", what="Models API list (key)")
    except APIError as exc:  # no answer, or another refusal (a proxy that serves only generateContent)
        if _key_refused(exc):
            raise _refused(exc) from None
        notices.append(f"the API key could not be checked before the images ({type(exc).__name__}); a "
                       f"refused key stops the run at the first {model} request")


def _ask_models_api(client: Any, model: str, info: ModelInfo, notices: list[str]) -> dict:
    try:
        facts = get_model(client, model)
    except (AuthError, BadRequestError) as exc:
        if not _key_refused(exc):
            notices.append(f"the Models API refused to describe {model} ({exc}); going on with what the "
                           "registry and the cache know")
            return {}
        raise _refused(exc) from None
    except NotFoundError as exc:
        why = status_note(model, info) or (f"{model} does not exist, is not available to this key, or is "
                                           "retired")
        raise NotFoundError(f"model {model} is not found (HTTP 404 from the Models API): {why}. Nothing was "
                            "sent; 'visionkit models --online' lists the ids this key can use",
                            status=404, api_status=exc.api_status, api_message=exc.api_message) from None
    except _NO_ANSWER as exc:
        notices.append(f"could not ask the Models API about {model} ({type(exc).__name__}: {exc}); going on "
                       "with what the registry and the cache know")
        _check_key(client, model, notices)
        return {}
    methods = facts.get("supportedGenerationMethods")
    if isinstance(methods, list) and methods and "generateContent" not in methods:
        raise ConfigError(f"model {model} does not offer generateContent (it offers "
                          f"{', '.join(map(str, methods))}), so it cannot label images. Nothing was sent")
    return facts


def _decide(client: Any, model: str, info: ModelInfo, facts: dict, cache: ModelCache, refresh: bool,
            probe: bool) -> FleetPlan:
    status = _STATUS.get(info.status, info.status)
    if sourced_rule(info):
        when = f", {info.date}" if info.date else ""
        return FleetPlan(model, status, info.least, f"in the table ({info.name}{when})")
    thinks = facts.get("thinking") if isinstance(facts.get("thinking"), bool) else None
    status = "learned" if info is UNKNOWN else status
    where = "not in the table" if info is UNKNOWN else f"in the table ({info.name}) without a thinking rule"
    entry = None if refresh else cache.get(model)
    if entry is not None and _usable(entry, thinks):
        refused = "; ".join(f"{describe_thinking(r.get('config'))} refused {r.get('date', '')}"
                            for r in entry.get("refused") or [])
        why = f"{where}; learned {entry.get('date')} ({entry.get('sent_source', 'cache')})" + \
            (f"; {refused}" if refused else "")
        return FleetPlan(model, status, entry.get("sent"), why, refused=list(entry.get("refused") or []))
    if thinks is False:
        plan = FleetPlan(model, status, None, f"{where}; does not think (models.get)")
        _remember(client, cache, plan, thinks, "models.get says thinking: false")
        return plan
    said = "thinks (models.get)" if thinks else "the Models API did not say whether it thinks"
    guess = first_guess(model)
    if not probe:
        return FleetPlan(model, "unknown" if info is UNKNOWN else status, guess,
                         f"{where}; {said}; a real run first asks with text-only probe requests "
                         "(a few tokens), starting at")
    try:
        plan = _learn(client, model, guess, status, f"{where}; {said}")
    except (TransportError, ServerError, RateLimitError, ResponseError) as exc:
        if isinstance(exc, RateLimitError) and exc.per_day:  # the day's quota: no image would get through
            raise
        # no usable answer (a network failure, a 5xx, a per-minute 429): the images' own 400s correct it
        return FleetPlan(model, "unknown" if info is UNKNOWN else status, guess,
                         f"{where}; {said}; the probe got no answer ({type(exc).__name__}: {exc}): a guess, "
                         "corrected by the "
                         "first 400 if the model refuses it")
    _remember(client, cache, plan, thinks, "probe (a text-only request) answered 200")
    return plan


def _usable(entry: dict, thinks: bool | None) -> bool:
    """A fresh cache entry (its fields checked by the cache) that models.get and its own record allow."""
    if "sent" not in entry or not is_config(entry["sent"]):
        return False
    sent = entry["sent"]
    if (thinks and sent is None) or (thinks is False and sent is not None):  # models.get knows better
        return False
    return sent not in [r.get("config") for r in entry.get("refused") or []]  # refused by the API itself


def _learn(client: Any, model: str, config: dict | None, status: str, where: str) -> FleetPlan:
    refused: list[dict] = []
    usage = Usage()
    for _ in range(MAX_PROBES):
        try:
            answer = _probe(client, config)
        except BadRequestError as exc:
            if _key_refused(exc):  # models.get and the key check got no answer; the probe did
                raise _refused(exc) from None
            found = next_setting(exc.api_message, config or {}, [r["config"] for r in refused])
            if found is None:
                if refused or about_thinking(exc.api_message):
                    raise ConfigError(_no_setting(model, refused, exc)) from None
                # a 400 about something else: the probe cannot tell; go on with the guess
                return FleetPlan(model, status, config, f"{where}; the probe was refused for another reason "
                                 f"({exc.api_message}): a guess, corrected by the first 400 if needed")
            refused.append({"config": config, "date": today(), "source": f"400: {exc.api_message}"})
            logger.info("%s refused %s (400: %s); %s", model, describe_thinking(config), exc.api_message,
                        found[1])
            config = found[0]
            continue
        usage.add(Usage.of(answer.get("usageMetadata")))
        gone = "; ".join(f"{describe_thinking(r['config'])} refused {r['date']}" for r in refused)
        plan = FleetPlan(model, status, config, f"{where}" + (f"; {gone}" if gone else "")
                         + f"; accepted by a probe {today()}", usage=usage, probes=usage.requests,
                         refused=refused)
        return plan
    raise ConfigError(_no_setting(model, refused, None))


def _no_setting(model: str, refused: list[dict], exc: APIError | None) -> str:
    tried = ", ".join(describe_thinking(r["config"]) for r in refused) or "nothing"
    last = f" (last answer: {exc})" if exc is not None else ""
    return (f"could not find a thinking setting {model} accepts: it refused {tried}{last}. Nothing was sent "
            "with an image; pass another --model, or report the model's rules")


def _remember(client: Any, cache: ModelCache, plan: FleetPlan, thinks: bool | None, how: str) -> None:
    if _record(client, cache, plan.model, thinks, plan.sent, how, plan.refused):
        plan.notices.append(f"learned {plan.model}'s thinking setting; remembered in {cache.path} "
                            "(--refresh-models learns it again)")


def _record(client: Any, cache: ModelCache, model: str, thinks: bool | None, sent: dict | None, how: str,
            refused: list) -> bool:
    facts_source = "models.get" if thinks is not None else "unknown (models.get did not say)"
    entry = {"thinks": thinks, "thinks_source": facts_source, "sent": sent, "sent_source": how,
             "refused": refused}
    redact: Callable[[str], str] | None = getattr(getattr(client, "_http", None), "redact", None)
    return cache.record(model, entry, redact=redact)


def _on_correct(client: Any, cache: ModelCache, plan: FleetPlan, facts: dict) -> Callable[..., None]:
    """The hook that writes an in-run correction (an image's 400, then a retry answered) to the cache."""
    thinks = facts.get("thinking") if isinstance(facts.get("thinking"), bool) else None
    refused = list(plan.refused)

    def corrected(model: str, config: dict | None, rejected: Any, source: str) -> None:
        if model != plan.model:
            return
        refused.append({"config": rejected, "date": today(), "source": source})
        _record(client, cache, model, thinks, config,
                f"an image request was refused ({source}); the retry with {describe_thinking(config)} "
                "was answered", refused)

    return corrected
