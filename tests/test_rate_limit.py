"""Issue 19, item 10b: under a rate limit whose 429s carry no RetryInfo, every image is labelled, at close
to the limit's rate, because all of a client's threads slow down together (visionkit.gemini.throttle).

Before, each thread backed off on its own: they kept hitting the limit together, and images failed after 5
attempts. Against FakeGemini with :class:`visionkit.testing.rate_limit.RateLimit` (a sliding window) on
127.0.0.1. The assertions are on counts, and on the rate with a margin: the rate is measured from the
server's accepted requests, after the first window (which admits a burst), and a few seconds suffice.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionkit import label
from visionkit.gemini import GeminiClient
from visionkit.gemini.throttle import BETA, MIN_RATE, Throttle
from visionkit.testing import FakeGemini
from visionkit.testing.rate_limit import RateLimit

KEY = "sekrit-rate-KEY-4242"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rate") / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(40):
        pixels = rng.integers(0, 255, (24 + i % 5, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"i{i:02d}.png")
    return folder


# (requests accepted, per window seconds, images, concurrency)
CASES = [(4, 0.5, 40, 16), (6, 1.0, 36, 32)]


@pytest.mark.parametrize(("n", "window", "count", "concurrency"), CASES,
                         ids=[f"{n}-per-{w}s-{c}-threads" for n, w, _, c in CASES])
def test_429_without_retry_info_slows_every_thread_and_every_image_is_labelled(images, tmp_path, n, window,
                                                                               count, concurrency):
    limit = RateLimit(n, window)
    with FakeGemini(api_key=KEY, fault_for=limit) as server, \
            GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        summary = label([images], tmp_path / "out", task="detect", client=client, concurrency=concurrency,
                        limit=count, overlays=False)
    assert summary.failed == 0 and summary.succeeded == count, summary.failures[:3]
    assert len(limit.accepted) == count  # each image paid once
    # Threads that back off together do not thrash: far fewer refusals than a free-for-all would draw.
    assert len(limit.refused) <= 2 * count, len(limit.refused)
    # The rate the server accepted after its first window (a burst the limit admits at once) is at least
    # 80% of the limit's.
    steady = [t for t in limit.accepted if t >= limit.accepted[0] + window]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate >= 0.8 * limit.rate, f"{rate:.1f} requests/s against a limit of {limit.rate:.1f}"


def test_the_throttle_costs_nothing_before_a_429():
    throttle = Throttle()
    starts = [throttle.acquire() for _ in range(1000)]
    for _ in starts:
        throttle.succeeded()
    assert throttle.rate is None and throttle.current_rate() is None and throttle.decreases == 0
    assert starts == sorted(starts)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# (attempts sent in the last second, attempts accepted in the last second, the rate after one 429)
DECREASES = [
    (10, 0, BETA * 10),  # 0.7 x the rate attempts were sent at
    (10, 20, 20.0),  # never below what the server accepted: a long window's burst is not a collapse
    (1, 0, BETA),
    (0, 0, MIN_RATE),  # never below the floor
]


@pytest.mark.parametrize(("sent", "accepted", "rate"), DECREASES)
def test_a_429_without_a_delay_sets_the_shared_rate(sent, accepted, rate):
    clock = Clock()
    throttle = Throttle(clock)
    clock.now -= 5.0
    throttle.acquire()  # the first attempt, 5 s ago: rates are measured over whole spans
    clock.now += 5.0 - 0.5
    starts = [throttle.acquire() for _ in range(sent)]  # not throttled yet: no wait
    for _ in range(accepted):
        throttle.succeeded()
    clock.now += 0.5
    throttle.throttled(starts[-1] if starts else clock.now)
    assert throttle.current_rate() == pytest.approx(rate) and throttle.decreases == 1
    throttle.throttled(clock.now - 0.1)  # an attempt sent before the decrease: the same congestion
    assert throttle.decreases == 1
    clock.now += 30.0  # CUBIC growth: back above the rate of the 429 (from the floor, slowly: it is scaled)
    assert throttle.current_rate() > (max(sent, accepted) if max(sent, accepted) >= 1 else rate)
