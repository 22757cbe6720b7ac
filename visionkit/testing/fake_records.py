"""What :class:`~visionkit.testing.FakeGemini` records about each request it receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Fault

__all__ = ["RecordedRequest"]

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


