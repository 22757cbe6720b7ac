"""The whole-request deadline covers the response headers too: a server that drips its status line and
headers a byte at a time (each byte well within the read timeout) is cut off ``deadline`` seconds after the
request was sent, retried like any timeout, and leaves no thread or socket behind.

Every call runs on a helper thread joined with a generous bound (deadline + a few seconds), so against a
transport without the header watchdog the test fails at the bound instead of hanging: stopping the fake
server then hangs up on the stuck request."""

from __future__ import annotations

import gc
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from visionkit.errors import TransportError
from visionkit.gemini import GeminiClient, RetryPolicy
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.Ab8RN6Lq-watch-zz91XyK3m0PqW7vT2"
SLACK = 4.0  # seconds past the deadline a cut attempt may take on a loaded machine

# A connection the transport drops without closing it is closed by the garbage collector, with a
# ResourceWarning: an error here (a raised warning in a finalizer reaches pytest as an unraisable one).
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning",
                                        "error::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_dropped_sockets():
    """Collect at the end of each test, so a dropped socket is reported by the test that dropped it."""
    yield
    gc.collect()


def rgb(w: int = 96, h: int = 64) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def client(fake: FakeGemini, attempts: int = 1, **kw: Any) -> GeminiClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=attempts, sleep=lambda s: None, rng=random.Random(0)))
    return GeminiClient(api_key=KEY, base_url=fake.base_url, model="gemini-3.8-flash", **kw)


def bounded(fn, bound: float) -> dict:
    """Run ``fn()`` on a helper thread; its ``result`` or ``error`` and the seconds it ``took``. Fails the
    test when it is still running after ``bound`` seconds."""
    out: dict = {}

    def target() -> None:
        started = time.monotonic()
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc
        out["took"] = time.monotonic() - started

    worker = threading.Thread(target=target, name="bounded-call", daemon=True)
    worker.start()
    worker.join(bound)
    assert not worker.is_alive(), f"still waiting after {bound:g}s: the deadline did not stop it"
    return out


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.mark.parametrize("timeout, deadline", [
    (1.0, None),  # the default deadline: the read timeout, which each dripped byte stays far within
    (30.0, 0.5),  # set apart from a long read timeout
])
def test_dripped_headers_are_cut_at_the_deadline(fake, timeout, deadline):
    fake.push_faults(Fault.drip_headers(0.05))  # a header block that never ends, 20 bytes a second
    limit = deadline if deadline is not None else timeout
    with client(fake, timeout=timeout, deadline=deadline) as c:
        out = bounded(lambda: c.annotate(rgb(), "detect"), limit + SLACK)
    error = out.get("error")
    assert isinstance(error, TransportError), out
    assert f"timeout (model gemini-3.8-flash): TimeoutError: the answer took longer than the {limit:g}s " \
           "deadline, counted from the sending of the request" in str(error)
    assert isinstance(error.__cause__, TimeoutError) and error.attempts == 1
    assert out["took"] >= limit  # cut at the deadline, not before
    assert KEY not in repr(error.__cause__.__cause__)  # the chained requests error lost its request


def test_a_dripped_header_timeout_is_retried_like_any_timeout(fake):
    fake.push_faults(Fault.drip_headers(0.05))
    reasons = []
    with client(fake, attempts=2, timeout=30.0, deadline=0.5,
                on_retry=lambda attempt, delay, reason: reasons.append(reason)) as c:
        out = bounded(lambda: c.annotate(rgb(), "detect"), 0.5 + SLACK)
    assert "error" not in out, out
    assert out["result"].attempts == 2 and len(fake.generate_requests) == 2
    assert reasons == ["timeout"]


ANSWER = json.dumps({"candidates": [{"content": {"parts": [
    {"text": '[{"box_2d": [1, 2, 300, 400], "label": "a"}]'}]}, "finishReason": "STOP"}]})


@pytest.mark.parametrize("fault", [
    None,                                                     # a normal answer
    Fault.drip_headers(0.002, endless=False, text=ANSWER),    # headers dripped, all in well within 10 s
    Fault.slow(0.3),                                          # a silent wait for the headers
    Fault.drip(0.002, text=ANSWER),                           # the body dripped
])
def test_answers_within_the_deadline_are_fine(fake, fault):
    if fault is not None:
        fake.push_faults(fault)
    with client(fake, timeout=10.0, deadline=10.0) as c:
        out = bounded(lambda: c.detect(rgb()), 10.0 + SLACK)
    assert "error" not in out, out
    assert len(out["result"].labels) == 1


