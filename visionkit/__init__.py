"""visionkit: Gemini's answers about images -> exact pixel detections, masks, COCO and overlays.

Nothing happens at import. The request layer (:mod:`visionkit.gemini`), drawing (:mod:`visionkit.draw`),
the batch pipeline (:mod:`visionkit.run`) and the quality tools (:mod:`visionkit.quality`) are
imported when first used.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .answers.parse import parse_response
from .core.detections import Detections, ParseWarning
from .core.maskcrop import MaskCrop
from .errors import (
    APIError,
    AuthError,
    BadRequestError,
    BatchError,
    BatchLineError,
    BlockedError,
    ConfigError,
    EmptyResponseError,
    ExportError,
    HTTPStatusError,
    InputError,
    MaskDecodeError,
    NotFoundError,
    ParseError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
    VisionkitError,
)
from .formats.coco import to_coco, to_results
from .media.atomic import write_json_atomic

__all__ = [
    "APIError",
    "AuthError",
    "BadRequestError",
    "BatchError",
    "BatchLineError",
    "BlockedError",
    "ConfigError",
    "Detections",
    "EmptyResponseError",
    "ExportError",
    "GeminiClient",
    "HTTPStatusError",
    "InputError",
    "LabelSummary",
    "MaskCrop",
    "MaskDecodeError",
    "NotFoundError",
    "ParseError",
    "ParseWarning",
    "RateLimitError",
    "ResponseError",
    "ServerError",
    "TransportError",
    "VisionkitError",
    "__version__",
    "dedupe",
    "draw_overlay",
    "label",
    "parse_response",
    "to_coco",
    "to_results",
    "write_json_atomic",
]


def __getattr__(name: str) -> Any:
    """Lazy access to the parts with heavier imports (HTTP client, drawing)."""
    if name == "GeminiClient":
        from .gemini import GeminiClient

        return GeminiClient
    if name in ("label", "LabelSummary"):
        from .run import pipeline

        return getattr(pipeline, name)
    if name == "dedupe":
        from .core.dedupe import dedupe

        return dedupe
    if name == "draw_overlay":
        from .draw.overlay import draw_overlay

        return draw_overlay
    raise AttributeError(f"module 'visionkit' has no attribute {name!r}")
