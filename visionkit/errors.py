"""The visionkit exception tree. Every error visionkit raises derives from one root.

::

    VisionkitError
    ├── ConfigError                  bad setup: missing API key, bad option value (also a ValueError)
    ├── InputError                   an input file or argument cannot be used (also a ValueError)
    ├── ParseError                   an answer cannot be read at all (carries a snippet)
    │   └── MaskDecodeError          one mask cannot be decoded (turned into a warning by the parser)
    ├── ExportError                  COCO/overlay output cannot be built or written
    └── APIError                     anything from the Gemini request layer
        ├── TransportError           timeout, connection reset, DNS: no HTTP answer
        ├── HTTPStatusError          the API answered with an error status (carries .status, .api_message)
        │   ├── BadRequestError      400
        │   ├── AuthError            401 / 403
        │   ├── NotFoundError        404
        │   ├── RateLimitError       429 (carries .retry_delay, .quota_id, .per_day)
        │   └── ServerError          5xx
        ├── ResponseError            HTTP 200, but no usable answer
        │   ├── BlockedError         promptFeedback.blockReason, or finishReason SAFETY/RECITATION/...
        │   └── EmptyResponseError   no candidates or no text
        └── BatchError               a Batch API job FAILED, was CANCELLED or EXPIRED, or its state is unknown
            └── BatchLineError       one request (line) of a batch job has no usable answer

Lower-level exceptions (``requests``, ``json``, ``cv2``, ``OSError``) are translated where they cross
into visionkit with ``raise ... from exc``. Messages never contain the API key.
"""

from __future__ import annotations

__all__ = [
    "VisionkitError",
    "ConfigError",
    "InputError",
    "ParseError",
    "MaskDecodeError",
    "ExportError",
    "APIError",
    "TransportError",
    "HTTPStatusError",
    "BadRequestError",
    "AuthError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ResponseError",
    "BlockedError",
    "EmptyResponseError",
    "BatchError",
    "BatchLineError",
]


class VisionkitError(Exception):
    """Root of every error raised by visionkit."""


class ConfigError(VisionkitError, ValueError):
    """Missing or invalid configuration (for example no API key). Also a ValueError."""


class InputError(VisionkitError, ValueError):
    """An input (file, image, argument) cannot be used. The message names it. Also a ValueError."""


class ParseError(VisionkitError):
    """A model answer cannot be read.

    Attributes:
        snippet: the start of the offending text (at most 80 characters), or None.
    """

    def __init__(self, message: str, *, snippet: str | None = None):
        super().__init__(message)
        self.snippet = snippet


class MaskDecodeError(ParseError):
    """One item's mask cannot be decoded. The parser keeps the box and records a warning."""


class ExportError(VisionkitError):
    """COCO or overlay output cannot be produced or written."""


class APIError(VisionkitError):
    """Base of every error from the Gemini request layer."""


class TransportError(APIError):
    """No HTTP answer: timeout, connection refused or reset."""


class HTTPStatusError(APIError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        api_status: the API's canonical status string (``"INVALID_ARGUMENT"``, ...) or None.
        api_message: the API's own error message, or None.
    """

    def __init__(self, message: str, *, status: int, api_status: str | None = None,
                 api_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.api_status = api_status
        self.api_message = api_message


class BadRequestError(HTTPStatusError):
    """HTTP 400: the request is malformed or too large. Not retried."""


class AuthError(HTTPStatusError):
    """HTTP 401/403: the key is missing permission, invalid or revoked. Not retried."""


class NotFoundError(HTTPStatusError):
    """HTTP 404: unknown model or file. Not retried."""


class RateLimitError(HTTPStatusError):
    """HTTP 429 after retries, or a per-day quota that backoff cannot clear.

    Attributes:
        retry_delay: seconds the server asked to wait (RetryInfo or Retry-After), or None.
        quota_id: the violated quota's id, when the API names it.
        per_day: True when the violated quota is per day.
    """

    def __init__(self, message: str, *, status: int = 429, api_status: str | None = None,
                 api_message: str | None = None, retry_delay: float | None = None,
                 quota_id: str | None = None, per_day: bool = False):
        super().__init__(message, status=status, api_status=api_status, api_message=api_message)
        self.retry_delay = retry_delay
        self.quota_id = quota_id
        self.per_day = per_day


class ServerError(HTTPStatusError):
    """HTTP 5xx after retries."""


class ResponseError(APIError):
    """HTTP 200 whose body has no usable answer."""


class BlockedError(ResponseError):
    """The prompt was blocked, or the answer stopped for SAFETY, RECITATION or a similar reason.

    Attributes:
        reason: the blockReason or finishReason string.
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


class EmptyResponseError(ResponseError):
    """The answer has no candidates or no text parts."""


class BatchError(APIError):
    """A Batch API job ended without results (FAILED, CANCELLED, EXPIRED), or what happened to a request
    that creates one is unknown.

    Attributes:
        job: the job's resource name (``batches/...``) or its local id, or None.
        state: the job's state (``"FAILED"``, ``"EXPIRED"``, ...), or None.
    """

    def __init__(self, message: str, *, job: str | None = None, state: str | None = None):
        super().__init__(message)
        self.job = job
        self.state = state


class BatchLineError(BatchError):
    """One request of a batch job came back with an error, or with no usable answer."""
