"""A real local HTTP server that stands in for the Gemini REST API, for tests and benchmarks.

::

    with FakeGemini() as server:
        client = GeminiClient(api_key="test-key", base_url=server.base_url)
        server.push_faults(Fault.status(503), Fault.reset())
        client.detect("photo.jpg")               # 503, connection reset, then the default answer
        assert len(server.generate_requests) == 3

Endpoints (JSON as Gemini speaks it, lowerCamelCase, error bodies ``{"error": {code, message, status,
details}}``):

* ``POST /v1beta/models/{model}:generateContent`` -> ``responder(request)``, unless a fault applies;
* ``POST /upload/v1beta/files`` (``X-Goog-Upload-Command: start``) -> ``x-goog-upload-url`` header pointing
  back at this server; ``POST`` to that URL (``upload, finalize``) -> ``{"file": {...}}``;
* ``GET /v1beta/files/{id}`` -> the file, its ``state`` stepping through ``file_states``
  (default: PROCESSING on upload and on the first poll, then ACTIVE);
* the Batch API (create, get, list, cancel, delete, file delete and download), scripted through
  ``server.batch`` (:mod:`visionkit.testing.fake_batch`).

Faults (:class:`Fault`) are queued with :meth:`FakeGemini.push_faults` and consumed, one per request, by
the next generateContent requests; a ``fault_for(request)`` hook can fail chosen requests every time.
Every request is recorded as a :class:`RecordedRequest` (:attr:`FakeGemini.requests`).

The server is a ``ThreadingHTTPServer`` on 127.0.0.1 (port chosen by the OS) with daemon threads and
HTTP/1.1 keep-alive, so it handles many concurrent connections from one ``requests`` pool.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import fake_batch

__all__ = [
    "CANONICAL_STATUS",
    "DEFAULT_ITEMS",
    "FakeGemini",
    "Fault",
    "RecordedRequest",
    "answer_response",
    "default_responder",
    "error_body",
    "text_response",
]

#: The API's canonical status string for each HTTP status it uses.
CANONICAL_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "models/unknown is not found for API version v1beta, or is not supported for generateContent.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_PER_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"

#: The default answer's items (one detection; a PNG mask is added for segmentation prompts).
DEFAULT_ITEMS = ({"box_2d": [100, 150, 600, 700], "label": "object"},)


# -- response builders ---------------------------------------------------------------------------------------

def text_response(text: str, finish_reason: str | None = "STOP", *, model: str = "gemini-2.5-flash") -> dict:
    """A generateContent response whose candidate 0 holds ``text``."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}] if text else []},
                                 "index": 0}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    return {"candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": max(1, len(text) // 4),
                              "totalTokenCount": 300 + max(1, len(text) // 4)},
            "modelVersion": model}


def answer_response(items: Any, *, model: str = "gemini-2.5-flash") -> dict:
    """A generateContent response whose text is ``json.dumps(items)``."""
    return text_response(json.dumps(items), model=model)


def error_body(code: int, message: str | None = None, *, status: str | None = None,
               details: list[dict] | None = None) -> dict:
    """An API error body ``{"error": {"code", "message", "status"[, "details"]}}``."""
    error: dict[str, Any] = {"code": code, "message": message or _DEFAULT_MESSAGES.get(code, "Error."),
                             "status": status or CANONICAL_STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


_mask_lock = threading.Lock()
_mask_cache: list[str] = []


def _default_mask() -> str:
    """A 64x64 PNG probability map (a filled ellipse) as Gemini's ``data:image/png;base64,`` string."""
    with _mask_lock:
        if not _mask_cache:
            from PIL import Image, ImageDraw

            im = Image.new("L", (64, 64), 0)
            ImageDraw.Draw(im).ellipse((4, 4, 59, 59), fill=255)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            _mask_cache.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
        return _mask_cache[0]


def default_responder(request: RecordedRequest) -> dict:
    """One detection (:data:`DEFAULT_ITEMS`); with a mask when the prompt asks for segmentation masks."""
    items = [dict(item) for item in DEFAULT_ITEMS]
    if "segmentation mask" in request.text.lower():
        for item in items:
            item["mask"] = _default_mask()
    return answer_response(items, model=request.model or "gemini-2.5-flash")


# -- faults --------------------------------------------------------------------------------------------------

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
    def raw(code: int, body: bytes | str, content_type: str = "text/html; charset=UTF-8") -> Fault:
        """Any status with a body as given (e.g. an HTML page from a proxy)."""
        return Fault("raw", code=code, body=body.encode("utf-8") if isinstance(body, str) else body,
                     content_type=content_type)


# -- recorded requests ---------------------------------------------------------------------------------------

class _Headers(dict):
    """A case-insensitive header mapping (keys stored lower case)."""

    def __init__(self, items: Any = ()):
        super().__init__((str(k).lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass(frozen=True, eq=False)
class RecordedRequest:
    """One request as the server received it.

    Attributes:
        index: 0-based arrival order over all requests.
        kind: ``"generate"``, ``"upload_start"``, ``"upload"``, ``"file_get"``, a batch kind
            (:data:`visionkit.testing.fake_batch.KINDS`) or ``"unknown"``.
        method, path: the HTTP method and the URL path (no query).
        query: the query parameters (``parse_qs`` form).
        headers: the request headers; look-ups are case-insensitive.
        body_size: the raw body length in bytes.
        json: the parsed JSON body, or None (not JSON, or a file upload).
        model: the model id of a generateContent request.
        image_wh: ``(width, height)`` of the request's image (inline, or an uploaded file it refers to).
        image_mime: that image's MIME type.
        file_uri: the ``fileData.fileUri`` the request refers to, if any.
        fault: the fault applied to this request, if any.
        peer: the client's ``(host, port)``; the same port means the same (kept-alive) connection.
    """

    index: int
    kind: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body_size: int
    json: Any = None
    model: str | None = None
    image_wh: tuple[int, int] | None = None
    image_mime: str | None = None
    file_uri: str | None = None
    fault: Fault | None = field(default=None)
    peer: tuple[str, int] | None = None

    @property
    def parts(self) -> list[dict]:
        """All parts of all contents of a generateContent body."""
        body = self.json if isinstance(self.json, Mapping) else {}
        out = []
        for content in body.get("contents") or []:
            if isinstance(content, Mapping):
                out.extend(p for p in content.get("parts") or [] if isinstance(p, Mapping))
        return out

    @property
    def text(self) -> str:
        """The text parts of a generateContent body, joined with newlines."""
        return "\n".join(p["text"] for p in self.parts if isinstance(p.get("text"), str))

    @property
    def generation_config(self) -> dict:
        """The ``generationConfig`` object of the body (empty when absent)."""
        body = self.json if isinstance(self.json, Mapping) else {}
        config = body.get("generationConfig") or body.get("generation_config") or {}
        return dict(config) if isinstance(config, Mapping) else {}


# -- the server ----------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, fake: FakeGemini, address: tuple[str, int]):
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or are reset are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGemini/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK add ~40 ms each.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_DELETE(self) -> None:
        self.server.fake._handle(self)


_GENERATE = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")
_FILE = re.compile(r"^/v1beta/files/([a-z0-9-]+)$")


class FakeGemini:
    """A local Gemini stand-in. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        responder: ``responder(request) -> dict | str | Fault`` answers a generateContent request: a dict
            is sent as the JSON response, a str as the model's text, a :class:`Fault` is applied.
            Default: :func:`default_responder`.
        latency: seconds to wait before answering each generateContent request.
        fault_for: ``fault_for(request) -> Fault | None``, asked before the fault queue for every
            generateContent request (e.g. to fail one image permanently).
        api_key: when set, requests must carry it in ``x-goog-api-key``: missing -> 403, wrong -> 400
            ``API_KEY_INVALID`` (as the real API answers).
        file_states: the ``state`` of an uploaded file in the upload answer, then at each poll (the last
            one repeats).
    """

    def __init__(self, responder: Callable[[RecordedRequest], Any] | None = None, *, latency: float = 0.0,
                 fault_for: Callable[[RecordedRequest], Fault | None] | None = None,
                 api_key: str | None = None,
                 file_states: tuple[str, ...] = ("PROCESSING", "PROCESSING", "ACTIVE")):
        self.responder = responder or default_responder
        self.latency = latency
        self.fault_for = fault_for
        self.api_key = api_key
        if not file_states:
            raise ValueError("file_states must not be empty")
        self.file_states = tuple(file_states)
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._files: dict[str, dict] = {}      # id -> {"meta": ..., "data": bytes, "polls": int}
        self._uploads: dict[str, dict] = {}    # upload_id -> {"mime", "display_name", "length"}
        self._conns: set[socket.socket] = set()
        self._counter = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []  # exceptions raised by the responder or fault_for
        self.batch = fake_batch.FakeBatch(self)  # the Batch API endpoints (see visionkit.testing.fake_batch)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, ("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="FakeGemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (slow answers are abandoned)."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; pass it as the client's ``base_url``."""
        if self._server is None:
            raise RuntimeError("FakeGemini is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"FakeGemini({where}, {len(self._records)} requests)"

    # -- test API ----------------------------------------------------------------------------------------

    def push_faults(self, *faults: Fault) -> None:
        """Queue faults; each following generateContent request consumes one, in order."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        """Faults queued and not consumed yet."""
        with self._lock:
            return len(self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every recorded request, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def generate_requests(self) -> list[RecordedRequest]:
        """The recorded generateContent requests."""
        return [r for r in self.requests if r.kind == "generate"]

    def file_data(self, name: str) -> bytes:
        """The bytes of an uploaded file (``files/<id>`` or ``<id>``)."""
        with self._lock:
            return self._files[name.removeprefix("files/")]["data"]

    def clear(self) -> None:
        """Forget recorded requests, queued faults and uploaded files."""
        with self._lock:
            self._records.clear()
            self._faults.clear()
            self._files.clear()
            self._uploads.clear()
        self.batch.clear()

    # -- internals ---------------------------------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _next_index(self) -> int:
        with self._lock:
            index = self._counter
            self._counter += 1
            return index

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        url = urlsplit(h.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        headers = _Headers(h.headers.items())
        parsed = None
        if body and "json" in headers.get("content-type", "application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        match = _GENERATE.match(path)
        if h.command == "POST" and match:
            kind = "generate"
        elif h.command == "POST" and path == "/upload/v1beta/files":
            kind = "upload" if "upload_id" in query else "upload_start"
        elif h.command == "GET" and _FILE.match(path):
            kind = "file_get"
        else:
            kind = self.batch.kind(h.command, path) or "unknown"
        record = RecordedRequest(index=self._next_index(), kind=kind, method=h.command, path=path,
                                 query=query, headers=headers, body_size=len(body),
                                 json=parsed if kind != "upload" else None,
                                 peer=tuple(h.client_address[:2]))
        if kind == "generate":
            record = self._describe_generate(record, match.group(1))

        denied = self._check_key(headers)
        fault = None
        if denied is None and kind == "generate":
            try:
                fault = self.fault_for(record) if self.fault_for is not None else None
            except Exception as exc:  # a broken hook is reported as a 500 and kept for the test
                self.errors.append(exc)
                denied = (500, error_body(500, f"fault_for raised {exc!r}"))
            if fault is None and denied is None:
                with self._lock:
                    fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                record = _replace(record, fault=fault)
        with self._lock:
            self._records.append(record)

        if denied is not None:
            return self._send_json(h, *denied)
        if kind == "generate":
            if self.latency:
                self._stopping.wait(self.latency)
            return self._generate(h, record, fault)
        if kind == "upload_start":
            return self._upload_start(h, headers, parsed)
        if kind == "upload":
            return self._upload(h, headers, query, body)
        if kind == "file_get":
            return self._file_get(h, _FILE.match(path).group(1))
        if kind in fake_batch.KINDS:
            return self.batch.handle(h, record)
        return self._send_json(h, 404, error_body(404, f"Method not found: {h.command} {path}"))

    def _check_key(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        if self.api_key is None:
            return None
        given = headers.get("x-goog-api-key")
        if not given:
            return 403, error_body(403, "Method doesn't allow unregistered callers (callers without "
                                        "established identity). Please use API Key or other form of API "
                                        "consumer identity to call this API.")
        if given != self.api_key:
            return 400, error_body(400, "API key not valid. Please pass a valid API key.", details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com"}])
        return None

    def _describe_generate(self, record: RecordedRequest, model: str) -> RecordedRequest:
        image_wh = mime = uri = None
        for part in record.parts:
            inline = part.get("inlineData") or part.get("inline_data")
            file_data = part.get("fileData") or part.get("file_data")
            if isinstance(inline, Mapping) and image_wh is None:
                mime = inline.get("mimeType") or inline.get("mime_type")
                try:
                    image_wh = _image_wh(base64.b64decode(inline.get("data") or "", validate=False))
                except (binascii.Error, ValueError):
                    image_wh = None
            elif isinstance(file_data, Mapping) and uri is None:
                uri = file_data.get("fileUri") or file_data.get("file_uri")
                mime = file_data.get("mimeType") or file_data.get("mime_type")
                file_id = str(uri or "").rstrip("/").rsplit("/", 1)[-1]
                with self._lock:
                    stored = self._files.get(file_id)
                if stored is not None:
                    image_wh = _image_wh(stored["data"])
        return _replace(record, model=model, image_wh=image_wh, image_mime=mime, file_uri=uri)

    def _generate(self, h: _Handler, record: RecordedRequest, fault: Fault | None) -> None:
        if record.json is None:
            return self._send_json(h, 400, error_body(400, "Invalid JSON payload received."))
        if fault is None:
            return self._answer(h, record)
        if fault.kind == "status":
            return self._send_fault_status(h, fault)
        if fault.kind == "reset":
            return _reset(h)
        if fault.kind == "slow":
            if self._stopping.wait(fault.seconds):
                return _reset(h)
            return self._answer(h, record)
        if fault.kind == "blocked":
            usage = {"promptTokenCount": 300, "totalTokenCount": 300}
            return self._send_json(h, 200, {"promptFeedback": {"blockReason": fault.reason},
                                            "usageMetadata": usage, "modelVersion": record.model})
        if fault.kind == "finish":
            return self._send_json(h, 200, text_response(fault.text, fault.reason,
                                                         model=record.model or "gemini-2.5-flash"))
        if fault.kind == "raw":
            return self._send(h, fault.code, fault.body, fault.content_type)
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _answer(self, h: _Handler, record: RecordedRequest) -> None:
        try:
            answer = self.responder(record)
        except Exception as exc:
            self.errors.append(exc)
            return self._send_json(h, 500, error_body(500, f"responder raised {exc!r}"))
        if isinstance(answer, Fault):
            return self._generate(h, record, answer)
        if isinstance(answer, str):
            answer = text_response(answer, model=record.model or "gemini-2.5-flash")
        return self._send_json(h, 200, answer)

    def _send_fault_status(self, h: _Handler, fault: Fault) -> None:
        details = []
        quota_id = fault.quota_id or (_PER_MINUTE_QUOTA if fault.code == 429 else None)
        if quota_id:
            details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                                           "generate_content_free_tier_requests",
                                            "quotaId": quota_id,
                                            "quotaDimensions": {"location": "global",
                                                                "model": "gemini-2.5-flash"},
                                            "quotaValue": "10"}]})
        if fault.retry_delay is not None:
            delay = fault.retry_delay if isinstance(fault.retry_delay, str) else f"{fault.retry_delay:g}s"
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = (fault.retry_after if isinstance(fault.retry_after, str)
                                      else f"{fault.retry_after:g}")
        self._send_json(h, fault.code, error_body(fault.code, fault.message, details=details), headers)

    def _upload_start(self, h: _Handler, headers: Mapping[str, str], meta: Any) -> None:
        if (headers.get("x-goog-upload-protocol") != "resumable"
                or headers.get("x-goog-upload-command") != "start"):
            return self._send_json(h, 400, error_body(400, "Upload start needs X-Goog-Upload-Protocol: "
                                                           "resumable and X-Goog-Upload-Command: start"))
        mime = headers.get("x-goog-upload-header-content-type")
        length = headers.get("x-goog-upload-header-content-length")
        if not mime or not (length or "").isdigit():
            return self._send_json(h, 400, error_body(400, "Missing X-Goog-Upload-Header-Content-Type or "
                                                           "-Content-Length"))
        display = None
        if isinstance(meta, Mapping) and isinstance(meta.get("file"), Mapping):
            display = meta["file"].get("display_name") or meta["file"].get("displayName")
        upload_id = f"up{self._next_index():06d}"
        with self._lock:
            self._uploads[upload_id] = {"mime": mime, "length": int(length), "display_name": display}
        url = f"{self.base_url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        self._send(h, 200, b"", "text/plain", {"x-goog-upload-url": url, "x-goog-upload-status": "active"})

    def _upload(self, h: _Handler, headers: Mapping[str, str], query: Mapping[str, list[str]],
                data: bytes) -> None:
        upload_id = query.get("upload_id", [""])[0]
        with self._lock:
            pending = self._uploads.pop(upload_id, None)
        if pending is None:
            return self._send_json(h, 404, error_body(404, f"Unknown upload id {upload_id!r}"))
        command = {c.strip() for c in headers.get("x-goog-upload-command", "").split(",")}
        if command != {"upload", "finalize"} or headers.get("x-goog-upload-offset") != "0":
            return self._send_json(h, 400, error_body(400, "Expected X-Goog-Upload-Command: upload, finalize "
                                                           "and X-Goog-Upload-Offset: 0"))
        if len(data) != pending["length"]:
            return self._send_json(h, 400, error_body(400, f"Upload has {len(data)} bytes, announced "
                                                           f"{pending['length']}"))
        file_id = f"fake{self._next_index():06d}"
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        meta = {"name": f"files/{file_id}", "displayName": pending["display_name"] or file_id,
                "mimeType": pending["mime"], "sizeBytes": str(len(data)), "createTime": now,
                "updateTime": now, "expirationTime": now,
                "sha256Hash": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                "uri": f"{self.base_url}/v1beta/files/{file_id}", "state": self.file_states[0],
                "source": "UPLOADED"}
        with self._lock:
            self._files[file_id] = {"meta": meta, "data": data, "polls": 0}
        self._send_json(h, 200, {"file": meta}, {"x-goog-upload-status": "final"})

    def _file_get(self, h: _Handler, file_id: str) -> None:
        with self._lock:
            stored = self._files.get(file_id)
            if stored is not None:
                stored["polls"] += 1
                state = self.file_states[min(stored["polls"], len(self.file_states) - 1)]
                stored["meta"] = {**stored["meta"], "state": state}
                meta = dict(stored["meta"])
        if stored is None:
            return self._send_json(h, 404, error_body(404, f"File files/{file_id} not found."))
        if meta["state"] == "FAILED":
            meta["error"] = {"code": 400, "message": "The file could not be processed."}
        self._send_json(h, 200, meta)

    def _send_json(self, h: _Handler, code: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(h, code, json.dumps(obj).encode("utf-8"), "application/json; charset=UTF-8", headers)

    @staticmethod
    def _send(h: _Handler, code: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        try:
            h.send_response(code, _phrase(code))
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the client gave up (timeout) or the server is stopping
            h.close_connection = True


def _replace(record: RecordedRequest, **changes: Any) -> RecordedRequest:
    return replace(record, **changes)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _image_wh(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header, or None when it is not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None


def _reset(h: _Handler) -> None:
    """Abort the connection: SO_LINGER 0 makes the close send a TCP RST instead of a FIN."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
