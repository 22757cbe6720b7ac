"""When and how long to retry a failed request.

Retried: HTTP 408, 429, 500, 502, 503 and 504, timeouts and connection errors
(:class:`~visionkit.errors.TransportError`). Not retried: every other status (400, 401, 403, 404, ...) and
a 429 for a per-day quota (it will not clear before the quota resets).

The wait before retry ``n`` (1-based) is exponential backoff with jitter, capped at ``max_delay``:

* ``"full"`` (default): uniform in ``[0, min(max_delay, base_delay * 2**(n-1))]``;
* ``"equal"``: half of that cap, plus uniform in the other half;
* ``"decorrelated"``: uniform in ``[base_delay, 3 * previous wait]``, capped;
* ``"none"``: exactly ``min(max_delay, base_delay * 2**(n-1))``.

When the server says how long to wait (``RetryInfo.retryDelay`` in the error body's ``details``, or the
``Retry-After`` header), the wait is at least that long. A 429 that does not say (a :class:`Failed` with
``paced``) is not backed off per request: the transport's shared pace (:mod:`.throttle`) spaces the next
attempt of every thread. Such attempts are not billed and do not use up ``max_attempts``; they count
against ``max_total_wait``, the one budget they share with the backoff waits, by the time the server
accepted nothing at all since the first of them (:attr:`Failed.quiet`): a request waiting its turn behind
other threads that are answered is not stalled. A server delay longer than ``max_total_wait`` stops the
retries at once, and so does a wait that would push the total past it.

Every :class:`~visionkit.errors.APIError` raised by :meth:`RetryPolicy.run` carries ``attempts`` (int): the
number of HTTP attempts made, including the failed last one (1 = not retried). It is set as an attribute
on the error (``APIError`` takes no such argument), so the pipeline can count the requests and retries of
an image that failed; :class:`~visionkit.gemini.GeminiClient` sets it on every ``APIError`` it raises too.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from ..errors import APIError, ConfigError, HTTPStatusError, RateLimitError, TransportError

__all__ = [
    "RETRYABLE_STATUSES",
    "Failed",
    "RetryPolicy",
    "parse_duration",
    "parse_retry_after",
    "quota_ids",
    "retry_info_delay",
]

#: HTTP statuses that are retried.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_JITTERS = ("full", "equal", "decorrelated", "none")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")

T = TypeVar("T")


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration string (``"53s"``, ``"30.5s"``) in seconds, or None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    return float(match.group(1)) if match else None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (delta seconds or an HTTP date) in seconds from ``now``, or None."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _details(error: Mapping | None) -> list[Mapping]:
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def retry_info_delay(error: Mapping | None) -> float | None:
    """``RetryInfo.retryDelay`` in seconds from an API error object (the value of ``"error"``), or None."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = parse_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    return None


def quota_ids(error: Mapping | None) -> list[str]:
    """The ``quotaId`` of every ``QuotaFailure`` violation in an API error object."""
    ids = []
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, Mapping) and isinstance(violation.get("quotaId"), str):
                    ids.append(violation["quotaId"])
    return ids


