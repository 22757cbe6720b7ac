"""A labelling run's model check: the preflight once per run, and the model that really answered.

:func:`check_model` runs :func:`visionkit.gemini.fleet.preflight` for a run's client (once: the plan is
kept on the client, so the ``--batch`` submit and the label run that follows share it) and
:func:`answered_by` tells a routed answer (``modelVersion`` naming another model) from a version suffix of
the same model.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["answer_note", "answered_by", "check_model", "dry_run_plan", "start_model"]


def check_model(client: Any, *, refresh: bool = False, probe: bool = True) -> Any:
    """The run's :class:`~visionkit.gemini.fleet.FleetPlan` (made once per client), or None for a client
    that does not speak the API (a stand-in of your own).

    Raises:
        AuthError, NotFoundError, ConfigError: the key or the model cannot label (nothing was sent).
    """
    plan = getattr(client, "fleet_plan", None)
    if plan is not None:
        return plan
    if not callable(getattr(client, "_request", None)) or not hasattr(client, "thinking"):
        return None
    from ..gemini.fleet import preflight

    plan = preflight(client, refresh=refresh, probe=probe and not getattr(client, "answers_only", False))
    with contextlib.suppress(AttributeError):  # a client that takes no attributes: checked again next time
        client.fleet_plan = plan
    return plan


def answered_by(requested: str | None, version: Any) -> str | None:
    """:func:`visionkit.gemini.fleet.answered_by` (imported on use: an offline run loads no request layer)."""
    from ..gemini.fleet import answered_by as other_model

    return other_model(requested, version)


def start_model(client: Any, task: str, summary: Any, *, refresh: bool = False) -> list[str]:
    """Check the run's model before any image (:func:`check_model`); record it in ``summary`` (the model,
    the up-front line, the probes' tokens, counted once) and return what to say once, the line first.

    Raises:
        AuthError, NotFoundError, ConfigError: as :func:`check_model` (nothing was sent or written).
    """
    from .usage import model_notices

    summary.model = getattr(client, "model", None)
    plan = check_model(client, refresh=refresh)
    if plan is None:
        return model_notices(client, task)
    summary.model_line = plan.line()
    if not plan.counted:  # the --batch submit and the label run that follows share one plan
        plan.counted = True
        summary.probe_usage.add(plan.usage)
        summary.usage.add(plan.usage)
    notes = [] if plan.announced else [plan.line(), *plan.notices]
    plan.announced = True
    notes += [n for n in model_notices(client, task) if n not in notes and n not in plan.notices]
    return notes


def answer_note(summary: Any, result: Any) -> str | None:
    """The notice to give once when an answer came from another model than the one asked (a routed id):
    the first answer of each such model; None otherwise."""
    version = getattr(result, "model_version", None)
    if not version or summary.answered_by.get(version, 0) != 1:  # none (offline), or said already
        return None
    other = answered_by(getattr(summary, "model", None), version)
    if other is None:
        return None
    return (f"requested {summary.model}, answered by {other}: the API routes this id to another model "
            "(each response's modelVersion says so; 'visionkit models' shows the table)")


def dry_run_plan(model: str | None, base_url: str | None = None, *, refresh: bool = False) -> Any:
    """The plan ``--dry-run`` shows: with a key, models.get is asked (free) and a wrong key or model
    raises; without one, the registry and the cache alone. Never a probe, never a billed request."""
    from types import SimpleNamespace

    from ..errors import ConfigError
    from ..gemini import GeminiClient
    from ..gemini.fleet import preflight
    from ..gemini.models import resolve_model
    from ..gemini.thinking import ThinkingMemory

    try:
        client = GeminiClient(model=model, base_url=base_url, max_retries=1)
    except ConfigError as exc:
        if "API key" not in str(exc):
            raise
        offline = SimpleNamespace(model=resolve_model(model), thinking=ThinkingMemory())
        plan = preflight(offline, refresh=refresh, probe=False, ask_api=False)
        plan.notices.insert(0, "no API key: the Models API was not asked (set GEMINI_API_KEY to check the "
                               "key "
                               "and the model too)")
        return plan
    with client:
        return preflight(client, refresh=refresh, probe=False)
