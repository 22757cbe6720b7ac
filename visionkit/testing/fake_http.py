"""The HTTP core of :class:`~visionkit.testing.FakeGemini`: the threading HTTP server, its request handler,
and the ways an answer goes out (a whole response, or a reset connection). The endpoint modules (generate,
files, batch) and the fake build on it; it imports none of them."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["Endpoints", "Handler", "Server", "reset", "send", "send_json"]


class Endpoints(Protocol):
    """What the HTTP core calls: the fake that owns the endpoints (:class:`~visionkit.testing.FakeGemini`).
    The core never imports the fake; the fake and its endpoint modules import the core."""

    def _handle(self, h: Handler) -> None: ...

    def _track(self, conn: socket.socket, add: bool) -> None: ...


class Server(ThreadingHTTPServer):
    """Daemon threads, keep-alive and a deep accept queue, so one ``requests`` pool can open many
    concurrent connections; every request goes to ``fake._handle``."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, fake: Endpoints, address: tuple[str, int]):
        self.fake = fake
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or are reset are part of the tests


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGemini/1.0"
    server: Server

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


def send_json(h: Handler, code: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
    """Answer with ``obj`` as JSON."""
    send(h, code, json.dumps(obj).encode("utf-8"), "application/json; charset=UTF-8", headers)


def send(h: Handler, code: int, body: bytes, content_type: str,
         headers: Mapping[str, str] | None = None) -> None:
    """Answer with ``body``; a client that has gone away is not an error."""
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


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def reset(h: Handler) -> None:
    """Abort the connection: SO_LINGER 0 makes the close send a TCP RST instead of a FIN."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
