"""One pace for all of a client's threads when the server says 429 without saying how long to wait.

A 429 with ``RetryInfo`` (or ``Retry-After``) tells each thread how long to wait (see :mod:`.retry`). A 429
without it tells nothing, and 32 threads each backing off on their own keep hitting the limit together:
against 150 requests per 10 s, 837 requests were refused and 59 of 1,000 images gave up after 5 attempts.
So the first such 429 turns on a shared pace (:class:`Throttle`): every attempt of every thread then takes
its turn, first come first served, at most ``rate`` attempts a second, and the rate adapts:

* **decrease** (multiplicative, once per congestion: a 429 for an attempt sent before the last decrease
  is the same congestion): to ``BETA`` (0.7) times the rate attempts were really sent at over the last
  second, but never below the rate the server ACCEPTED over the last 1, 2, 5, 10, 30 or 60 s (the most
  of the six), which is what the limit let through: so a burst that filled a long window is not
  followed by a collapse to a trickle. The 30 and 60 s spans hold a per-minute quota's rate (Gemini's
  limits are per minute, RPM, or per day, https://ai.google.dev/gemini-api/docs/rate-limits): after a
  free tier's burst (5 to 15 requests) the window stays shut for a minute, and without them each 429 of
  that minute cut the rate again, down to the floor;
* **increase**: CUBIC growth (RFC 8312, section 4.1: ``W(t) = C (t - K)^3 + W_max``, ``C`` 0.4,
  ``K = cbrt(W_max (1 - BETA) / C)``), back to the rate of the last 429 within ``K`` seconds and slowly
  past it: the same scheme as the AWS SDKs' "adaptive" retry mode
  (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html; botocore
  ``retries/throttling.py``). ``C`` is a constant for rates of :data:`CUBIC_REF_RATE` (4) attempts a
  second and more, where it was tuned; below, time and rate are both scaled by ``W_max / 4``
  (``C`` times ``(W_max / 4) ** 4``), so the curve has the same shape counted in attempts: a limit of
  7.5 a minute regrows over about 6 attempts (46 s), not 0.5 s, and CUBIC's probe past the limit is as
  gentle as at 4 a second.

Never below :data:`MIN_RATE`, one attempt a minute: it still finds a per-minute window reopened. A paced
attempt waits for its turn in :meth:`Throttle.acquire` instead of backing off on its own, and 429s without
a delay do not use up the request's ``max_attempts`` (they are not billed): they draw on the same time
budget as the backoff waits (:attr:`~visionkit.gemini.retry.RetryPolicy.max_total_wait`), by the time the
server has accepted nothing (:meth:`Throttle.throttled` returns it), and an attempt stops waiting for its
turn once that exceeds the budget. Before the first such 429, :meth:`Throttle.acquire` costs one lock and
never waits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["BETA", "CUBIC_C", "CUBIC_REF_RATE", "MIN_RATE", "Throttle"]

#: Multiplicative decrease on a 429 (RFC 8312's beta_cubic).
BETA = 0.7
#: CUBIC's scaling constant (RFC 8312, section 5.1).
CUBIC_C = 0.4
#: The rate (attempts a second) from which ``CUBIC_C`` holds as it is; below, it is scaled (module doc).
CUBIC_REF_RATE = 4.0
#: Slowest pace, in attempts a second, once throttled: one a minute still finds a per-minute window reopen.
MIN_RATE = 1.0 / 60.0
_SENT_SPAN = 1.0  # seconds over which the sending rate is measured
_ACCEPTED_SPANS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # ... and the accepted rate
_MIN_SPAN = 0.25  # shortest time a rate is measured over
_MIN_ACCEPTED = 4  # fewest acceptances an accepted rate is measured from


class _GiveUp(Exception):
    """Out of patience: leave the line (:meth:`Throttle.acquire`)."""


class Throttle:
    """A shared, adaptive pace for request attempts (see the module docstring). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self.rate: float | None = None  # None: not throttled (no 429 without a delay seen yet)
        self.decreases = 0
        self._w_max = 0.0
        self._k = 0.0
        self._c = CUBIC_C
        self._decreased_at = float("-inf")
        self._last_accepted = float("-inf")
        self._paced_from: float | None = None  # the first 429 without a delay
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
        return max(MIN_RATE, self._c * (now - self._decreased_at - self._k) ** 3 + self._w_max)

    def _quiet(self, now: float) -> float:
        return 0.0 if self._paced_from is None else now - max(self._last_accepted, self._paced_from)

    def acquire(self, patience: float | None = None) -> float:
        """Wait for this attempt's turn; returns the time it starts (pass it to :meth:`throttled`).

        ``patience``: once the server has accepted nothing for this long (the retry budget), stop waiting
        and go: the attempt's 429 then ends its request at once, instead of a turn a minute apart at the
        floor rate for each of the threads in line."""
        with self._cond:
            if self.rate is None and self._next_ticket == self._serving:
                return self._start(self._clock())
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                while True:
                    now = self._clock()
                    if patience is not None and self._quiet(now) > patience:
                        raise _GiveUp
                    if ticket == self._serving:
                        rate = self._rate(now)
                        due = now if rate is None else self._last_start + 1.0 / rate
                        if due <= now:
                            self._advance()
                            return self._start(now)
                        self._cond.wait(min(due - now, 0.05))  # the rate may grow meanwhile
                    else:
                        self._cond.wait(0.5 if patience is None else 0.05)
            except BaseException as exc:
                if ticket >= self._serving:  # never served: let the next one go
                    self._abandoned.add(ticket)
                    if ticket == self._serving:
                        self._advance()
                if isinstance(exc, _GiveUp):
                    return self._start(self._clock())
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
        while self._sent and self._sent[0] < now - 2 * _SENT_SPAN - 30.0:  # kept while answers may be due
            self._sent.popleft()
        return now

    def succeeded(self) -> None:
        """An attempt was answered (not 429)."""
        with self._cond:
            now = self._clock()
            self._last_accepted = now
            self._accepted.append(now)
            while self._accepted and self._accepted[0] < now - _ACCEPTED_SPANS[-1]:
                self._accepted.popleft()

    def throttled(self, started: float) -> float:
        """The attempt started at ``started`` got a 429 without a delay: slow every thread down. Returns
        how long the server has accepted no attempt (of any thread, since the first such 429): what a
        paced request's retry budget is spent by, not its wait for its turn behind the other threads."""
        with self._cond:
            now = self._clock()
            if self._paced_from is None:
                self._paced_from = now
            quiet = self._quiet(now)
            if started < self._decreased_at:
                return quiet  # sent before the last decrease: the same congestion
            # rates over the last span, or over the time since the first attempt when that is shorter; the
            # sending rate when the refused attempt was sent (an answer slower than the span finds none since)
            young = max(now - self._first, _MIN_SPAN)
            sent = sum(1 for t in self._sent if started - _SENT_SPAN < t <= started) / min(
                _SENT_SPAN, max(started - self._first, _MIN_SPAN))
            counts = [(sum(1 for t in self._accepted if t >= now - span), span) for span in _ACCEPTED_SPANS]
            # a span's rate needs a few acceptances: at a few a minute, one in the last second is not 1/s
            accepted = max([n / min(span, young) for n, span in counts if n >= _MIN_ACCEPTED], default=0.0)
            current = self._rate(now)
            base = sent if current is None else min(current, sent)
            self._w_max = max(base, accepted, MIN_RATE)
            self.rate = max(BETA * base, accepted, MIN_RATE)
            self._c = CUBIC_C * min(1.0, self._w_max / CUBIC_REF_RATE) ** 4  # the same curve in attempts
            self._k = (max(self._w_max - self.rate, 0.0) / self._c) ** (1 / 3)
            self._decreased_at = now
            self.decreases += 1
            self._cond.notify_all()
            return quiet
