"""The Gemini request layer: prompts, image preparation, the REST client, retries and the Files API.

Imported on first use (``visionkit.GeminiClient`` is resolved lazily), because it pulls in ``requests``.
"""

from __future__ import annotations

from .client import (
    API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    INLINE_LIMIT_BYTES,
    KEY_ENV_VARS,
    AnnotateResult,
    GeminiClient,
)
from .files_api import UploadedFile
from .images import PreparedImage, prepare_image
from .prompts import build_generation_config, build_prompt, model_family, response_schema
from .retry import RETRYABLE_STATUSES, RetryPolicy

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "INLINE_LIMIT_BYTES",
    "KEY_ENV_VARS",
    "RETRYABLE_STATUSES",
    "AnnotateResult",
    "GeminiClient",
    "PreparedImage",
    "RetryPolicy",
    "UploadedFile",
    "build_generation_config",
    "build_prompt",
    "model_family",
    "prepare_image",
    "response_schema",
]
