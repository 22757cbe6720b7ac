"""Faults that :class:`~visionkit.testing.FakeGemini` injects into generateContent requests.

Besides statuses, resets and slow answers, the hostile-server kinds of issue 11:

* :meth:`Fault.drip`: a 200 whose body arrives one byte every ``seconds`` (each socket read is quick, so
  only a whole-request deadline stops it);
* :meth:`Fault.drip_headers`: the same for the status line and headers, before any body (by default the
  header block never ends);
* :meth:`Fault.gzip_bomb`: ``Content-Encoding: gzip`` whose body inflates to ``size`` bytes (1 GiB by
  default from about 1 MB on the wire: 16 MiB gzip members, repeated);
* :meth:`Fault.echo_key`: the request's own ``x-goog-api-key`` echoed back, in an error ``status``, an
  error ``message``, an HTML page (at offset 70) or a detection label; in a 200 answer also encoded
  (issue 19): JSON-escaped in a label or in ``modelVersion``, split over 5-character text parts, or
  in a label percent-encoded (once or twice: ``%2541``), as HTML references without their ``;``
  (``&#65&#x51``), or encoded whole in base64 or hex;
* :meth:`Fault.oversize`: a valid generateContent answer of ``size`` bytes, uncompressed.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from dataclasses import dataclass

__all__ = ["ECHO_PLACES", "Fault", "bomb_body", "echo_body", "oversize_body"]

#: Where :meth:`Fault.echo_key` puts the key.
ECHO_PLACES = ("status", "message", "html", "label", "label-escaped", "label-split", "label-percent",
               "model-version-escaped", "label-percent-twice", "label-html-bare", "label-base64", "label-hex")
#: The places of :data:`ECHO_PLACES` that answer 200 with a detection.
_ECHO_ANSWERS = ("label", "label-escaped", "label-split", "label-percent", "model-version-escaped",
                 "label-percent-twice", "label-html-bare", "label-base64", "label-hex")

@dataclass(frozen=True)
class Fault:
    """A failure to inject into one generateContent request. Build with the static constructors."""

    kind: str
    code: int = 200
    message: str | None = None
    retry_delay: float | str | None = None
    quota_id: str | None = None
    retry_after: float | str | None = None
    reason: str = ""
    text: str = ""
    seconds: float = 0.0
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"

    @staticmethod
    def status(code: int, retry_delay: float | str | None = None, quota_id: str | None = None,
               retry_after: float | str | None = None, message: str | None = None) -> Fault:
        """An error status with Gemini's error body. ``retry_delay`` (seconds, or a Duration string such as
        ``"30.5s"``) adds a RetryInfo detail; ``quota_id`` a QuotaFailure (a 429 always has one: the
        per-minute free-tier quota by default); ``retry_after`` a ``Retry-After`` header."""
        return Fault("status", code=code, message=message, retry_delay=retry_delay, quota_id=quota_id,
                     retry_after=retry_after)

    @staticmethod
    def reset() -> Fault:
        """Close the connection without answering (the client sees a connection reset)."""
        return Fault("reset")

    @staticmethod
    def slow(seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (longer than the client's timeout)."""
        return Fault("slow", seconds=seconds)

    @staticmethod
    def blocked(reason: str = "SAFETY") -> Fault:
        """HTTP 200 with ``promptFeedback.blockReason`` and no candidates."""
        return Fault("blocked", reason=reason)

    @staticmethod
    def finish(reason: str, text: str = "") -> Fault:
        """HTTP 200 whose candidate stops with ``finishReason`` ``reason`` (and holds ``text``, if any)."""
        return Fault("finish", reason=reason, text=text)

    @staticmethod
    def drip(seconds: float = 0.5, text: str = "") -> Fault:
        """HTTP 200 with a full Content-Length, then the answer's body one byte every ``seconds``."""
        return Fault("drip", seconds=seconds, text=text)

    @staticmethod
    def drip_headers(seconds: float = 0.05, endless: bool = True, text: str = "") -> Fault:
        """A 200 whose status line and headers arrive one byte every ``seconds``. ``endless``: an ``X-Drip``
        header that never ends follows them (until the client hangs up or the server stops); otherwise the
        blank line ends the headers, and the answer's body (``text``, else a small valid answer) follows
        at once."""
        return Fault("drip_headers", seconds=seconds, text=text, reason="endless" if endless else "")

    @staticmethod
    def gzip_bomb(size: int = 1 << 30) -> Fault:
        """HTTP 200, ``Content-Encoding: gzip``, a body that inflates to ``size`` zero bytes."""
        return Fault("gzip_bomb", code=200, retry_delay=float(size))

    @staticmethod
    def echo_key(where: str = "status", code: int | None = None) -> Fault:
        """Echo the request's API key back: ``where`` is one of :data:`ECHO_PLACES`."""
        if where not in ECHO_PLACES:
            raise ValueError(f"where must be one of {', '.join(ECHO_PLACES)}, got {where!r}")
        default = 200 if where == "html" or where in _ECHO_ANSWERS else 400
        return Fault("echo", code=code if code is not None else default, reason=where)

    @staticmethod
    def oversize(size: int) -> Fault:
        """HTTP 200 with a valid answer padded to ``size`` bytes (no compression)."""
        return Fault("oversize", retry_delay=float(size))

    @staticmethod
    def raw(code: int, body: bytes | str, content_type: str = "text/html; charset=UTF-8") -> Fault:
        """Any status with a body as given (e.g. an HTML page from a proxy)."""
        return Fault("raw", code=code, body=body.encode("utf-8") if isinstance(body, str) else body,
                     content_type=content_type)




