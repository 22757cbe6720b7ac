"""The header phase of the whole-request deadline: a watchdog that shuts down one attempt's socket.

Neither library has a wall-clock limit to reuse. urllib3's ``Timeout(total=...)`` only shortens the
per-read timeout by the time the connect took; its docstring (urllib3 2.x, ``urllib3.util.Timeout``) says
"the read and total timeouts only measure the time between read operations on the socket ... if a server
streams one byte every fifteen seconds, a timeout of 20 seconds will not trigger". requests' own docs say
its timeout "is not a time limit on the entire response download", and an overall timeout was declined
(psf/requests#3099, "overall timeout", closed; #4276: "not something that we can provide"). So a server
that sends its status line and headers one byte at a time, each within the read timeout, would hold a
request for hours. This module bounds that wait:

* :class:`Watchdog` is one attempt's deadline, entered on the calling thread around the request. When a
  connection has sent the request (its body included) and starts waiting for the answer
  (``getresponse``), it arms the watchdog with its socket; a :class:`threading.Timer` then shuts that
  socket down (``shutdown(SHUT_RDWR)``, never ``close``: the reading thread still owns it) when the
  deadline passes, which wakes the blocked read, and the reading thread then closes the connection at
  once (urllib3 drops a failed one, to be closed by the garbage collector with a ResourceWarning; the
  transport closes a response cut while its body is read the same way). ``getresponse`` disarms the
  watchdog when the headers are in: the
  body is read by :class:`~visionkit.gemini.transport.Transport` against the same clock, from
  :attr:`Watchdog.sent_at`. Disarming cancels and joins the timer, so no thread outlives its attempt.
* :class:`DeadlineAdapter` is the ``requests`` adapter whose connections do the arming. It wraps each
  pool's connection class (any: plain, TLS, through a proxy) on the way to ``urlopen``. Connections of
  other adapters ignore the watchdog, so a session of your own gets this bound only if it mounts a
  :class:`DeadlineAdapter`; without one, only the body is bounded, from the arrival of the headers.

Thread-safe: the watchdog of the running attempt is found through a thread-local, so concurrent requests
on one session each arm their own; the timer and the disarming thread meet under a lock, and the socket
is shut down only while its connection is inside ``getresponse``, never once it is back in the pool.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter

__all__ = ["DeadlineAdapter", "Watchdog"]

_current = threading.local()


class Watchdog:
    """The deadline of one attempt: ``seconds`` from the moment its request was sent.

    Use as a context manager around the request, on the thread that sends it. Attributes, read after the
    request returned or raised: ``sent_at`` (``time.monotonic()`` when the request had been sent, None if
    no :class:`DeadlineAdapter` connection armed it) and ``expired`` (True once the watchdog shut the
    socket down: whatever the request raised is then the deadline's doing).
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.sent_at: float | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._sock: Any = None
        self._timer: threading.Timer | None = None
        self._outer: Watchdog | None = None

    def __enter__(self) -> Watchdog:
        self._outer = getattr(_current, "watchdog", None)
        _current.watchdog = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()
        _current.watchdog = self._outer

    def arm(self, sock: Any) -> None:
        """Shut ``sock`` down when the deadline passes, unless :meth:`disarm` comes first."""
        with self._lock:
            if self.sent_at is None:
                self.sent_at = time.monotonic()
            if self._timer is not None or self.expired:
                return
            remaining = max(0.0, self.seconds - (time.monotonic() - self.sent_at))
            if not remaining < threading.TIMEOUT_MAX:  # deadline=inf (or ~300 years): nothing to watch
                return
            self._sock = sock
            timer = threading.Timer(remaining, self._expire)
            timer.daemon = True
            timer.name = "visionkit-deadline"
            self._timer = timer
            timer.start()

    def disarm(self) -> None:
        """Stop watching; returns once the timer thread is gone (a firing one has finished)."""
        with self._lock:
            timer, self._timer, self._sock = self._timer, None, None
        if timer is not None:
            timer.cancel()
            timer.join()

    def _expire(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is None:  # disarmed in the meantime
                return
            self.expired = True
            _shutdown(sock)


def _shutdown(sock: Any) -> None:
    """Wake a thread blocked reading ``sock``. For a TLS socket the plain socket's ``shutdown`` is used:
    ``SSLSocket.shutdown`` would drop the TLS state under the reading thread."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)  # urllib3 SSLTransport
    with contextlib.suppress(OSError, ValueError):
        if isinstance(raw, socket.socket):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)
        elif hasattr(sock, "shutdown"):
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixed into a urllib3 connection class: arm the thread's watchdog while waiting for the answer."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = getattr(_current, "watchdog", None)
        sock = getattr(self, "sock", None)
        if watchdog is None or sock is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        watchdog.arm(sock)
        try:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            watchdog.disarm()
            if watchdog.expired:  # cut: close the socket here rather than leave it to whoever drops us
                with contextlib.suppress(Exception):
                    self.close()  # type: ignore[attr-defined]
            raise
        finally:
            watchdog.disarm()


@functools.cache
def _watched_class(cls: type) -> type:
    return type(f"Watched{cls.__name__}", (_Watched, cls), {})


def _watch(pool: Any) -> Any:
    cls = getattr(pool, "ConnectionCls", None)
    if isinstance(cls, type) and hasattr(cls, "getresponse") and not issubclass(cls, _Watched):
        pool.ConnectionCls = _watched_class(cls)  # this pool only; urllib3's classes stay as they are
    return pool


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections arm the calling thread's :class:`Watchdog` (module doc).

    Takes the arguments of ``requests.adapters.HTTPAdapter``; without a watchdog it behaves exactly
    like one.
    """

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        # What HTTPAdapter.send calls since requests 2.32.2, the lowest version pyproject.toml allows
        # (2.32.0 and 2.32.1, yanked, called a private _get_connection instead).
        return _watch(super().get_connection_with_tls_context(*args, **kwargs))
