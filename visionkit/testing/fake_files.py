"""The Files API endpoints of :class:`~visionkit.testing.FakeGemini`: resumable upload and file polling."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from .fake_responses import error_body

__all__ = ["FilesEndpoints"]


class FilesEndpoints:
    """Mixed into FakeGemini: it provides ``_lock``, ``_files``, ``_uploads``, ``file_states``,
    ``base_url``, ``_next_index``, ``_send`` and ``_send_json``."""

    _lock: Any
    _files: dict
    _uploads: dict
    file_states: tuple[str, ...]
    base_url: str

    def _upload_start(self, h: Any, headers: Mapping[str, str], meta: Any) -> None:
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

    def _upload(self, h: Any, headers: Mapping[str, str], query: Mapping[str, list[str]],
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

    def _file_get(self, h: Any, file_id: str) -> None:
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

