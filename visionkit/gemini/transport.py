"""The HTTP layer under :class:`~visionkit.gemini.GeminiClient`: key, URL and timeout checks, one
``requests.Session``, retries, typed errors, and the limits every answer passes through.

* The API key travels ONLY in the ``x-goog-api-key`` header. It is never put in a URL, a log record, an
  exception message or ``repr``; redirects are not followed (``requests`` would forward the header).
* **Key echoes.** Everything the server sends is redacted before anyone sees it: the body (so labels,
  saved responses, ``api_status``, ``api_message`` and error snippets), and any run of 8 or more
  characters that also occurs in the key, not only the whole key, in clear, JSON-escaped, URL- or
  HTML-encoded, or split over text parts (:mod:`~visionkit.gemini.redact`).
* **Whole-request deadline.** ``timeout`` bounds each socket read, but a server dripping one byte at a time
  never trips it. Each attempt therefore has a deadline of ``deadline`` seconds (default: the read
  timeout) counted from the moment its request has been sent: the wait for the status line and headers
  and their reading are watched by :mod:`~visionkit.gemini.deadline` (a timer shuts the attempt's socket
  down), the body is read in pieces against the same clock. An attempt past it fails as a timeout and is
  retried like one. Connecting and sending the request body are not counted: a large upload is bounded by
  the socket timeouts. A stalled body read can overrun the deadline by at most one read timeout. A
  ``session`` passed in gets the header bound only if it mounts a
  :class:`~visionkit.gemini.deadline.DeadlineAdapter` (the client's own session does).
* **Decoded size cap.** The body is decompressed here (``Accept-Encoding: gzip, deflate`` only), with a
  cap of :data:`MAX_RESPONSE_BYTES` on the DECODED size (a 1 MB gzip bomb can inflate to 1 GiB). A body
  over it raises :class:`~visionkit.errors.ResponseError` and is never saved. The largest real answers are
  far below it (65,536 output tokens of JSON with PNG masks are a few MB).
* Error statuses become :class:`~visionkit.errors.HTTPStatusError` subclasses carrying ``status``,
  ``api_status`` and ``api_message`` from the ``{"error": {...}}`` body; timeouts and connection errors
  become :class:`~visionkit.errors.TransportError`. Retries: :class:`~visionkit.gemini.retry.RetryPolicy`.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from ..errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    HTTPStatusError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from .deadline import Watchdog
from .decoding import Decoder
from .redact import MIN_KEY_FRAGMENT, redact_key, redact_split_parts
from .retry import Failed, RetryPolicy, parse_retry_after, quota_ids, retry_info_delay
from .throttle import Throttle

__all__ = [
    "DEFAULT_BASE_URL",
    "KEY_ENV_VARS",
    "MAX_CONNECT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "Transport",
    "redact_key",
]

logger = logging.getLogger("visionkit.gemini")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
#: Environment variables read for the API key, in order of precedence.
KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
#: Longest connect timeout, in seconds, when ``timeout`` is a single number.
MAX_CONNECT_TIMEOUT = 10.0
#: Largest DECODED response body accepted (64 MiB); larger bodies fail the request and are never saved.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024

#: What one attempt may raise from the network (ResponseError, the size cap, is not among them).
_NETWORK_ERRORS = (requests.RequestException, OSError, urllib3.exceptions.HTTPError,
                   http.client.HTTPException)

_STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {400: BadRequestError, 401: AuthError, 403: AuthError,
                                                     404: NotFoundError}


def resolve_key(api_key: str | None) -> str:
    candidates = [("api_key argument", api_key)] + [(name, os.environ.get(name)) for name in KEY_ENV_VARS]
    found = [(where, value.strip()) for where, value in candidates if value and value.strip()]
    if not found:
        # Worded for the command line as well as for Python (where GeminiClient(api_key=...) also works,
        # as its docstring says): `pass api_key=...` means nothing to a CLI user.
        raise ConfigError("no Gemini API key: set the GEMINI_API_KEY (or GOOGLE_API_KEY) environment "
                          "variable, e.g. export GEMINI_API_KEY=...; get a key at "
                          "https://aistudio.google.com/apikey")
    where, key = found[0]
    if where in KEY_ENV_VARS and len(found) > 1 and found[1][1] != key:
        logger.warning("both %s and %s are set to different keys; using %s", where, found[1][0], where)
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigError(f"the Gemini API key from the {where} contains spaces or control characters")
    return key


def resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get("GEMINI_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
    # Checked first, and never echoed: a query (``?key=...``) or userinfo (``user:pass@``) may hold a secret.
    if "?" in url or "#" in url or "@" in _authority(url):
        raise ConfigError("base_url must not contain a query, a fragment or credentials (a key in a URL "
                          "leaks into logs and proxies; the API key is sent in a header), got "
                          f"{safe_url(url)!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, "
                          f"got {safe_url(url)!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        logger.warning("base_url %s is plain http: the API key would cross the network unencrypted", url)
    return url


def _authority(url: str) -> str:
    """The ``user:pass@host:port`` part of ``url`` (scheme optional), without parsing it."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def safe_url(url: str) -> str:
    """``url`` for a message: without its query, fragment or userinfo (any of which may hold a secret)."""
    url = re.split(r"[?#]", url, maxsplit=1)[0]
    authority = _authority(url)
    if "@" in authority:
        scheme = url.split("://", 1)[0] + "://" if "://" in url else ""
        url = scheme + "***@" + authority.rsplit("@", 1)[1] + url[len(scheme) + len(authority):]
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_timeout(timeout: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(timeout, (tuple, list)):
        if len(timeout) != 2:
            raise ConfigError(f"timeout must be seconds or (connect, read), got {timeout!r}")
        connect, read = (float(v) for v in timeout)
    else:
        read = float(timeout)
        connect = min(read, MAX_CONNECT_TIMEOUT)
    if not (connect > 0 and read > 0):
        raise ConfigError(f"timeout must be positive, got {timeout!r}")
    return connect, read


def scrub(exc: BaseException) -> None:
    """Drop the prepared request (it holds the key header) from a requests exception we chain."""
    if hasattr(exc, "request"):
        with contextlib.suppress(AttributeError):
            exc.request = None


def json_body(response: requests.Response) -> Any:
    """The body as JSON, or None when it is not JSON (also for absurd nesting: RecursionError)."""
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


class Transport:
    """Session, retries and limits for one client. Thread-safe: settings never change after construction.

    Args:
        api_key: the resolved key.
        timeout: ``(connect, read)`` seconds per socket operation.
        deadline: seconds an attempt may take from the moment its request was sent until its answer
            (headers and body) is in (default: the read timeout).
        retry: the retry policy.
        session: the session (owned by the caller).
        on_retry: ``on_retry(attempt, delay, reason)`` before each retry wait.
        max_body_bytes: the decoded-size cap.
    """

    def __init__(self, api_key: str, timeout: tuple[float, float], retry: RetryPolicy,
                 session: requests.Session, *, deadline: float | None = None,
                 on_retry: Callable[[int, float, str], None] | None = None,
                 max_body_bytes: int = MAX_RESPONSE_BYTES, user_agent: str = "visionkit"):
        self._api_key = api_key
        self.timeout = timeout
        self.deadline = float(deadline) if deadline is not None else timeout[1]
        if not self.deadline > 0:
            raise ConfigError(f"deadline must be positive, got {deadline!r}")
        self.retry = retry
        self.session = session
        self.on_retry = on_retry
        self.max_body_bytes = int(max_body_bytes)
        self.user_agent = user_agent
        self.closed = False
        self.throttle = Throttle()  # one pace for every thread after a 429 without a delay (.throttle)

    def redact(self, text: str) -> str:
        return redact_key(text, self._api_key)

    def redact_body(self, body: bytes, what: str, warn: bool = True) -> bytes:
        """``body`` with every echo of (a run of) the key redacted; the same object when there was none.
        ``warn``: log a warning when something was redacted."""
        clean = body
        if len(self._api_key) >= MIN_KEY_FRAGMENT:
            clean = redact_split_parts(redact_key(body, self._api_key), self._api_key)
        if clean is not body and warn:
            logger.warning("the server echoed (part of) the API key in its answer (%s); redacted", what)
        return clean

    def _notify_retry(self, attempt: int, delay: float, reason: str) -> None:
        logger.debug("attempt %d failed (%s); retrying in %.2fs", attempt, reason, delay)
        if self.on_retry is not None:
            self.on_retry(attempt, delay, reason)

    def _transport_failure(self, exc: BaseException, what: str, kind: str) -> Failed:
        error = TransportError(self.redact(
            f"Gemini API request failed: {kind} ({what}): {type(exc).__name__}: {exc}"))
        error.__cause__ = exc
        error.__suppress_context__ = True
        scrub(exc)
        return Failed(error, None, kind)

    def _cut_message(self) -> str:
        return (f"the answer took longer than the {self.deadline:g}s deadline, counted from the sending of "
                "the request (its headers were still awaited)")

    def _attempt_failure(self, exc: BaseException, what: str, watchdog: Watchdog) -> Failed:
        """The failure of one attempt that raised ``exc`` (retried per the policy), or raise when the
        request could not even be sent. Once the watchdog shut the socket down, whatever the request raised
        (a reset, a truncated status line) is the deadline's doing."""
        if isinstance(exc, (requests.Timeout, TimeoutError, urllib3.exceptions.TimeoutError)):
            return self._transport_failure(exc, what, "timeout")  # a socket timeout, even if both fired
        if watchdog.expired:
            scrub(exc)
            cut = TimeoutError(self._cut_message())
            cut.__cause__ = exc
            return self._transport_failure(cut, what, "timeout")
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return self._transport_failure(exc, what, "connection error")
        if isinstance(exc, requests.RequestException):  # before OSError: RequestException is an IOError
            error = TransportError(self.redact(f"Gemini API request could not be sent ({what}): "
                                               f"{type(exc).__name__}: {exc}"))
            scrub(exc)
            raise error from exc
        return self._transport_failure(exc, what, "connection error")  # OSError etc. while reading the body

    def _read_body(self, response: requests.Response, started: float, what: str) -> None:
        """Read, decode and redact the whole body under the deadline and the size cap; store it on
        ``response`` so ``.content``, ``.text`` and ``.json()`` work as usual."""
        raw = response.raw
        decoder = Decoder(response.headers.get("Content-Encoding", ""), self.max_body_bytes)
        read = getattr(raw, "read1", None)
        chunks = []
        try:
            while True:
                if time.monotonic() - started > self.deadline:
                    raise TimeoutError(f"the answer took longer than the {self.deadline:g}s deadline "
                                       f"({decoder.size} bytes received)")
                data = read(_CHUNK, decode_content=False) if read else raw.read(_CHUNK, decode_content=False)
                if not data:
                    break
                chunks.append(decoder.feed(data))
            chunks.append(decoder.flush())
        except ResponseError as exc:
            response.close()
            raise ResponseError(f"{exc} ({what})") from None
        except zlib.error as exc:
            response.close()
            raise ResponseError(f"the response body is not valid {response.headers.get('Content-Encoding')} "
                                f"data: {exc} ({what})") from None
        body = self.redact_body(b"".join(chunks), what)
        response._content = body  # requests' own cache of the body: .json()/.text read it
        response._content_consumed = True

    def status_failure(self, response: requests.Response, what: str, not_found_hint: str = "") -> Failed:
        status = response.status_code
        body = json_body(response)
        error_obj = body.get("error") if isinstance(body, Mapping) else None
        error_obj = error_obj if isinstance(error_obj, Mapping) else None
        api_status = error_obj.get("status") if error_obj else None
        api_status = self.redact(api_status)[:80] if isinstance(api_status, str) else None
        api_message = error_obj.get("message") if error_obj else None
        api_message = self.redact(api_message) if isinstance(api_message, str) else None
        head = f"Gemini API {status}" + (f" {api_status}" if api_status else "")
        detail = api_message or f"{response.reason or 'error'} ({len(response.content)}-byte non-JSON body)"
        message = f"{head}: {detail} ({what})"
        delays = [d for d in (retry_info_delay(error_obj),
                              parse_retry_after(response.headers.get("Retry-After"))) if d is not None]
        server_delay = max(delays) if delays else None
        common = {"status": status, "api_status": api_status, "api_message": api_message}
        if status == 429:
            ids = [self.redact(i) for i in quota_ids(error_obj)]
            per_day = [i for i in ids if "perday" in i.lower()]
            quota_id = per_day[0] if per_day else (ids[0] if ids else None)
            if per_day:
                message = (f"{head}: the daily quota is exhausted (quota {quota_id}); retrying will not help "
                           f"until it resets at midnight Pacific time ({what}). API message: {detail}")
            error: HTTPStatusError = RateLimitError(self.redact(message), retry_delay=server_delay,
                                                    quota_id=quota_id, per_day=bool(per_day), **common)
        else:
            if status in (401, 403):
                message += "; check the API key (GEMINI_API_KEY / GOOGLE_API_KEY) and its restrictions"
            elif status == 404 and not_found_hint:
                message += f"; {not_found_hint}"
            elif 300 <= status < 400:
                message += "; redirects are not followed"
            cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else HTTPStatusError)
            error = cls(self.redact(message), **common)
        response.close()
        return Failed(error, server_delay, f"HTTP {status}" + (f" {api_status}" if api_status else ""),
                      paced=status == 429 and server_delay is None and not error.per_day)

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                data: Any = None, what: str = "", not_found_hint: str = "",
                retry: RetryPolicy | None = None, stream: bool = False) -> tuple[requests.Response, int]:
        """One API call with retries. Returns ``(response, attempts)`` for a 2xx answer, its body read
        (under the deadline and the size cap, and redacted).

        ``data`` is bytes or a binary file (rewound before each attempt, so a large upload streams from
        disk); ``retry`` replaces the policy for this call (the Batch API's create is not idempotent);
        ``stream=True`` leaves a 2xx body unread for ``iter_content`` (a large download: the deadline
        covers only the wait for its headers, the size cap does not apply, and the caller redacts it with
        :meth:`redact_body`; error bodies are still read with both, and redacted).
        """
        if self.closed:
            raise ConfigError("this GeminiClient is closed")
        sent = {"x-goog-api-key": self._api_key, "User-Agent": self.user_agent,
                "Accept-Encoding": "gzip, deflate"}
        sent.update(headers or {})
        what = what or f"{method} {urlsplit(url).path}"

        def send() -> requests.Response | Failed:
            if logger.isEnabledFor(logging.DEBUG):  # the URL is the caller's (a base URL, an upload URL)
                logger.debug("%s", self.redact(f"{method} {url} ({what})"))
            if hasattr(data, "seek"):
                data.seek(0)
            # on the throttle's clock, which `started` below is not; out of patience once the server has
            # accepted nothing for the retry budget (a request then ends at its next 429)
            turn = self.throttle.acquire((retry or self.retry).max_total_wait)
            watchdog = Watchdog(self.deadline)
            response = None
            try:
                with watchdog:  # the session's DeadlineAdapter arms it once the request is sent
                    response = self.session.request(method, url, headers=sent, data=data,
                                                    timeout=self.timeout, allow_redirects=False, stream=True)
                if watchdog.expired:  # http.client takes a header block cut short by EOF for a whole one
                    response.close()
                    raise TimeoutError(self._cut_message())
                # One clock for headers and body, from the sending of the request (the upload, a batch
                # JSONL may take minutes, is bounded by the socket timeouts). A session without a
                # DeadlineAdapter never armed it: then the clock starts once the headers are in.
                started = watchdog.sent_at if watchdog.sent_at is not None else time.monotonic()
                if not (stream and 200 <= response.status_code < 300):
                    self._read_body(response, started, what)
            except _NETWORK_ERRORS as exc:
                if response is not None:  # cut while reading the body: close its connection now, not in GC
                    response.close()
                return self._attempt_failure(exc, what, watchdog)
            if 200 <= response.status_code < 300:
                self.throttle.succeeded()
                return response
            failed = self.status_failure(response, what, not_found_hint)
            if failed.paced:
                return replace(failed, quiet=self.throttle.throttled(turn))
            return failed

        return (retry or self.retry).run(send, on_retry=self._notify_retry)
