"""Response and error bodies as the Gemini API writes them, for :class:`~visionkit.testing.FakeGemini`."""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any

__all__ = [
    "CANONICAL_STATUS",
    "DEFAULT_ITEMS",
    "PER_MINUTE_QUOTA",
    "answer_response",
    "default_mask",
    "default_responder",
    "error_body",
    "model_resource",
    "text_response",
]

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
PER_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"

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


def default_mask() -> str:
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


def default_responder(request: Any) -> dict:
    """One detection (:data:`DEFAULT_ITEMS`); with a mask when the prompt asks for segmentation masks."""
    items = [dict(item) for item in DEFAULT_ITEMS]
    if "segmentation mask" in request.text.lower():
        for item in items:
            item["mask"] = default_mask()
    return answer_response(items, model=request.model or "gemini-2.5-flash")


def model_resource(model: str, *, thinking: bool | None = False,
                   methods: tuple[str, ...] = ("generateContent", "countTokens", "batchGenerateContent")
                   ) -> dict:
    """A Model resource as the API sends it (``thinking`` None leaves the field out)."""
    resource: dict[str, Any] = {
        "name": f"models/{model}", "baseModelId": model, "version": "001", "displayName": model,
        "description": f"{model} (FakeGemini)", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
        "supportedGenerationMethods": list(methods), "temperature": 1.0, "maxTemperature": 2.0,
        "topP": 0.95, "topK": 64}
    if thinking is not None:
        resource["thinking"] = thinking
    return resource