def test_headers_and_body_share_one_clock_from_the_sending_of_the_request():
    """Headers after 1.0 s, then a body that drips for about 0.5 s: each phase alone is within the 1.2 s
    deadline, together they are not (a body clock started at the headers would let it through)."""
    body = json.dumps({"candidates": [{"content": {"parts": [{"text": "[]"}]}, "finishReason": "STOP"}],
                       "pad": "x" * 20})
    with FakeGemini(responder=lambda request: Fault.drip(0.005, text=body)) as server:
        server.push_faults(Fault.slow(1.0))  # waits, then answers with the responder's dripped body
        with client(server, timeout=30.0, deadline=1.2) as c:
            out = bounded(lambda: c.annotate(rgb(), "detect"), 1.2 + SLACK)
    assert isinstance(out.get("error"), TransportError), out
    assert "longer than the 1.2s deadline" in str(out["error"])


def test_concurrent_requests_each_keep_their_own_deadline():
    """One client from a thread pool: the dripping requests are cut, the others, on the same session
    and at the same time, are answered (a watchdog shuts down only its own attempt's socket)."""
    def drip_even_widths(request):
        return Fault.drip_headers(0.05) if request.image_wh and request.image_wh[0] % 2 == 0 else None

    widths = list(range(90, 98))
    with FakeGemini(fault_for=drip_even_widths) as server, client(server, timeout=30.0, deadline=0.5) as c:
        def one(width):
            try:
                return width, c.detect(rgb(width))
            except TransportError as exc:
                return width, exc

        def run():
            with ThreadPoolExecutor(max_workers=4) as pool:
                return dict(pool.map(one, widths))

        out = bounded(run, 2 * 0.5 + 2 * SLACK)
    results = out["result"]
    cut = sorted(w for w, r in results.items() if isinstance(r, TransportError))
    assert cut == [w for w in widths if w % 2 == 0]
    assert all("0.5s deadline" in str(results[w]) for w in cut)
    assert all(len(results[w].labels) == 1 for w in widths if w % 2)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
def test_no_thread_or_socket_is_left_behind(fake):
    with client(fake, timeout=30.0, deadline=0.4) as short, client(fake, timeout=30.0, deadline=60.0) as long:
        short.detect(rgb())  # warm up: one pooled connection (and one server thread) per client
        long.detect(rgb())

        threads, fds = threading.active_count(), _fds()

        for _ in range(3):  # answered: each attempt's timer (60 s) is cancelled AND joined at once
            long.detect(rgb())
        assert [t.name for t in threading.enumerate() if t.name == "visionkit-deadline"] == []
        assert threading.active_count() == threads

        fake.push_faults(*[Fault.drip_headers(0.05)] * 3)
        for _ in range(3):  # cut: each socket is shut down by the watchdog, then closed by urllib3
            assert isinstance(bounded(lambda: short.detect(rgb()), 0.4 + SLACK).get("error"), TransportError)
        short.detect(rgb())  # a fresh connection back in the pool, as after the warm-up
        # The server's side of a cut connection ends on its next write: wait for it, within a bound.
        until = time.monotonic() + 10
        while (threading.active_count(), _fds()) != (threads, fds) and time.monotonic() < until:
            time.sleep(0.05)
        assert (threading.active_count(), _fds()) == (threads, fds)


@pytest.mark.parametrize("deadline", [float("inf"), 1e10])
def test_an_unbounded_deadline_watches_nothing_and_prints_nothing(fake, deadline, capfd):
    """A deadline past threading.TIMEOUT_MAX (inf: no bound) starts no watchdog timer, whose thread would
    otherwise die printing an OverflowError on every request."""
    started: list[str] = []
    real_start = threading.Thread.start

    def spy(self, *args, **kwargs):
        started.append(self.name)
        return real_start(self, *args, **kwargs)

    with client(fake, timeout=5.0, deadline=deadline) as c:
        threading.Thread.start = spy
        try:
            out = c.annotate(rgb(), "detect")
        finally:
            threading.Thread.start = real_start
    assert out is not None
    assert "visionkit-deadline" not in started, started
    assert "Exception in thread" not in capfd.readouterr().err
