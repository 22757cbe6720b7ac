"""Token accounting: ``usageMetadata`` summed per image, per run, and priced.

A generateContent response reports ``usageMetadata`` with ``promptTokenCount``, ``candidatesTokenCount``,
``thoughtsTokenCount``, ``cachedContentTokenCount`` and ``totalTokenCount`` ([SDK] ``types.py``
``GenerateContentResponseUsageMetadata``; GEMINI-API-FACTS section 8). :class:`Usage` adds them up.

Cost (:meth:`Usage.cost`) is ``prompt * price_in + (candidates + thoughts) * price_out``, in USD per
million tokens: Google bills thinking tokens as output ("output price, including thinking tokens", on the
pricing page). Cached prompt tokens are billed lower than fresh ones; they are counted at the full input
price here, so the figure is an upper bound when ``cached`` is not 0. On the flex tier and in the Batch API
the price is half the standard rate: pass the prices you pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIELDS", "Usage"]

#: usageMetadata field -> Usage attribute.
FIELDS = {"promptTokenCount": "prompt", "candidatesTokenCount": "candidates",
          "thoughtsTokenCount": "thoughts", "cachedContentTokenCount": "cached", "totalTokenCount": "total"}


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)) and value == value and 0 <= value < 1e15:
        return int(value)
    if isinstance(value, str) and value.isdigit() and len(value) < 16:
        return int(value)
    return 0


@dataclass
class Usage:
    """Token counts of one or more responses (``requests`` of them)."""

    prompt: int = 0
    candidates: int = 0
    thoughts: int = 0
    cached: int = 0
    total: int = 0
    requests: int = 0

    @classmethod
    def of(cls, metadata: Any) -> Usage:
        """One response's ``usageMetadata`` (a dict in camelCase, or this class's own JSON form); bad or
        missing values count 0."""
        usage = cls(requests=1)
        if not isinstance(metadata, Mapping):
            return usage
        for wire, name in FIELDS.items():
            value = metadata.get(wire, metadata.get(name))
            setattr(usage, name, _count(value))
        if "requests" in metadata:
            usage.requests = _count(metadata["requests"])
        if not usage.total:
            usage.total = usage.prompt + usage.candidates + usage.thoughts
        return usage

    def add(self, other: Usage) -> Usage:
        """Add ``other`` into this one (and return it)."""
        for name in ("prompt", "candidates", "thoughts", "cached", "total", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def cost(self, price_in: float, price_out: float) -> float:
        """USD at ``price_in`` / ``price_out`` per million input / output tokens (see the module doc)."""
        return (self.prompt * price_in + (self.candidates + self.thoughts) * price_out) / 1e6

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``"12,345 tokens in (0 cached), 678 out + 90 thinking, 3 requests"``."""
        return (f"{self.prompt:,} tokens in ({self.cached:,} cached), {self.candidates:,} out + "
                f"{self.thoughts:,} thinking, {self.requests} request{'s' if self.requests != 1 else ''}")
