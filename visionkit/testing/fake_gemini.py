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
  ``server.batch`` (:mod:`visionkit.testing.fake_batch`);
* the Models API, ``GET /v1beta/models/{id}`` and ``GET /v1beta/models`` (free; no fault applies), from
  the dialects or ``server.models`` (:mod:`visionkit.testing.fake_models`).

Faults (:class:`Fault`) are queued with :meth:`FakeGemini.push_faults` and consumed, one per request, by
the next generateContent requests; a ``fault_for(request)`` hook can fail chosen requests every time.
Every request is recorded as a :class:`RecordedRequest` (:attr:`FakeGemini.requests`), and passed to
``log(record)`` when one is given (``--log`` in the shell), batch lines included; the ``usageMetadata`` of
every answer sent with status 200, online or as a batch line, is kept in :attr:`FakeGemini.billed`.

The server is a ``ThreadingHTTPServer`` on 127.0.0.1 (port chosen by the OS) with daemon threads and
HTTP/1.1 keep-alive, so it handles many concurrent connections from one ``requests`` pool.

``FakeGemini(dialects=True)`` also speaks each model's dialect (:mod:`visionkit.testing.dialects`): the
exact 400s for thinking settings a model rejects, 404 for retired ids, polygons or PNG masks or seg tokens,
``usageMetadata`` and flex drops. Response builders live in :mod:`visionkit.testing.fake_responses`,
faults in :mod:`visionkit.testing.faults`, request records in :mod:`visionkit.testing.fake_records`, the
generateContent endpoint in :mod:`visionkit.testing.fake_generate`, the Files API in
:mod:`visionkit.testing.fake_files`, and the HTTP server and handler in :mod:`visionkit.testing.fake_http`.

From a shell (prints its base URL, serves until Ctrl-C)::

    python -m visionkit.testing --port 0 --replay fixtures/replay --images fixtures/images
    python -m visionkit.testing --dialects --seg-tokens
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import fake_batch
from .dialects import Dialects
from .fake_files import FilesEndpoints
from .fake_generate import GenerateEndpoint
from .fake_http import Handler, Server, send, send_json
from .fake_models import MODEL_GET, ModelsEndpoints
from .fake_records import RecordedRequest, _Headers
from .fake_responses import (
    CANONICAL_STATUS,
    DEFAULT_ITEMS,
    answer_response,
    default_responder,
    error_body,
    text_response,
)
from .faults import Fault

__all__ = [
    "CANONICAL_STATUS",
    "DEFAULT_ITEMS",
    "Dialects",
    "FakeGemini",
    "Fault",
    "RecordedRequest",
    "answer_response",
    "default_responder",
    "error_body",

    "text_response",
]

_GENERATE = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")
_FILE = re.compile(r"^/v1beta/files/([a-z0-9-]+)$")


class FakeGemini(GenerateEndpoint, FilesEndpoints, ModelsEndpoints):
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
        dialects: True (or a :class:`~visionkit.testing.dialects.Dialects`) to enforce each model's rules
            and, with the default responder, answer as that model would.
        port: the port to bind (0: chosen by the OS).
        models: Models API overrides, ``{id: resource}`` (None: 404; a :class:`Fault`: answered with it);
            also ``server.models``.
        log: ``log(record)`` is called with every request received and every batch line answered.
    """

    def __init__(self, responder: Callable[[RecordedRequest], Any] | None = None, *, latency: float = 0.0,
                 fault_for: Callable[[RecordedRequest], Fault | None] | None = None,
                 api_key: str | None = None,
                 file_states: tuple[str, ...] = ("PROCESSING", "PROCESSING", "ACTIVE"),
                 dialects: bool | Dialects = False, port: int = 0,
                 models: Mapping[str, dict | Fault | None] | None = None,
                 log: Callable[[RecordedRequest], None] | None = None):
        self.dialects = Dialects() if dialects is True else (dialects or None)
        self._default_answer = responder is None
        self.responder = responder or default_responder
        self.port = int(port)
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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []  # exceptions raised by the responder or fault_for
        self.models: dict[str, dict | Fault | None] = dict(models or {})
        self.log = log
        self.billed: list[dict] = []  # usageMetadata of every 200 answer (online and batch lines)
        self.batch = fake_batch.FakeBatch(self)  # the Batch API endpoints (see visionkit.testing.fake_batch)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(self, ("127.0.0.1", self.port))
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
            self.billed.clear()
        self.batch.clear()

    # -- internals ---------------------------------------------------------------------------------------

    # How every endpoint answers (the mixins and visionkit.testing.fake_batch call them on the server).
    _send = staticmethod(send)
    _send_json = staticmethod(send_json)

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

    def _handle(self, h: Handler) -> None:
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
        elif h.command == "GET" and MODEL_GET.match(path):
            kind = "model_get"
        elif h.command == "GET" and path == "/v1beta/models":
            kind = "model_list"
        else:
            kind = self.batch.kind(h.command, path) or "unknown"
        record = RecordedRequest(index=self._next_index(), kind=kind, method=h.command, path=path,
                                 query=query, headers=headers, body_size=len(body),
                                 json=parsed if kind != "upload" else None,
                                 peer=tuple(h.client_address[:2]))
        if kind == "generate":
            record = self._describe_generate(record, match.group(1))

        if kind == "model_get" and isinstance(self.models.get(MODEL_GET.match(path).group(1)), Fault):
            denied = None  # a Fault set for the id answers before the key is checked (fake_models)
        else:
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
                record = replace(record, fault=fault)
        with self._lock:
            self._records.append(record)
        self._log(record)

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
        if kind == "model_get":
            return self._model_get(h, MODEL_GET.match(path).group(1))
        if kind == "model_list":
            return self._model_list(h, query)
        if kind in fake_batch.KINDS:
            return self.batch.handle(h, record)
        return self._send_json(h, 404, error_body(404, f"Method not found: {h.command} {path}"))

    def _log(self, record: RecordedRequest) -> None:
        if self.log is None:
            return
        try:
            self.log(record)
        except Exception as exc:  # a broken hook must not break the server; kept for the test
            self.errors.append(exc)

    def _bill(self, answer: Any) -> None:
        """Keep the usageMetadata of an answer sent with status 200."""
        usage = answer.get("usageMetadata") if isinstance(answer, Mapping) else None
        if isinstance(usage, Mapping):
            with self._lock:
                self.billed.append(dict(usage))

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


if __name__ == "__main__":  # the shell entry point is the package's: the CLI imports this module
    sys.exit("run the fake with 'python -m visionkit.testing' (see visionkit/testing/fake_cli.py)")
