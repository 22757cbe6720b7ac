"""The shared 429 pace at free-tier rates (a few requests a MINUTE, 429s without RetryInfo): every request
is answered, and the number of 429s stays bounded.

Before, the pace could not go below 0.5 attempts a second (4x a 7.5 RPM limit), CUBIC regrew from a
0.125/s cut to 10/s within 3 s, the accepted-rate floor only looked 10 s back, and a request had its own
budget of 30 paced attempts: at 7.5 RPM, 2 of 16 requests gave up after 30 attempts.

Time is scaled so the test takes seconds: the throttle and the retry budget read a clock that runs
``SCALE`` times faster than the real one, and the fake's sliding window is ``SCALE`` times shorter. The
limits are stated in scaled (client) time."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visionkit.errors import RateLimitError, ServerError
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.gemini.retry import Failed
from visionkit.gemini.throttle import MIN_RATE, Throttle
from visionkit.testing import FakeGemini, Fault
from visionkit.testing.rate_limit import RateLimit

KEY = "sekrit-slow-rate-KEY-77"
SCALE = 40.0  # client seconds per real second


def scaled() -> float:
    return time.monotonic() * SCALE


# (accepted, per window in client seconds, requests, concurrency): 7.5, 5 and 2 requests a minute; 40
# requests behind 16 threads wait 2 minutes for each turn, so only a server that accepts nothing at all
# may spend a request's retry budget, not the queue
CASES = [(1, 8.0, 16, 16), (1, 8.0, 40, 16), (5, 60.0, 20, 8), (2, 60.0, 8, 8)]


@pytest.mark.parametrize(("n", "window", "count", "concurrency"), CASES,
                         ids=[f"{n}-per-{w:g}s-{c}-requests" for n, w, c, _ in CASES])
def test_every_request_is_answered_at_a_few_requests_a_minute(n, window, count, concurrency):
    limit = RateLimit(n, window / SCALE)
    retry = RetryPolicy(sleep=lambda s: time.sleep(s / SCALE), rng=random.Random(0), clock=scaled)
    with FakeGemini(api_key=KEY, fault_for=limit) as server, \
            GeminiClient(api_key=KEY, base_url=server.base_url, retry=retry, timeout=30) as client:
        client._http.throttle = Throttle(scaled)

        def one(width: int):
            try:
                return client.detect(np.zeros((24, width, 3), np.uint8))
            except Exception as exc:  # counted below
                return exc

        started = scaled()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(40, 40 + count)))
        took = scaled() - started
    failed = [r for r in results if isinstance(r, Exception)]
    assert failed == [], f"{len(failed)} of {count} failed: {failed[:1]}"
    assert len(limit.accepted) == count
    # bounded refusals: the first burst's and the descent from its rate (a few per thread, more on a
    # loaded machine, whose slower answers let fewer decreases happen a second), then about one a window
    assert len(limit.refused) <= 2 * count + 3 * concurrency + 10, len(limit.refused)
    # close to the limit: the ideal is the first burst, then n per window
    ideal = (count - n) / n * window
    assert took <= 2.0 * ideal + 2 * window, f"{took:.0f}s (client time) against an ideal of {ideal:.0f}s"


def test_a_server_that_accepts_nothing_ends_every_request_within_the_budget():
    budget = 120.0
    retry = RetryPolicy(max_total_wait=budget, sleep=lambda s: time.sleep(s / SCALE), clock=scaled)
    with FakeGemini(api_key=KEY, fault_for=lambda r: Fault.status(429)) as server, \
            GeminiClient(api_key=KEY, base_url=server.base_url, retry=retry, timeout=30) as client:
        client._http.throttle = Throttle(scaled)

        def one(width: int):
            try:
                client.detect(np.zeros((24, width, 3), np.uint8))
            except RateLimitError as exc:
                return exc

        started = scaled()
        with ThreadPoolExecutor(8) as pool:
            errors = list(pool.map(one, range(40, 48)))
        took = scaled() - started
        sent = len(server.generate_requests)
    assert all(isinstance(e, RateLimitError) and "without a retry delay" in str(e) for e in errors), errors
    assert took <= budget + 70.0  # the last turn may come up to a minute (the floor) after the budget ran out
    assert sent <= 8 + 60, sent  # the first burst, the descent to the floor, then one a minute


def test_the_floor_is_one_attempt_a_minute():
    assert pytest.approx(1 / 60) == MIN_RATE


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "k_at_least"), [(1.0, 5.0), (2.0, 2.5), (4.0, 1.0), (20.0, 1.0)])
def test_cubic_regrowth_is_scaled_to_the_rate(rate, k_at_least):
    """After a cut from ``rate``, the pace is back at ``rate`` after K seconds: a few attempts' worth
    at any rate below 4/s (RFC 8312's constant holds as it is from 4/s up)."""
    clock = Clock()
    throttle = Throttle(clock)
    clock.now -= 60.0
    throttle.acquire()
    clock.now += 60.0 - 0.5
    starts = [throttle.acquire() for _ in range(max(1, round(rate)))]
    clock.now += 0.5
    throttle.throttled(starts[-1])
    cut = throttle.current_rate()
    assert cut < rate
    clock.now += k_at_least * 0.9
    assert throttle.current_rate() < rate  # not back yet
    clock.now += 600.0
    assert throttle.current_rate() > rate  # and past it, eventually


def _paced_run(turn: float, quiet: float | None, answered_at: int | None = None):
    """RetryPolicy.run over attempts answered 429 without a delay, each ``turn`` seconds long (the wait
    for the pace), until attempt ``answered_at`` is answered; returns (outcome or error, attempt times)."""
    clock = Clock()
    policy = RetryPolicy(max_attempts=3, max_total_wait=100.0, clock=clock, sleep=lambda s: None)
    calls = []

    def send():
        calls.append(clock.now)
        clock.now += turn
        if len(calls) == answered_at:
            return "answered"
        return Failed(RateLimitError("429", status=429), None, "HTTP 429", paced=True, quiet=quiet)

    try:
        return policy.run(send), calls
    except RateLimitError as exc:
        return exc, calls


def test_paced_attempts_share_the_one_time_budget():
    """No attempt budget of their own: a request is paced until max_total_wait is spent, then fails."""
    error, calls = _paced_run(7.0, None)
    assert isinstance(error, RateLimitError)
    assert "after waiting 10" in str(error) and "max_total_wait 100s" in str(error)
    assert 14 <= len(calls) <= 16 and error.attempts == len(calls)  # 100 s of 7 s turns, not 3 or 30


def test_waiting_for_a_turn_while_others_are_answered_spends_no_budget():
    # a minute's queue for each turn, while other threads' attempts were accepted 5 s ago
    assert _paced_run(60.0, 5.0, answered_at=5)[0] == ("answered", 5)
    # the server accepted nothing for longer than the budget: the request ends at its next 429
    error, calls = _paced_run(1.0, 101.0)
    assert isinstance(error, RateLimitError) and len(calls) == 1


def test_a_policy_that_does_not_pace_counts_attempts_not_the_quiet_time():
    """The Batch API's create backs its 429s off within max_attempts (a full batch quota), whatever the
    shared pace says about the server's silence."""
    class NoPace(RetryPolicy):
        def paces(self, failed: Failed) -> bool:
            return False

    sleeps: list[float] = []
    policy = NoPace(max_attempts=3, base_delay=1.0, max_total_wait=100.0, jitter="none", sleep=sleeps.append)
    outcomes = [Failed(RateLimitError("429", status=429), None, "HTTP 429", paced=True, quiet=1e6)] * 2
    assert policy.run(lambda: outcomes.pop() if outcomes else "created") == ("created", 3)
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize("quiet, retried", [(0.0, True), (50.0, True), (299.5, False)])
def test_a_failure_after_a_long_turn_is_charged_the_quiet_time_not_the_turn(quiet, retried):
    """A paced 429, then a 400 s wait for a turn while others were answered, then a 503: the 503 is retried
    with backoff unless the server had accepted nothing for (almost) the whole budget."""
    clock = Clock()
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_total_wait=300.0, jitter="none", clock=clock,
                         sleep=lambda s: setattr(clock, "now", clock.now + s))
    outcomes = [Failed(RateLimitError("429", status=429), None, "HTTP 429", paced=True, quiet=quiet),
                Failed(ServerError("503", status=503), None, "HTTP 503")]

    def send():
        if not outcomes:
            return "answered"
        if len(outcomes) == 1:
            clock.now += 400.0  # the turn, behind other threads' accepted attempts
        return outcomes.pop(0)

    if retried:
        assert policy.run(send) == ("answered", 3)
    else:
        with pytest.raises(ServerError, match="would exceed max_total_wait"):
            policy.run(send)
