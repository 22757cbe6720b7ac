"""Files API: resumable upload of one file, then wait until it is ``ACTIVE``.

Protocol (see ``shared/design/GEMINI-API-FACTS.md``, section 3):

1. ``POST {base}/upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable``,
   ``X-Goog-Upload-Command: start``, ``X-Goog-Upload-Header-Content-Length``,
   ``X-Goog-Upload-Header-Content-Type`` and the JSON body ``{"file": {"display_name": ...}}``. The upload URL
   comes back in the ``x-goog-upload-url`` response header.
2. ``POST <upload url>`` with ``X-Goog-Upload-Command: upload, finalize``, ``X-Goog-Upload-Offset: 0`` and
   the bytes. The answer is ``{"file": {name, uri, mimeType, state, ...}}``.
3. ``GET {base}/v1beta/{name}`` until ``state`` is ``ACTIVE`` (``FAILED`` -> :class:`ResponseError`).

The HTTP work is done by a ``request`` callable supplied by the client (:class:`GeminiClient`), which adds
the API key header, applies retries and turns error statuses into visionkit errors. The key is therefore
only ever sent as a header, and only to the configured API host: an upload URL on another host is refused.
Uploaded files expire by themselves after 48 hours; :func:`delete_file` removes one sooner.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from ..errors import ResponseError

__all__ = ["UploadedFile", "delete_file", "get_file", "upload_bytes", "wait_active"]

#: request(method, url, *, headers=None, data=None) -> requests.Response (2xx only; errors are raised).
RequestFn = Callable[..., Any]


@dataclass(frozen=True)
class UploadedFile:
    """A file stored by the Files API.

    Attributes:
        name: the resource name, ``files/<id>``.
        uri: the URI to use in a ``fileData`` part.
        mime_type: the file's MIME type.
        state: ``PROCESSING``, ``ACTIVE`` or ``FAILED``.
    """

    name: str
    uri: str
    mime_type: str
    state: str

    def part(self) -> dict:
        """The request part that refers to this file."""
        return {"fileData": {"mimeType": self.mime_type, "fileUri": self.uri}}


def _json(response: Any, what: str) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        raise ResponseError(f"Files API {what}: the answer is not JSON "
                            f"(HTTP {response.status_code}, {len(response.content)} bytes)") from exc
    if not isinstance(body, Mapping):
        raise ResponseError(f"Files API {what}: expected a JSON object, got {type(body).__name__}")
    return dict(body)


def _file(body: Mapping, what: str, mime_type: str | None = None) -> UploadedFile:
    info = body.get("file", body)
    if not isinstance(info, Mapping) or not isinstance(info.get("name"), str):
        raise ResponseError(f"Files API {what}: the answer has no file name")
    uri = info.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ResponseError(f"Files API {what}: the answer for {info['name']} has no uri")
    state = str(info.get("state") or "STATE_UNSPECIFIED")
    if state == "FAILED":
        error = info.get("error") or {}
        detail = error.get("message") if isinstance(error, Mapping) else None
        raise ResponseError(f"Files API: processing of {info['name']} FAILED"
                            + (f": {detail}" if detail else ""))
    return UploadedFile(name=info["name"], uri=uri, mime_type=str(info.get("mimeType") or mime_type or ""),
                        state=state)


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def upload_bytes(request: RequestFn, base_url: str, data: bytes | BinaryIO, mime_type: str, *,
                 display_name: str | None = None, poll_interval: float = 1.0, poll_timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, size: int | None = None) -> UploadedFile:
    """Upload ``data`` and return the file once it is ``ACTIVE``.

    Args:
        request: the client's request function (adds the key, retries, raises visionkit errors).
        base_url: the API root, e.g. ``https://generativelanguage.googleapis.com``.
        data: the file's bytes, or a binary file opened for reading (streamed from disk, rewound before
            each attempt, never read into memory whole).
        mime_type: its MIME type (required by the API).
        display_name: a name shown in the file list (at most 512 characters).
        poll_interval, poll_timeout, sleep: see :func:`wait_active`.
        size: the byte count of a file ``data`` (default: its size on disk).

    Raises:
        ResponseError: the answer lacks the upload URL or the file, the upload URL points to another host,
            the file FAILED, or it is not ACTIVE within ``poll_timeout``.
        APIError: from ``request``.
    """
    base_url = base_url.rstrip("/")
    if isinstance(data, (bytes, bytearray)):
        size = len(data)
    elif size is None:
        size = os.fstat(data.fileno()).st_size
    meta = {"file": {"display_name": (display_name or "visionkit-upload")[:512]}}
    start = request("POST", f"{base_url}/upload/v1beta/files",
                    headers={"X-Goog-Upload-Protocol": "resumable",
                             "X-Goog-Upload-Command": "start",
                             "X-Goog-Upload-Header-Content-Length": str(size),
                             "X-Goog-Upload-Header-Content-Type": mime_type,
                             "Content-Type": "application/json"},
                    data=json.dumps(meta).encode("utf-8"))
    upload_url = start.headers.get("x-goog-upload-url")
    if not upload_url:
        raise ResponseError("Files API upload start: the answer has no x-goog-upload-url header")
    if not _same_origin(upload_url, base_url):
        raise ResponseError(f"Files API upload start: the upload URL is on another host "
                            f"({urlsplit(upload_url).hostname}); refusing to send the API key there")
    done = request("POST", upload_url,
                   headers={"X-Goog-Upload-Command": "upload, finalize",
                            "X-Goog-Upload-Offset": "0",
                            "Content-Length": str(size),
                            "Content-Type": mime_type},
                   data=data)
    uploaded = _file(_json(done, "upload"), "upload", mime_type)
    if uploaded.state == "ACTIVE":
        return uploaded
    return wait_active(request, base_url, uploaded, poll_interval=poll_interval,
                       poll_timeout=poll_timeout, sleep=sleep)


def delete_file(request: RequestFn, base_url: str, name: str) -> None:
    """Delete file ``name`` (``files/<id>``). Raises APIError (NotFoundError when it is gone already)."""
    request("DELETE", f"{base_url.rstrip('/')}/v1beta/{name}")


def get_file(request: RequestFn, base_url: str, name: str) -> UploadedFile:
    """The current metadata of file ``name`` (``files/<id>``). A FAILED file raises ResponseError."""
    response = request("GET", f"{base_url.rstrip('/')}/v1beta/{name}")
    return _file(_json(response, f"get {name}"), f"get {name}")


def wait_active(request: RequestFn, base_url: str, file: UploadedFile, *, poll_interval: float = 1.0,
                poll_timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> UploadedFile:
    """Poll ``file`` until its state is ACTIVE.

    Waits ``poll_interval`` seconds between polls and gives up (:class:`ResponseError`) once the polls
    have slept ``poll_timeout`` seconds in total or that much wall time has passed.
    """
    slept = 0.0
    started = time.monotonic()
    current = file
    while current.state != "ACTIVE":
        if slept >= poll_timeout or time.monotonic() - started >= poll_timeout:
            raise ResponseError(f"Files API: {file.name} is still {current.state} after {poll_timeout:g}s")
        sleep(poll_interval)
        slept += poll_interval
        current = get_file(request, base_url, file.name)
        if not current.mime_type:
            current = UploadedFile(current.name, current.uri, file.mime_type, current.state)
    return current
