"""A request-rate limit for :class:`~visionkit.testing.FakeGemini`: at most ``n`` generateContent requests
accepted in any ``window`` seconds (a sliding window); the others are answered 429 ``RESOURCE_EXHAUSTED``
with a per-minute QuotaFailure and NO ``RetryInfo`` (unless ``retry_delay`` is given), as a proxy or a
shared-capacity limit may answer. Use it as the server's ``fault_for`` hook::

    limit = RateLimit(20, 1.0)
    with FakeGemini(fault_for=limit) as server:
        ...
    limit.accepted, limit.refused     # times (time.monotonic) of the accepted and refused requests
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .faults import Fault

__all__ = ["RateLimit"]


class RateLimit:
    """``fault_for`` hook: at most ``n`` requests accepted per sliding ``window`` seconds."""

    def __init__(self, n: int, window: float, retry_delay: float | None = None):
        if n < 1 or window <= 0:
            raise ValueError(f"need n >= 1 and window > 0, got {n} and {window}")
        self.n, self.window, self.retry_delay = n, window, retry_delay
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.accepted: list[float] = []
        self.refused: list[float] = []

    @property
    def rate(self) -> float:
        """The limit's rate, in requests a second."""
        return self.n / self.window

    def __call__(self, request: Any) -> Fault | None:
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) < self.n:
                self._recent.append(now)
                self.accepted.append(now)
                return None
            self.refused.append(now)
        return Fault.status(429, retry_delay=self.retry_delay)
