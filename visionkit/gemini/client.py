"""The Gemini REST client: one ``requests.Session``, retries, typed errors, image requests.

::

    with GeminiClient() as client:                 # key from GEMINI_API_KEY or GOOGLE_API_KEY
        dets = client.segment("photo.jpg", classes=["cat", "dog"])

Wire format and error handling follow ``shared/design/GEMINI-API-FACTS.md``:

* ``POST {base}/v1beta/models/{model}:generateContent`` with a JSON body; the API key travels ONLY in the
  ``x-goog-api-key`` header. It is never put in a URL, a log record, an exception message or ``repr``;
  redirects are not followed (``requests`` would forward the custom header to the new host).
* Error statuses become :class:`~visionkit.errors.HTTPStatusError` subclasses carrying ``status``,
  ``api_status`` and ``api_message`` from the ``{"error": {...}}`` body; timeouts and connection errors
  become :class:`~visionkit.errors.TransportError`. Retries: :class:`~visionkit.gemini.retry.RetryPolicy`.
  Every ``APIError`` raised carries ``attempts``: the HTTP attempts made by the request that failed.
* A request whose JSON would exceed ``inline_limit_bytes`` (20 MB by default, after base64) sends the image
  through the Files API (:mod:`visionkit.gemini.files_api`) and refers to it with ``fileData``.

One client may be shared by many threads (the pipeline calls :meth:`GeminiClient.annotate` from a thread
pool): its settings do not change after construction, and the session's connection pool is sized by
``pool_size``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..errors import (
    APIError,
    AuthError,
    BadRequestError,
    ConfigError,
    HTTPStatusError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from ..masks import DEFAULT_THRESHOLD
from . import files_api
from .images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, PreparedImage, prepare_image
from .prompts import build_generation_config, build_prompt, check_task, model_family
from .retry import Failed, RetryPolicy, _set_attempts, parse_retry_after, quota_ids, retry_info_delay

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "INLINE_LIMIT_BYTES",
    "KEY_ENV_VARS",
    "AnnotateResult",
    "GeminiClient",
]

logger = logging.getLogger("visionkit.gemini")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
DEFAULT_MODEL = "gemini-2.5-flash"
#: Environment variables read for the API key, in order of precedence.
KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
#: Largest request body sent with inline image data; bigger images go through the Files API.
INLINE_LIMIT_BYTES = 20_000_000
#: Longest connect timeout, in seconds, when ``timeout`` is a single number.
MAX_CONNECT_TIMEOUT = 10.0

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {400: BadRequestError, 401: AuthError, 403: AuthError,
                                                     404: NotFoundError}


@dataclass(frozen=True)
class AnnotateResult:
    """The raw answer to one image request.

    Attributes:
        response: the generateContent response JSON, as returned by the API.
        original_wh: ``(width, height)`` of the upright source image; parse coordinates against it.
        sent_wh: ``(width, height)`` of the image that was sent.
        attempts: HTTP attempts the generateContent call took (1 = no retry).
    """

    response: dict
    original_wh: tuple[int, int]
    sent_wh: tuple[int, int]
    attempts: int


def _resolve_key(api_key: str | None) -> str:
    candidates = [("api_key argument", api_key)] + [(name, os.environ.get(name)) for name in KEY_ENV_VARS]
    found = [(where, value.strip()) for where, value in candidates if value and value.strip()]
    if not found:
        raise ConfigError("no Gemini API key: pass api_key=... or set the GEMINI_API_KEY (or GOOGLE_API_KEY) "
                          "environment variable; get a key at https://aistudio.google.com/apikey")
    where, key = found[0]
    if where in KEY_ENV_VARS and len(found) > 1 and found[1][1] != key:
        logger.warning("both %s and %s are set to different keys; using %s", where, found[1][0], where)
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigError(f"the Gemini API key from the {where} contains spaces or control characters")
    return key


def _resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get("GEMINI_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
    # Checked first, and never echoed: a query (``?key=...``) or userinfo (``user:pass@``) may hold a secret.
    if "?" in url or "#" in url or "@" in _authority(url):
        raise ConfigError("base_url must not contain a query, a fragment or credentials (a key in a URL "
                          "leaks into logs and proxies; the API key is sent in a header), got "
                          f"{_safe_url(url)!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, "
                          f"got {_safe_url(url)!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        logger.warning("base_url %s is plain http: the API key would cross the network unencrypted", url)
    return url


def _authority(url: str) -> str:
    """The ``user:pass@host:port`` part of ``url`` (scheme optional), without parsing it."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _safe_url(url: str) -> str:
    """``url`` for a message: without its query, fragment or userinfo (any of which may hold a secret)."""
    url = re.split(r"[?#]", url, maxsplit=1)[0]
    authority = _authority(url)
    if "@" in authority:
        scheme = url.split("://", 1)[0] + "://" if "://" in url else ""
        url = scheme + "***@" + authority.rsplit("@", 1)[1] + url[len(scheme) + len(authority):]
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _timeout(timeout: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(timeout, (tuple, list)):
        if len(timeout) != 2:
            raise ConfigError(f"timeout must be seconds or (connect, read), got {timeout!r}")
        connect, read = (float(v) for v in timeout)
    else:
        read = float(timeout)
        connect = min(read, MAX_CONNECT_TIMEOUT)
    if connect <= 0 or read <= 0:
        raise ConfigError(f"timeout must be positive, got {timeout!r}")
    return connect, read


def _as_contents(parts_or_contents: Any) -> list[dict]:
    """A str, a list of parts (str or dict) or a list of Content dicts -> ``contents``."""
    if isinstance(parts_or_contents, (str, Mapping)):
        parts_or_contents = [parts_or_contents]
    items = list(parts_or_contents)
    if not items:
        raise ConfigError("generate needs at least one part")
    if all(isinstance(item, Mapping) and "parts" in item for item in items):
        return [dict(item) for item in items]
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append({"text": item})
        elif isinstance(item, Mapping) and "parts" not in item:
            parts.append(dict(item))
        else:
            raise ConfigError("generate takes a list of parts (str or part dicts) or a list of contents "
                              f"({{'role', 'parts'}} dicts), not a mix; got {type(item).__name__}")
    return [{"role": "user", "parts": parts}]


class GeminiClient:
    """A client for the Gemini REST API (``v1beta``), holding one ``requests.Session``.

    Args:
        api_key: the key. Default: ``$GEMINI_API_KEY``, else ``$GOOGLE_API_KEY`` (empty = unset; whitespace
            is stripped). Missing -> :class:`ConfigError` here, before any request.
        model: model id, e.g. ``"gemini-2.5-flash"`` (a ``models/`` prefix is accepted).
        base_url: API root. Default: ``$GEMINI_BASE_URL``, else ``https://generativelanguage.googleapis.com``.
        timeout: seconds per HTTP request: a number (read timeout; connect timeout ``min(timeout, 10)``)
            or a ``(connect, read)`` tuple.
        max_retries: retries after the first attempt (ignored when ``retry`` is given).
        max_side: longest side in pixels of the image sent (never upscaled).
        retry: a :class:`RetryPolicy`; overrides ``max_retries``.
        session: a ``requests.Session`` to use; it is not closed by :meth:`close`. Default: a new session
            with a connection pool of ``pool_size``.
        on_retry: called as ``on_retry(attempt, delay, reason)`` before each retry wait (from the calling
            thread), e.g. to count retries in a progress bar.
        jpeg_quality: JPEG quality of the sent image.
        inline_limit_bytes: largest request sent with inline image data; above it the Files API is used.
        upload_poll_interval, upload_poll_timeout: polling of an uploaded file until it is ACTIVE (the
            waits use the retry policy's ``sleep``).
        pool_size: connections kept per host by the session this client creates.

    Raises:
        ConfigError: no API key, or an invalid option.
    """

    def __init__(self, api_key: str | None = None, model: str = DEFAULT_MODEL, base_url: str | None = None,
                 timeout: float | tuple[float, float] = 60, max_retries: int = 4, *,
                 max_side: int = DEFAULT_MAX_SIDE, retry: RetryPolicy | None = None,
                 session: requests.Session | None = None,
                 on_retry: Callable[[int, float, str], None] | None = None,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY, inline_limit_bytes: int = INLINE_LIMIT_BYTES,
                 upload_poll_interval: float = 1.0, upload_poll_timeout: float = 120.0,
                 pool_size: int = 32):
        self._api_key = _resolve_key(api_key)
        model = str(model).strip().removeprefix("models/")
        if not _MODEL_ID.match(model):
            raise ConfigError(f"model must be a model id such as {DEFAULT_MODEL!r}, got {model!r}")
        self.model = model
        self.base_url = _resolve_base_url(base_url)
        self.timeout = _timeout(timeout)
        if retry is None:
            if not isinstance(max_retries, int) or max_retries < 0:
                raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
            retry = RetryPolicy(max_attempts=max_retries + 1)
        self.retry = retry
        if not isinstance(max_side, int) or max_side < 1:
            raise ConfigError(f"max_side must be a positive int, got {max_side!r}")
        self.max_side = max_side
        self.jpeg_quality = jpeg_quality
        if inline_limit_bytes < 0:
            raise ConfigError(f"inline_limit_bytes must be >= 0, got {inline_limit_bytes}")
        self.inline_limit_bytes = inline_limit_bytes
        self.upload_poll_interval = upload_poll_interval
        self.upload_poll_timeout = upload_poll_timeout
        self.on_retry = on_retry
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._closed = False
        self._warned_segment = False
        from .. import __version__

        self._user_agent = f"visionkit/{__version__} python-requests/{requests.__version__}"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"GeminiClient(model={self.model!r}, base_url={self.base_url!r})"

    def __enter__(self) -> GeminiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's connections (only when this client created the session)."""
        if not self._closed:
            self._closed = True
            if self._owns_session:
                self._session.close()

    def __getstate__(self) -> None:
        raise TypeError("GeminiClient cannot be pickled (it holds an API key and a session)")

    # -- HTTP --------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key in text else text

    def _notify_retry(self, attempt: int, delay: float, reason: str) -> None:
        logger.debug("attempt %d failed (%s); retrying in %.2fs", attempt, reason, delay)
        if self.on_retry is not None:
            self.on_retry(attempt, delay, reason)

    def _transport_failure(self, exc: requests.RequestException, what: str, kind: str) -> Failed:
        error = TransportError(self._redact(
            f"Gemini API request failed: {kind} ({what}): {type(exc).__name__}: {exc}"))
        error.__cause__ = exc
        error.__suppress_context__ = True
        _scrub(exc)
        return Failed(error, None, kind)

    def _status_failure(self, response: requests.Response, what: str) -> Failed:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        error_obj = body.get("error") if isinstance(body, Mapping) else None
        error_obj = error_obj if isinstance(error_obj, Mapping) else None
        api_status = error_obj.get("status") if error_obj else None
        api_status = api_status if isinstance(api_status, str) else None
        api_message = error_obj.get("message") if error_obj else None
        api_message = self._redact(api_message) if isinstance(api_message, str) else None
        head = f"Gemini API {status}" + (f" {api_status}" if api_status else "")
        detail = api_message or f"{response.reason or 'error'} ({len(response.content)}-byte non-JSON body)"
        message = f"{head}: {detail} ({what})"
        delays = [d for d in (retry_info_delay(error_obj),
                              parse_retry_after(response.headers.get("Retry-After"))) if d is not None]
        server_delay = max(delays) if delays else None
        common = {"status": status, "api_status": api_status, "api_message": api_message}
        if status == 429:
            ids = quota_ids(error_obj)
            per_day = [i for i in ids if "perday" in i.lower()]
            quota_id = per_day[0] if per_day else (ids[0] if ids else None)
            if per_day:
                message = (f"{head}: the daily quota is exhausted (quota {quota_id}); retrying will not help "
                           f"until it resets at midnight Pacific time ({what}). API message: {detail}")
            error: HTTPStatusError = RateLimitError(self._redact(message), retry_delay=server_delay,
                                                    quota_id=quota_id, per_day=bool(per_day), **common)
        else:
            if status in (401, 403):
                message += "; check the API key (GEMINI_API_KEY / GOOGLE_API_KEY) and its restrictions"
            elif status == 404:
                message += f"; check the model name {self.model!r}"
            elif 300 <= status < 400:
                message += "; redirects are not followed"
            cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else HTTPStatusError)
            error = cls(self._redact(message), **common)
        response.close()
        return Failed(error, server_delay, f"HTTP {status}" + (f" {api_status}" if api_status else ""))

    def _request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                 data: Any = None, what: str = "", retry: RetryPolicy | None = None,
                 stream: bool = False) -> tuple[requests.Response, int]:
        """One API call with retries. Returns ``(response, attempts)`` for a 2xx answer.

        ``data`` is bytes or a binary file (rewound before each attempt, so a large upload streams from
        disk); ``retry`` replaces the client's policy for this call (the Batch API's create is not
        idempotent); ``stream=True`` leaves the body unread for ``iter_content``.
        """
        if self._closed:
            raise ConfigError("this GeminiClient is closed")
        sent = {"x-goog-api-key": self._api_key, "User-Agent": self._user_agent}
        sent.update(headers or {})
        what = what or f"{method} {urlsplit(url).path}"

        def send() -> requests.Response | Failed:
            logger.debug("%s %s (%s)", method, url, what)
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                response = self._session.request(method, url, headers=sent, data=data, timeout=self.timeout,
                                                 allow_redirects=False, stream=stream)
            except requests.Timeout as exc:
                return self._transport_failure(exc, what, "timeout")
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                return self._transport_failure(exc, what, "connection error")
            except requests.RequestException as exc:
                error = TransportError(self._redact(f"Gemini API request could not be sent ({what}): "
                                                    f"{type(exc).__name__}: {exc}"))
                _scrub(exc)
                raise error from exc
            if 200 <= response.status_code < 300:
                return response
            return self._status_failure(response, what)

        return (retry or self.retry).run(send, on_retry=self._notify_retry)

    def _post_generate(self, body: Mapping[str, Any] | bytes) -> tuple[dict, int]:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        url = f"{self.base_url}/{API_VERSION}/models/{self.model}:generateContent"
        response, attempts = self._request("POST", url, headers={"Content-Type": "application/json"},
                                           data=payload, what=f"model {self.model}")
        try:
            result = response.json()
        except ValueError as exc:
            snippet = self._redact(response.text[:80])
            error = ResponseError(f"Gemini API answered HTTP {response.status_code} with a body that is not "
                                  f"JSON (Content-Type {response.headers.get('Content-Type')!r}, "
                                  f"{len(response.content)} bytes): {snippet!r} (model {self.model})")
            raise _set_attempts(error, attempts) from exc
        if not isinstance(result, dict):
            raise _set_attempts(ResponseError(f"Gemini API answered with JSON {type(result).__name__}, "
                                              f"expected an object (model {self.model})"), attempts)
        return result, attempts

    # -- public API --------------------------------------------------------------------------------------

    def generate(self, parts_or_contents: Any, *, generation_config: Mapping[str, Any] | None = None,
                 system_instruction: str | Mapping[str, Any] | None = None,
                 safety_settings: Sequence[Mapping[str, Any]] | None = None) -> dict:
        """Call ``generateContent`` and return the raw response JSON.

        Args:
            parts_or_contents: a str, a list of parts (str or part dicts such as ``{"text": ...}`` or
                ``{"inlineData": {"mimeType", "data"}}``) sent as one user turn, or a list of Content dicts
                (``{"role": ..., "parts": [...]}``).
            generation_config: the ``generationConfig`` object, sent as given.
            system_instruction: a str or a Content dict.
            safety_settings: a list of ``{"category", "threshold"}``.

        Raises:
            APIError: see the module docstring (HTTPStatusError subclasses, TransportError, ResponseError);
                its ``attempts`` attribute is the number of HTTP attempts made.
        """
        body: dict[str, Any] = {"contents": _as_contents(parts_or_contents)}
        if system_instruction is not None:
            body["systemInstruction"] = ({"parts": [{"text": system_instruction}]}
                                         if isinstance(system_instruction, str) else dict(system_instruction))
        if safety_settings is not None:
            body["safetySettings"] = [dict(s) for s in safety_settings]
        if generation_config:
            body["generationConfig"] = dict(generation_config)
        return self._post_generate(body)[0]

    def upload(self, data: bytes, mime_type: str, *, display_name: str | None = None
               ) -> files_api.UploadedFile:
        """Upload bytes with the Files API and wait until the file is ACTIVE.

        Raises:
            APIError: its ``attempts`` attribute is the HTTP attempts of the Files API request that failed
                (or whose answer was unusable).
        """
        last_attempts = [1]

        def request(method: str, url: str, **kw: Any) -> requests.Response:
            last_attempts[0] = 1  # a failure inside _request sets its own attempts
            response, last_attempts[0] = self._request(method, url, what=f"Files API {method} "
                                                       f"{urlsplit(url).path}", **kw)
            return response

        try:
            return files_api.upload_bytes(request, self.base_url, data, mime_type,
                                          display_name=display_name, poll_interval=self.upload_poll_interval,
                                          poll_timeout=self.upload_poll_timeout, sleep=self.retry.sleep)
        except APIError as exc:
            _set_attempts(exc, last_attempts[0], replace=False)
            raise

    def annotate(self, image: Any, task: str, *, prompt: str | None = None,
                 classes: Sequence[str] | None = None, generation_config: Mapping[str, Any] | None = None,
                 json_mode: bool | None = None) -> AnnotateResult:
        """Send one image with a detection or segmentation prompt and return the raw answer.

        Args:
            image: a path, PIL image or uint8 RGB array; it is sent upright and downscaled to ``max_side``.
            task: ``"detect"`` or ``"segment"``.
            prompt: your own prompt (default: :func:`~visionkit.gemini.prompts.build_prompt`).
            classes: label names the answer must use (prompt constraint, and a response schema in JSON mode).
            generation_config: merged over the defaults of
                :func:`~visionkit.gemini.prompts.build_generation_config`.
            json_mode: force (True) or forbid (False) JSON mode; None: on for detect, off for segment.

        Raises:
            ConfigError: bad task, classes or generation config.
            InputError: the image cannot be read.
            APIError: the request failed (after retries). Its ``attempts`` attribute is the number of HTTP
                attempts made by the failed request (generateContent, or the Files API request when an
                upload fails), as :attr:`AnnotateResult.attempts` is for a success.
        """
        check_task(task)
        if task == "segment" and model_family(self.model).startswith("3") and not self._warned_segment:
            self._warned_segment = True
            logger.warning("Google documents no segmentation for Gemini 3 models (%s); masks may be missing "
                           "or come back as polygons. gemini-2.5-flash is the documented choice.", self.model)
        text = build_prompt(task, classes, prompt)
        config = build_generation_config(self.model, task, classes, json_mode=json_mode,
                                         overrides=generation_config)
        prepared = prepare_image(image, self.max_side, self.jpeg_quality)
        image_part: dict[str, Any] = {"inlineData": {"mimeType": prepared.mime_type,
                                                     "data": base64.b64encode(prepared.data).decode("ascii")}}
        # Google's advice for one image: the image part first, then the text.
        body = {"contents": [{"role": "user", "parts": [image_part, {"text": text}]}],
                "generationConfig": config}
        payload = json.dumps(body).encode("utf-8")
        if len(payload) > self.inline_limit_bytes:
            logger.debug("request is %d bytes, over the inline limit %d: using the Files API",
                         len(payload), self.inline_limit_bytes)
            uploaded = self.upload(prepared.data, prepared.mime_type, display_name=_display_name(image))
            body["contents"][0]["parts"][0] = uploaded.part()
            payload = json.dumps(body).encode("utf-8")
        response, attempts = self._post_generate(payload)
        return AnnotateResult(response=response, original_wh=prepared.original_wh, sent_wh=prepared.sent_wh,
                              attempts=attempts)

    def prepare(self, image: Any) -> PreparedImage:
        """The image as this client would send it (upright, ``<= max_side``, JPEG or PNG)."""
        return prepare_image(image, self.max_side, self.jpeg_quality)

    def detect(self, image: Any, prompt: str | None = None, classes: Sequence[str] | None = None,
               threshold: int = DEFAULT_THRESHOLD, *, generation_config: Mapping[str, Any] | None = None):
        """Boxes for ``image`` as :class:`~visionkit.detections.Detections` in the original image's pixels.

        Raises:
            APIError: the request failed; BlockedError / EmptyResponseError for a withheld or empty answer.
            ParseError: the answer holds no detection list.
        """
        return self._annotate_parse(image, "detect", prompt, classes, threshold, generation_config)

    def segment(self, image: Any, prompt: str | None = None, classes: Sequence[str] | None = None,
                threshold: int = DEFAULT_THRESHOLD, *,
                generation_config: Mapping[str, Any] | None = None):
        """Boxes and masks for ``image`` (see :meth:`detect`); masks are binarized at ``> threshold``."""
        return self._annotate_parse(image, "segment", prompt, classes, threshold, generation_config)

    def _annotate_parse(self, image: Any, task: str, prompt: str | None, classes: Sequence[str] | None,
                        threshold: int, generation_config: Mapping[str, Any] | None):
        from ..parse import parse_response

        result = self.annotate(image, task, prompt=prompt, classes=classes,
                               generation_config=generation_config)
        try:
            return parse_response(result.response, image_size=result.original_wh, threshold=threshold,
                                  masks=(task == "segment"))
        except APIError as exc:  # BlockedError / EmptyResponseError: the request itself succeeded
            _set_attempts(exc, result.attempts, replace=False)
            raise


def _display_name(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name[:512] or "image"
    return "image"


def _scrub(exc: BaseException) -> None:
    """Drop the prepared request (it holds the key header) from a requests exception we chain."""
    if hasattr(exc, "request"):
        with contextlib.suppress(AttributeError):
            exc.request = None

