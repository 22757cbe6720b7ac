"""Learn a model's thinking rules from the API's own 400s.

The registry (:mod:`visionkit.gemini.models`) cannot know every model. When the API answers 400 to a
request that carried a ``thinkingConfig``, and its message names an unsupported thinking setting, e.g.

* ``'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high.``
  (Gemini API wording for gemini-3.7/3.8-flash; simonw/llm-gemini#145, BerriAI/litellm-docs PR #1505);
* ``Thinking level THINKING_LEVEL_MINIMAL is unsupported for this model.`` (Vertex wording; same sources);
* ``Budget 0 is invalid. This model only works in thinking mode.`` (2.5 Pro and 3.x models given 0);
* ``Thinking level is not supported for this model.`` (a level sent to a budget-only model);
* ``Thinking budget is not supported for this model.`` (a budget sent to a level-only model, e.g.
  gemini-4-neon: dev.to/aihubmix "gemini-4-neon migration");

:func:`next_setting` says what to try next, always aiming at the LEAST thinking the model accepts:

* the message lists the allowed levels: the lowest of them;
* a level was refused without a list: the next level up (``minimal -> low -> medium -> high -> xhigh``);
* levels are not supported at all: the least budget (0, then the lowest of a range the message states,
  else 128, 512, 1024); a budget is not supported: the least level.

It never falls back to "no thinking field" while the model may think: a thinking model given no
``thinkingConfig`` thinks at its default level (medium or high), the most expensive choice for labelling
(GEMINI-API-FACTS section 9). Only a model that refuses both a level and a budget, as not supported at all,
gets none. :class:`ThinkingMemory` remembers what worked for the rest of the run (thread-safe). Any other
400 is NOT recognised and is never retried.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .models import LEVEL_ORDER

__all__ = ["AUTO", "ThinkingFix", "ThinkingMemory", "about_thinking", "first_guess", "next_setting",
           "thinking_fix"]

#: Sentinel: nothing learned, use the registry's setting.
AUTO = "auto"

#: thinkingBudget values tried, least first, when no range is stated (2.5 Pro's least is 128, 2.5
#: Flash-Lite's 512: ai.google.dev thinking docs; dev.to/gdg "Gemini thinking ... blew my budget").
BUDGETS = (0, 128, 512, 1024)

_ABOUT_THINKING = re.compile(r"thinking[ _-]?(level|budget|config)|THINKING_LEVEL_\w+|"
                             r"\bbudget\b.*\bthinking\b|\bthinking\b.*\b(enabled|supported)\b", re.IGNORECASE)
_REJECTS = re.compile(r"not (a )?supported|unsupported|invalid|not allowed|only works in thinking mode|"
                      r"must be|"
                      r"cannot be (disabled|turned off)|not enabled", re.IGNORECASE)
_ALLOWED = re.compile(r"allowed values are:?\s*([A-Za-z_,\s\"']+)", re.IGNORECASE)
_RANGE = re.compile(r"between\s+(\d+)\s+and\s+(\d+)|range\s*\[?\s*(\d+)\s*[,-]", re.IGNORECASE)
_NO_LEVELS = re.compile(r"thinking[ _]level(s)? (is |are )?not supported", re.IGNORECASE)
_NO_BUDGET = re.compile(r"thinking[ _]budget (is )?not supported|use thinking[ _]level", re.IGNORECASE)
_NO_THINKING = re.compile(r"thinking is not (enabled|supported)", re.IGNORECASE)


@dataclass(frozen=True)
class ThinkingFix:
    """What to send instead: ``config`` (a thinkingConfig, or None for none) and why, for the log."""

    config: dict | None
    reason: str


def first_guess(model: str) -> dict:
    """The least level worth asking first of a thinking model the table does not know: ``minimal`` for
    Flash and Flash-Lite-like ids (Gemini 3 Flash and Flash-Lite take it), else ``low`` (every Gemini 3 and
    4 Pro-class model in the sources takes low, none takes minimal)."""
    return {"thinkingLevel": "minimal" if "flash" in model.lower() else "low"}


def about_thinking(message: str | None) -> bool:
    return bool(message and _ABOUT_THINKING.search(message) and _REJECTS.search(message))


def _allowed_levels(message: str) -> list[str]:
    match = _ALLOWED.search(message)
    if not match:
        return []
    words = [w.lower().removeprefix("thinking_level_") for w in re.findall(r"[A-Za-z_]+", match.group(1))]
    return [lv for lv in LEVEL_ORDER if lv in words]


def next_setting(message: str | None, sent: Mapping | None, tried: Sequence[Mapping | None] = ()
                 ) -> tuple[dict | None, str] | None:
    """``(thinkingConfig to try next, why)`` after a 400 ``message`` refused ``sent``; None when the message
    is not about thinking, or nothing is left to try (``tried``: every config refused so far)."""
    if not about_thinking(message) or not isinstance(sent, Mapping):
        return None
    refused = [dict(t) if isinstance(t, Mapping) else t for t in (*tried, sent)]

    def fresh(config: dict | None) -> bool:
        return config not in refused

    level, budget = sent.get("thinkingLevel"), sent.get("thinkingBudget")
    if _NO_THINKING.search(message):
        return (None, "the model does not think; sending no thinkingConfig") if fresh(None) else None
    if level is not None:
        allowed = _allowed_levels(message)
        if str(level).lower() in allowed:  # refused, yet listed as allowed: the 400 is about something else
            return None
        if allowed:
            lowest = next((lv for lv in allowed if fresh({"thinkingLevel": lv})), None)
            if lowest is None:
                return None
            return {"thinkingLevel": lowest}, f"the API allows thinkingLevel {', '.join(allowed)}; sending " \
                                              f"{lowest!r}"
        if _NO_LEVELS.search(message):  # a budget-only model: its least budget
            return _least_budget(message, fresh)
        name = str(level).lower().removeprefix("thinking_level_")
        higher = LEVEL_ORDER[LEVEL_ORDER.index(name) + 1:] if name in LEVEL_ORDER else LEVEL_ORDER[1:]
        step = next((lv for lv in higher if fresh({"thinkingLevel": lv})), None)
        if step is None:
            return None
        return {"thinkingLevel": step}, f"level {name!r} was refused; trying the next one up, {step!r}"
    if budget is not None:
        if _NO_BUDGET.search(message):  # a level-only model: its least level
            for lv in LEVEL_ORDER:
                if fresh({"thinkingLevel": lv}):
                    return {"thinkingLevel": lv}, f"the model takes levels, not a budget; trying {lv!r}"
            return None
        return _least_budget(message, fresh, above=budget)
    return None


def _least_budget(message: str, fresh, above: object = None) -> tuple[dict, str] | None:
    match = _RANGE.search(message)
    if match:
        low = int(match.group(1) or match.group(3))
        if fresh({"thinkingBudget": low}):
            return {"thinkingBudget": low}, f"the API states a budget range from {low}; sending {low}"
    for value in BUDGETS:
        if isinstance(above, int) and value <= above:
            continue
        if fresh({"thinkingBudget": value}):
            return {"thinkingBudget": value}, f"trying the least thinking budget not refused yet, {value}"
    return None


def thinking_fix(message: str | None, sent: Mapping | None) -> ThinkingFix | None:
    """The fix for a 400 whose ``message`` rejects the ``sent`` thinkingConfig, or None if not recognised
    (or ``sent`` was already the least the message allows)."""
    if not isinstance(sent, Mapping) or not sent:
        return None
    found = next_setting(message, sent)
    return None if found is None else ThinkingFix(*found)


class ThinkingMemory:
    """Per-model learned thinking configs for one run. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[str, dict | None] = {}
        self._told: set[tuple[str, str]] = set()
        #: Called once per (model, config) by :meth:`corrected` (the preflight sets it to update the
        #: per-user model cache): ``on_correct(model, config, refused_config, source)``.
        self.on_correct: Callable[[str, dict | None, Mapping | None, str], None] | None = None

    def get(self, model: str) -> dict | None | str:
        """The learned thinkingConfig (a dict, or None for none), or :data:`AUTO` when nothing is learned."""
        with self._lock:
            return self._learned.get(model, AUTO)

    def learn(self, model: str, config: dict | None) -> bool:
        """Remember ``config`` for ``model``; True when this call changed what is known (log it once)."""
        with self._lock:
            if model in self._learned and self._learned[model] == config:
                return False
            self._learned[model] = config
            return True

    def corrected(self, model: str, config: dict | None, refused: Mapping | None, source: str) -> None:
        """A request refused ``refused`` (``source``: the 400) and its retry with ``config`` was answered:
        tell :attr:`on_correct`, once per model and config however many threads saw it."""
        key = (model, json.dumps(config, sort_keys=True))
        with self._lock:
            hook = self.on_correct
            if hook is None or key in self._told:
                return
            self._told.add(key)
        hook(model, config, dict(refused) if isinstance(refused, Mapping) else refused, source)