@dataclass(frozen=True)
class Failed:
    """One failed attempt, as reported to :meth:`RetryPolicy.run`.

    Attributes:
        error: the error to raise if this attempt is the last one (its ``__cause__`` already set).
        server_delay: seconds the server asked to wait (RetryInfo or Retry-After), or None.
        reason: a short description for logs and the ``on_retry`` callback ("HTTP 503 UNAVAILABLE").
        paced: a 429 without a delay: the sender's shared pace (:class:`~.throttle.Throttle`) spaces the
            next attempt, so it is retried without a backoff of its own.
        quiet: for a paced failure, seconds the server has accepted no attempt of the sender's (any
            thread's), as the pace measures it; None when not known (then the time since the request's
            own first paced failure counts).
    """

    error: APIError
    server_delay: float | None = None
    reason: str = ""
    paced: bool = False
    quiet: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings and the retry loop. Immutable, so one policy can serve many threads.

    Attributes:
        max_attempts: attempts in total, including the first (1 = no retry), not counting paced ones.
        base_delay: the first backoff cap, in seconds; doubled after each retry.
        max_delay: the largest backoff wait, in seconds (a longer server-requested delay is still honoured).
        max_total_wait: the most time one request spends waiting to be retried: the backoff sleeps, plus,
            from its first 429 without a delay on (paced attempts, which ``max_attempts`` does not count;
            a policy with ``max_attempts=1`` retries nothing, paced or not), the time the server accepted
            nothing (:attr:`Failed.quiet`). Past it, the error is raised.
        jitter: "full", "equal", "decorrelated" or "none" (see the module docstring).
        retry_statuses: HTTP statuses that are retried.
        sleep: the sleep function (inject a recorder in tests).
        rng: the random source for jitter (inject a seeded ``random.Random`` in tests).
        clock: the clock the time of paced attempts is read from (inject a fake one in tests).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 300.0
    jitter: str = "full"
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("base_delay", "max_delay", "max_total_wait"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.jitter not in _JITTERS:
            raise ConfigError(f"jitter must be one of {', '.join(_JITTERS)}, got {self.jitter!r}")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def is_retryable(self, error: APIError) -> bool:
        """True for transport errors and retryable statuses, False for a per-day 429."""
        if isinstance(error, RateLimitError) and error.per_day:
            return False
        if isinstance(error, TransportError):
            return True
        return isinstance(error, HTTPStatusError) and error.status in self.retry_statuses

    def paces(self, failed: Failed) -> bool:
        """True when ``failed`` is left to the sender's shared pace (a 429 without a delay)."""
        return failed.paced and failed.server_delay is None

    def backoff(self, retry: int, previous: float | None = None) -> float:
        """The jittered wait before retry number ``retry`` (1-based); ``previous`` is the last wait."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        if self.jitter == "full":
            return self.rng.uniform(0.0, cap)
        if self.jitter == "equal":
            return cap / 2 + self.rng.uniform(0.0, cap / 2)
        if self.jitter == "decorrelated":
            upper = max(self.base_delay, 3.0 * (previous if previous is not None else self.base_delay))
            return min(self.max_delay, self.rng.uniform(self.base_delay, upper))
        return cap

    def run(self, send: Callable[[], T | Failed],
            on_retry: Callable[[int, float, str], None] | None = None) -> tuple[T, int]:
        """Call ``send`` until it returns a value that is not :class:`Failed`, or until retries stop.

        Args:
            send: makes one attempt; returns the result, or a :class:`Failed` describing the failure.
                Exceptions it raises are not retried.
            on_retry: called as ``on_retry(attempt, delay, reason)`` before each wait, where ``attempt``
                is the number of the attempt that failed.

        Returns:
            ``(result, attempts)``.

        Raises:
            APIError: the last failure's error, when it is not retryable, attempts are used up, or the wait
                would exceed ``max_total_wait``. Its message says why retrying stopped, and its
                ``attempts`` attribute the number of attempts made. An ``APIError`` raised by ``send``
                itself gets ``attempts`` too (counting that attempt) unless it already has one.
        """
        waited = 0.0
        previous: float | None = None
        attempt = paced = 0
        paced_since: float | None = None  # the time of the first paced failure ...
        waited_before = 0.0  # ... and the backoff slept before it
        quiet: float | None = None  # the last paced failure's time with nothing accepted (the pace's word)
        while True:
            attempt += 1
            try:
                outcome = send()
            except APIError as exc:
                _set_attempts(exc, attempt, replace=False)
                raise
            if not isinstance(outcome, Failed):
                return outcome, attempt
            error = _set_attempts(outcome.error, attempt)
            if not self.is_retryable(error):
                raise error
            # the budget spent: backoff slept, plus the time the server has accepted nothing of the
            # sender's, as the last paced failure measured it (a slow limit that lets other threads
            # through is no stall: the wait for a turn behind them grows with their number, and a later
            # 503 is not charged that wait either); without that measure, the time since the first one
            spent = waited
            if self.paces(outcome) and outcome.quiet is not None:
                quiet = outcome.quiet
                spent = (waited if paced_since is None else waited_before) + quiet
            elif quiet is not None:
                spent = waited + quiet
            elif paced_since is not None:
                spent = waited_before + self.clock() - paced_since
            if self.paces(outcome) and self.max_attempts > 1:
                paced += 1
                if paced_since is None:
                    paced_since, waited_before = self.clock(), waited
                if spent > self.max_total_wait:
                    raise _amend(error, f"gave up after {attempt} attempts, {paced} of them answered 429 "
                                        f"without a retry delay, after waiting {spent:.0f}s (max_total_wait "
                                        f"{self.max_total_wait:g}s)")
                if on_retry is not None:
                    on_retry(attempt, 0.0, outcome.reason or type(error).__name__)
                continue  # the sender's shared pace spaces the next attempt
            if attempt - paced >= self.max_attempts:
                raise _amend(error, f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}")
            delay = self.backoff(attempt - paced, previous)
            server = outcome.server_delay
            if server is not None:
                if server > self.max_total_wait:
                    raise _amend(error, f"the server asked to wait {server:g}s, more than max_total_wait "
                                        f"{self.max_total_wait:g}s; not retried")
                delay = max(delay, server)
            if spent + delay > self.max_total_wait:
                raise _amend(error, f"gave up after {attempt} attempts: the next wait of {delay:.1f}s "
                                    f"would exceed max_total_wait {self.max_total_wait:g}s")
            if on_retry is not None:
                on_retry(attempt, delay, outcome.reason or type(error).__name__)
            self.sleep(delay)
            waited += delay
            previous = delay


def _set_attempts(error: APIError, attempts: int, *, replace: bool = True) -> APIError:
    """Set ``error.attempts`` (HTTP attempts made) and return ``error``; with ``replace=False``, an
    ``attempts`` already set is kept."""
    if replace or not isinstance(getattr(error, "attempts", None), int):
        error.attempts = int(attempts)  # type: ignore[attr-defined]
    return error


def _amend(error: APIError, note: str) -> APIError:
    """Append ``note`` to the message of a freshly built error (each attempt builds its own)."""
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} [{note}]", *error.args[1:])
    return error
