"""One pace for all of a client's threads when the server says 429 without saying how long to wait.

A 429 with ``RetryInfo`` (or ``Retry-After``) tells each thread how long to wait (see :mod:`.retry`). A 429
without it tells nothing, and 32 threads each backing off on their own keep hitting the limit together:
against 150 requests per 10 s, 837 requests were refused and 59 of 1,000 images gave up after 5 attempts.
So the first such 429 turns on a shared pace (:class:`Throttle`): every attempt of every thread then takes
its turn, first come first served, at most ``rate`` attempts a second, and the rate adapts:

* **decrease** (multiplicative, once per congestion: a 429 for an attempt sent before the last decrease
  is the same congestion): to ``BETA`` (0.7) times the rate attempts were really sent at over the last
  second, but never below the rate the server ACCEPTED over the last 1, 2, 5 or 10 s (the most of the
  four), which is what the limit let through: so a burst that filled a long window is not followed by a
  collapse to a trickle;
* **increase**: CUBIC growth (RFC 8312, section 4.1: ``W(t) = C (t - K)^3 + W_max``, ``C`` 0.4,
  ``K = cbrt(W_max (1 - BETA) / C)``), back to the rate of the last 429 within ``K`` seconds and slowly
  past it: the same scheme as the AWS SDKs' "adaptive" retry mode
  (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html; botocore
  ``retries/throttling.py``).

Never below :data:`MIN_RATE`. A paced attempt waits for its turn in :meth:`Throttle.acquire` instead of
backing off on its own, and 429s without a delay do not use up the request's ``max_attempts`` (they are
not billed) but a separate, larger budget (:attr:`~visionkit.gemini.retry.RetryPolicy.max_paced_attempts`).
Before the first such 429, :meth:`Throttle.acquire` costs one lock and never waits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["BETA", "MIN_RATE", "Throttle"]

#: Multiplicative decrease on a 429 (RFC 8312's beta_cubic).
BETA = 0.7
#: CUBIC's scaling constant (RFC 8312, section 5.1).
CUBIC_C = 0.4
#: Slowest pace, in attempts a second, once throttled: one attempt every 2 s still finds a window reopen.
MIN_RATE = 0.5
_SENT_SPAN = 1.0  # seconds over which the sending rate is measured
_ACCEPTED_SPANS = (1.0, 2.0, 5.0, 10.0)  # ... and the accepted rate
_MIN_SPAN = 0.25  # shortest time a rate is measured over


class Throttle:
    """A shared, adaptive pace for request attempts (see the module docstring). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self.rate: float | None = None  # None: not throttled (no 429 without a delay seen yet)
        self.decreases = 0
        self._w_max = 0.0
        self._k = 0.0
        self._decreased_at = float("-inf")
        self._last_start = float("-inf")
        self._first: float | None = None
        self._sent: deque[float] = deque()
        self._accepted: deque[float] = deque()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def current_rate(self) -> float | None:
        """Attempts a second allowed now (None: no limit)."""
        with self._cond:
            return self._rate(self._clock())

    def _rate(self, now: float) -> float | None:
        if self.rate is None:
            return None
        # starts at self.rate just after the decrease (K is chosen so), back at W_max after K seconds
        return max(MIN_RATE, CUBIC_C * (now - self._decreased_at - self._k) ** 3 + self._w_max)

    def acquire(self) -> float:
        """Wait for this attempt's turn; returns the time it starts (pass it to :meth:`throttled`)."""
        with self._cond:
            if self.rate is None and self._next_ticket == self._serving:
                return self._start(self._clock())
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                while True:
                    now = self._clock()
                    if ticket == self._serving:
                        rate = self._rate(now)
                        due = now if rate is None else self._last_start + 1.0 / rate
                        if due <= now:
                            self._advance()
                            return self._start(now)
                        self._cond.wait(min(due - now, 0.05))  # the rate may grow meanwhile
                    else:
                        self._cond.wait(0.5)
            except BaseException:
                if ticket >= self._serving:  # never served: let the next one go
                    self._abandoned.add(ticket)
                    if ticket == self._serving:
                        self._advance()
                raise

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def _start(self, now: float) -> float:
        if self._first is None:
            self._first = now
        self._last_start = now
        self._sent.append(now)
        while self._sent and self._sent[0] < now - _SENT_SPAN:
            self._sent.popleft()
        return now

    def succeeded(self) -> None:
        """An attempt was answered (not 429)."""
        with self._cond:
            now = self._clock()
            self._accepted.append(now)
            while self._accepted and self._accepted[0] < now - _ACCEPTED_SPANS[-1]:
                self._accepted.popleft()

    def throttled(self, started: float) -> None:
        """The attempt started at ``started`` got a 429 without a delay: slow every thread down."""
        with self._cond:
            now = self._clock()
            if started < self._decreased_at:
                return  # sent before the last decrease: the same congestion
            # rates over the last span, or over the time since the first attempt when that is shorter
            young = max(now - self._first, _MIN_SPAN)
            sent = sum(1 for t in self._sent if t >= now - _SENT_SPAN) / min(_SENT_SPAN, young)
            accepted = max(sum(1 for t in self._accepted if t >= now - span) / min(span, young)
                           for span in _ACCEPTED_SPANS)
            current = self._rate(now)
            base = sent if current is None else min(current, sent)
            self._w_max = max(base, accepted, MIN_RATE)
            self.rate = max(BETA * base, accepted, MIN_RATE)
            self._k = (max(self._w_max - self.rate, 0.0) / CUBIC_C) ** (1 / 3)
            self._decreased_at = now
            self.decreases += 1
            self._cond.notify_all()
