"""Learn a model's thinking rules from the API's own 400, once per run.

The registry (:mod:`visionkit.gemini.models`) cannot know every model. When the API answers 400 to a
request that carried a ``thinkingConfig``, and its message names an unsupported thinking setting, e.g.

* ``'minimal' is not a supported thinking level for this model. Allowed values are: medium, low, high.``
  (Gemini API wording for gemini-3.7/3.8-flash; simonw/llm-gemini#145, BerriAI/litellm-docs PR #1505);
* ``THINKING_LEVEL_MINIMAL is unsupported`` (Vertex wording; same sources);
* ``Budget 0 is invalid. This model only works in thinking mode.`` (2.5 Pro and 3.x models given 0);
* ``Thinking level is not supported for this model.`` (a level sent to a budget model);

:func:`thinking_fix` says what to send instead: the lowest allowed level when the message lists the allowed
values, otherwise no thinking config at all. :class:`ThinkingMemory` remembers it for the rest of the run
(thread-safe), so each model pays for at most one rejected request. Any other 400 is NOT recognised and is
never retried.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from .models import LEVEL_ORDER

__all__ = ["AUTO", "ThinkingFix", "ThinkingMemory", "thinking_fix"]

#: Sentinel: nothing learned, use the registry's setting.
AUTO = "auto"

_ABOUT_THINKING = re.compile(r"thinking[ _-]?(level|budget|config)|THINKING_LEVEL_\w+|"
                             r"\bbudget\b.*\bthinking\b", re.IGNORECASE)
_REJECTS = re.compile(r"not (a )?supported|unsupported|invalid|not allowed|only works in thinking mode|"
                      r"cannot be (disabled|turned off)", re.IGNORECASE)
_ALLOWED = re.compile(r"allowed values are:?\s*([A-Za-z_,\s\"']+)", re.IGNORECASE)


@dataclass(frozen=True)
class ThinkingFix:
    """What to send instead: ``config`` (a thinkingConfig, or None for none) and why, for the log."""

    config: dict | None
    reason: str


def thinking_fix(message: str | None, sent: Mapping | None) -> ThinkingFix | None:
    """The fix for a 400 whose ``message`` rejects the ``sent`` thinkingConfig, or None if not recognised."""
    if not message or not isinstance(sent, Mapping) or not sent:
        return None
    if not (_ABOUT_THINKING.search(message) and _REJECTS.search(message)):
        return None
    match = _ALLOWED.search(message)
    allowed = []
    if match:
        words = re.findall(r"[A-Za-z_]+", match.group(1))
        allowed = [w.lower().removeprefix("thinking_level_") for w in words]
        allowed = [lv for lv in LEVEL_ORDER if lv in allowed]
    if allowed:
        lowest = allowed[0]
        if str(sent.get("thinkingLevel", "")).lower() == lowest:
            return None  # already the lowest: the message is about something else
        return ThinkingFix({"thinkingLevel": lowest},
                           f"the API allows thinkingLevel {', '.join(allowed)}; sending {lowest!r}")
    return ThinkingFix(None, "the API rejected the thinking setting; sending no thinkingConfig")


class ThinkingMemory:
    """Per-model learned thinking configs for one run. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[str, dict | None] = {}

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
