"""The Gemini request layer: the model registry, prompts, request bodies, image preparation, the REST
client, retries and the Files API.

Imported on first use (``visionkit.GeminiClient`` is resolved lazily), because it pulls in ``requests``.
"""

from __future__ import annotations

from .client import (
    API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    INLINE_LIMIT_BYTES,
    KEY_ENV_VARS,
    MODEL_ENV_VAR,
    AnnotateResult,
    GeminiClient,
)
from .files_api import UploadedFile
from .images import PreparedImage, prepare_image
from .models import MODELS, ModelInfo, lookup
from .prompts import build_generation_config, build_prompt, model_family, response_schema
from .request import RequestOptions, build_request, plan_request
from .retry import RETRYABLE_STATUSES, RetryPolicy
from .transport import MAX_RESPONSE_BYTES

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "INLINE_LIMIT_BYTES",
    "KEY_ENV_VARS",
    "MAX_RESPONSE_BYTES",
    "MODELS",
    "MODEL_ENV_VAR",
    "RETRYABLE_STATUSES",
    "AnnotateResult",
    "GeminiClient",
    "ModelInfo",
    "PreparedImage",
    "RequestOptions",
    "RetryPolicy",
    "UploadedFile",
    "build_generation_config",
    "build_prompt",
    "build_request",
    "lookup",
    "model_family",
    "plan_request",
    "prepare_image",
    "response_schema",
]