_bomb_lock = threading.Lock()
_bomb_cache: dict[int, bytes] = {}
_MEMBER = 16 << 20


def bomb_body(size: int) -> bytes:
    """A gzip stream (concatenated members, which gzip allows) that inflates to ``size`` zero bytes."""
    with _bomb_lock:
        if size not in _bomb_cache:
            full, rest = divmod(size, _MEMBER)
            member = gzip.compress(bytes(_MEMBER), compresslevel=9) if full else b""
            tail = gzip.compress(bytes(rest), compresslevel=9) if rest else b""
            _bomb_cache[size] = member * full + tail
        return _bomb_cache[size]


def echo_body(where: str, key: str, code: int) -> tuple[bytes, str]:
    """``(body, content_type)`` echoing ``key`` at ``where`` (see :meth:`Fault.echo_key`)."""
    if where == "html":
        page = "<html><head><title>Error</title></head><body><p>Upstream proxy said: request key "
        page = page[:70].ljust(70, " ") + key + " was rejected</p></body></html>"
        return page.encode(), "text/html; charset=UTF-8"
    if where in _ECHO_ANSWERS:
        return _echo_answer(where, key), "application/json; charset=UTF-8"
    error = {"code": code, "message": f"API key {key} not valid. Please pass a valid API key.",
             "status": "INVALID_ARGUMENT"}
    if where == "status":
        error = {"code": code, "message": "Request contains an invalid argument.", "status": key}
    return json.dumps({"error": error}).encode(), "application/json; charset=UTF-8"


def _echo_answer(where: str, key: str) -> bytes:
    """A 200 generateContent answer with ``key`` in a label or in ``modelVersion``, as ``where`` says."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    raw = key.encode("utf-8")
    label = {"label": key, "label-escaped": escaped, "label-percent": "".join(f"%{ord(c):02X}" for c in key),
             "label-percent-twice": "".join(f"%25{ord(c):02X}" for c in key),
             "label-html-bare": "".join(f"&#x{ord(c):X}" if k % 2 else f"&#{ord(c)}"
                                        for k, c in enumerate(key)),
             "label-base64": base64.b64encode(b"=" + raw).decode(),  # the key from the 2nd byte of a group
             "label-hex": raw.hex()}.get(where, "")
    text = '[{"box_2d": [100, 100, 500, 500], "label": "cup ' + label + '"}]'
    parts = [{"text": text}]
    if where == "label-split":  # 5 characters a part: no part holds 8 of the key
        head, tail = text.split('cup ', 1)
        pieces = [key[i:i + 5] for i in range(0, len(key), 5)]
        parts = [{"text": head + "cup "}, *({"text": p} for p in pieces), {"text": tail}]
    body = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                            "index": 0}], "modelVersion": "MODEL_VERSION"}
    # json.dumps escapes the backslashes of the label's escapes (a JSON text inside JSON, as Gemini's is);
    # modelVersion gets its escapes at the body's own level
    version = escaped if where == "model-version-escaped" else "gemini-2.5-flash"
    return json.dumps(body).replace("MODEL_VERSION", version).encode()


def oversize_body(size: int) -> bytes:
    """A valid generateContent answer of at least ``size`` bytes (one item, a huge label)."""
    pad = max(0, size - 200)
    items = [{"box_2d": [100, 100, 500, 500], "label": "x" * pad}]
    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps(items)}]},
                            "finishReason": "STOP", "index": 0}]}
    return json.dumps(body).encode()
