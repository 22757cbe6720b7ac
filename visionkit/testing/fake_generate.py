"""The generateContent endpoint of :class:`~visionkit.testing.FakeGemini`: what a request carries, and
its answer: the responder's (or the dialect's), or the fault it was given (status, reset, slow, blocked,
cut-off, raw, drip, gzip bomb, echo, oversize)."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .fake_http import reset
from .fake_records import RecordedRequest
from .fake_responses import PER_MINUTE_QUOTA, error_body, text_response
from .faults import Fault, bomb_body, echo_body, oversize_body

if TYPE_CHECKING:
    from .dialects import Dialects
    from .fake_http import Handler

__all__ = ["GenerateEndpoint"]


class GenerateEndpoint:
    """Mixed into FakeGemini: it provides ``_lock``, ``_files``, ``dialects``, ``responder``,
    ``_default_answer``, ``_stopping``, ``errors``, ``_send`` and ``_send_json``."""

    _lock: Any
    _files: dict
    dialects: Dialects | None
    responder: Any
    _default_answer: bool
    _stopping: Any
    errors: list[BaseException]
    _bill: Any

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
        return replace(record, model=model, image_wh=image_wh, image_mime=mime, file_uri=uri)

    def _generate(self, h: Handler, record: RecordedRequest, fault: Fault | None) -> None:
        if record.json is None:
            return self._send_json(h, 400, error_body(400, "Invalid JSON payload received."))
        if fault is None:
            if self.dialects is not None and isinstance(record.json, Mapping):
                rejected = self.dialects.reject(record.model or "", record.json)
                if rejected is not None:
                    return self._send_json(h, *rejected)
            return self._answer(h, record)
        if fault.kind == "status":
            return self._send_fault_status(h, fault)
        if fault.kind == "reset":
            return reset(h)
        if fault.kind == "slow":
            if self._stopping.wait(fault.seconds):
                return reset(h)
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
        if fault.kind in ("drip", "drip_headers"):
            body = (fault.text.encode() if fault.text else
                    json.dumps(text_response('[{"box_2d": [1, 2, 3, 4], "label": "slow"}]')).encode())
            if fault.kind == "drip_headers":
                return self._drip_headers(h, body, fault.seconds, endless=fault.reason == "endless")
            return self._drip(h, body, fault.seconds)
        if fault.kind == "gzip_bomb":
            return self._send(h, 200, bomb_body(int(fault.retry_delay or 0)),
                              "application/json; charset=UTF-8", {"Content-Encoding": "gzip"})
        if fault.kind == "echo":
            key = record.headers.get("x-goog-api-key") or ""
            body, content_type = echo_body(fault.reason, key, fault.code)
            return self._send(h, fault.code, body, content_type)
        if fault.kind == "oversize":
            return self._send(h, 200, oversize_body(int(fault.retry_delay or 0)), "application/json")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _drip(self, h: Handler, body: bytes, interval: float) -> None:
        try:
            h.send_response(200, "OK")
            h.send_header("Content-Type", "application/json; charset=UTF-8")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.flush()
            for i in range(len(body)):
                if self._stopping.wait(interval):
                    return reset(h)
                h.wfile.write(body[i:i + 1])
                h.wfile.flush()
        except OSError:  # the client gave up: that is what a deadline does
            h.close_connection = True

    def _drip_headers(self, h: Handler, body: bytes, interval: float, endless: bool) -> None:
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
                b"Content-Length: %d\r\n" % len(body)) + (b"X-Drip: " if endless else b"\r\n")
        try:
            sent = 0
            while endless or sent < len(head):
                if self._stopping.wait(interval):
                    return reset(h)
                h.wfile.write(head[sent:sent + 1] if sent < len(head) else b"x")
                h.wfile.flush()
                sent += 1
            h.wfile.write(body)
        except OSError:  # the client gave up
            h.close_connection = True

    def _respond_to(self, record: RecordedRequest) -> Any:
        """The model's dialect answers when dialects speak for the default responder, else the responder."""
        if self.dialects is not None and self._default_answer and isinstance(record.json, Mapping):
            return self.dialects.answer(record.model or "", record.json, record.text)
        return self.responder(record)

    def _answer(self, h: Handler, record: RecordedRequest) -> None:
        try:
            answer = self._respond_to(record)
        except Exception as exc:
            self.errors.append(exc)
            return self._send_json(h, 500, error_body(500, f"responder raised {exc!r}"))
        if isinstance(answer, Fault):
            return self._generate(h, record, answer)
        if isinstance(answer, str):
            answer = text_response(answer, model=record.model or "gemini-2.5-flash")
        if self.dialects is not None and isinstance(answer, dict) and isinstance(record.json, Mapping):
            text = "".join(p.get("text", "") for c in answer.get("candidates") or []
                           for p in (c.get("content") or {}).get("parts") or [] if isinstance(p, Mapping))
            answer = {**answer, "usageMetadata": self.dialects.usage(record.model or "", record.json,
                                                                     record.text, text)}
        self._bill(answer)
        return self._send_json(h, 200, answer)

    def _answer_line(self, record: RecordedRequest) -> tuple[dict | None, dict | None]:
        """``(response, None)`` or ``(None, error)`` for one batch line: as online, the dialect's rules and
        answer when dialects are on, else the responder's (a Fault becomes the line's error)."""
        if self.dialects is not None and isinstance(record.json, Mapping):
            rejected = self.dialects.reject(record.model or "", record.json)
            if rejected is not None:
                return None, rejected[1]["error"]
        try:
            answer = self._respond_to(record)
        except Exception as exc:
            self.errors.append(exc)
            return None, error_body(500, f"responder raised {exc!r}")["error"]
        model = record.model or "gemini-2.5-flash"
        if isinstance(answer, str):
            answer = text_response(answer, model=model)
        elif isinstance(answer, Fault):
            if answer.kind == "status":
                return None, error_body(answer.code, answer.message)["error"]
            if answer.kind == "blocked":
                return {"promptFeedback": {"blockReason": answer.reason},
                        "usageMetadata": {"promptTokenCount": 300, "totalTokenCount": 300}}, None
            if answer.kind == "finish":
                return text_response(answer.text, answer.reason, model=model), None
            return None, error_body(500, f"fault {answer.kind} inside a batch")["error"]
        self._bill(answer)
        return answer, None

    def _send_fault_status(self, h: Handler, fault: Fault) -> None:
        details = []
        quota_id = fault.quota_id or (PER_MINUTE_QUOTA if fault.code == 429 else None)
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


def _image_wh(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header, or None when it is not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None
