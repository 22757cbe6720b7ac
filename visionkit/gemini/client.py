"""The Gemini REST client: typed errors, image requests built from the model registry.

::

    with GeminiClient() as client:                 # key from GEMINI_API_KEY or GOOGLE_API_KEY
        dets = client.segment("photo.jpg", classes=["cat", "dog"])

* ``POST {base}/v1beta/models/{model}:generateContent``; the HTTP layer (key header, retries, deadline,
  decoded-size cap, key redaction) is :mod:`visionkit.gemini.transport`. Every ``APIError`` raised
  carries ``attempts``: the HTTP attempts made by the request that failed.
* Image request bodies come from :func:`visionkit.gemini.request.build_request`, which reads the model's row
  in :mod:`visionkit.gemini.models` (thinking control, mask format, mediaResolution, status). A retired id
  is refused here, before any image is sent, naming its replacements.
* A 400 that names an unsupported thinking setting is retried ONCE with what the message allows
  (:mod:`visionkit.gemini.thinking`), and remembered for the rest of the run; no other 400 is retried.
* A request whose JSON would exceed ``inline_limit_bytes`` (20 MB by default, after base64) sends the image
  through the Files API (:mod:`visionkit.gemini.files_api`) and refers to it with ``fileData``.

One client may be shared by many threads (the pipeline calls :meth:`GeminiClient.annotate` from a thread
pool): its settings do not change after construction, what it learns is kept under a lock, and the
session's connection pool is sized by ``pool_size``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ..core.masks import DEFAULT_THRESHOLD
from ..errors import APIError, BadRequestError, ConfigError, ResponseError
from . import files_api
from .deadline import DeadlineAdapter
from .images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, PreparedImage, prepare_image
from .models import DEFAULT_MODEL, MODEL_ENV_VAR, lookup, resolve_model, status_note
from .prompts import check_task
from .request import RequestOptions, as_contents, build_request, encode_request, plan_request
from .retry import RetryPolicy, _set_attempts
from .session import EnvOnceSession
from .thinking import AUTO, ThinkingMemory, thinking_fix
from .transport import (
    DEFAULT_BASE_URL,
    KEY_ENV_VARS,
    MAX_RESPONSE_BYTES,
    Transport,
    parse_timeout,
    resolve_base_url,
    resolve_key,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "FLEX_TIMEOUT",
    "INLINE_LIMIT_BYTES",
    "KEY_ENV_VARS",
    "MODEL_ENV_VAR",
    "AnnotateResult",
    "GeminiClient",
]

logger = logging.getLogger("visionkit.gemini")

API_VERSION = "v1beta"
#: Largest request body sent with inline image data; bigger images go through the Files API.
INLINE_LIMIT_BYTES = 20_000_000
#: Default seconds per request on the standard and priority tiers.
DEFAULT_TIMEOUT = 60.0
#: Default seconds per request on the flex tier: flex "queues requests for up to 15 minutes before
#: returning the first byte" (docker/docker-agent PR #4348), and Google gives it latency targets of minutes.
FLEX_TIMEOUT = 900.0

_CURRENT_HINT = "current models include gemini-3.8-flash, gemini-3.6-flash and gemini-3.1-flash-lite"


@dataclass(frozen=True)
class AnnotateResult:
    """The raw answer to one image request.

    Attributes:
        response: the generateContent response JSON, as returned by the API.
        original_wh: ``(width, height)`` of the upright source image; parse coordinates against it.
        sent_wh: ``(width, height)`` of the image that was sent.
        attempts: HTTP attempts the generateContent call took (1 = no retry), including a request the API
            rejected for its thinking setting.
        mask_format: the mask format the prompt asked for (``"png"``, ``"polygon"``, ``"none"``; None for
            detect).
        mask_order: ``"yx"`` when the prompt stated the polygon point order, else None.
        usage: the ``usageMetadata`` of the response (empty when absent).
    """

    response: dict
    original_wh: tuple[int, int]
    sent_wh: tuple[int, int]
    attempts: int
    mask_format: str | None = None
    mask_order: str | None = None
    usage: dict = field(default_factory=dict)


class GeminiClient:
    """A client for the Gemini REST API (``v1beta``), holding one ``requests.Session``.

    Args:
        api_key: the key. Default: ``$GEMINI_API_KEY``, else ``$GOOGLE_API_KEY`` (empty = unset; whitespace
            is stripped). Missing -> :class:`ConfigError` here, before any request.
        model: model id (a ``models/`` prefix is accepted). Default: ``$VISIONKIT_MODEL``, else
            :data:`DEFAULT_MODEL`. A retired id raises :class:`ConfigError` naming its replacements.
        base_url: API root. Default: ``$GEMINI_BASE_URL``, else ``https://generativelanguage.googleapis.com``.
        timeout: seconds per socket operation: a number (read timeout; connect timeout ``min(timeout, 10)``)
            or a ``(connect, read)`` tuple. Default: 60, or 900 on the flex tier.
        max_retries: retries after the first attempt (ignored when ``retry`` is given).
        max_side: longest side in pixels of the image sent (never upscaled).
        retry: a :class:`RetryPolicy`; overrides ``max_retries``. Default on flex: longer waits (up to 30
            minutes in all), since flex requests can be dropped when capacity is short.
        session: a ``requests.Session`` to use; it is not closed by :meth:`close`. Default: a new session
            with a connection pool of ``pool_size`` (a ``DeadlineAdapter``, see ``deadline``).
        on_retry: called as ``on_retry(attempt, delay, reason)`` before each retry wait (from the calling
            thread), e.g. to count retries in a progress bar.
        jpeg_quality: JPEG quality of the sent image.
        inline_limit_bytes: largest request sent with inline image data; above it the Files API is used.
        upload_poll_interval, upload_poll_timeout: polling of an uploaded file until it is ACTIVE (the
            waits use the retry policy's ``sleep``).
        pool_size: connections kept per host by the session this client creates.
        media_resolution: ``"low"``, ``"medium"``, ``"high"``, ``"ultra_high"`` or None (model default).
        service_tier: ``"standard"``, ``"flex"``, ``"priority"`` or None.
        deadline: seconds one HTTP attempt may take from the moment its request was sent until its whole
            answer, headers and body, is in (the upload is not counted; default: the read timeout). A
            ``session`` of your own gets the header part only if it mounts
            :class:`~visionkit.gemini.deadline.DeadlineAdapter`.
        max_response_bytes: cap on a decoded response body (default 64 MiB).
        learn_thinking: retry once a request whose thinking setting the API rejects (see the module doc).

    Raises:
        ConfigError: no API key, a retired model, or an invalid option.
    """

    def __init__(self, api_key: str | None = None, model: str | None = None, base_url: str | None = None,
                 timeout: float | tuple[float, float] | None = None, max_retries: int = 4, *,
                 max_side: int = DEFAULT_MAX_SIDE, retry: RetryPolicy | None = None,
                 session: requests.Session | None = None,
                 on_retry: Callable[[int, float, str], None] | None = None,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY, inline_limit_bytes: int = INLINE_LIMIT_BYTES,
                 upload_poll_interval: float = 1.0, upload_poll_timeout: float = 120.0,
                 pool_size: int = 32, media_resolution: str | None = None, service_tier: str | None = None,
                 deadline: float | None = None, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 learn_thinking: bool = True):
        api_key = resolve_key(api_key)
        self.model = resolve_model(model)
        self.info = lookup(self.model)
        self.base_url = resolve_base_url(base_url)
        self.service_tier = service_tier
        self.media_resolution = media_resolution
        RequestOptions(media_resolution=media_resolution, service_tier=service_tier)  # validates both
        flex = service_tier == "flex"
        self.timeout = parse_timeout(timeout if timeout is not None else (FLEX_TIMEOUT if flex else
                                                                          DEFAULT_TIMEOUT))
        if retry is None:
            if not isinstance(max_retries, int) or max_retries < 0:
                raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
            # Flex requests can be dropped when capacity is short: wait longer between tries.
            retry = (RetryPolicy(max_attempts=max_retries + 1, base_delay=5.0, max_delay=300.0,
                                 max_total_wait=1800.0)
                     if flex else RetryPolicy(max_attempts=max_retries + 1))
        if not isinstance(max_side, int) or max_side < 1:
            raise ConfigError(f"max_side must be a positive int, got {max_side!r}")
        self.max_side = max_side
        self.jpeg_quality = jpeg_quality
        if inline_limit_bytes < 0:
            raise ConfigError(f"inline_limit_bytes must be >= 0, got {inline_limit_bytes}")
        self.inline_limit_bytes = inline_limit_bytes
        self.upload_poll_interval = upload_poll_interval
        self.upload_poll_timeout = upload_poll_timeout
        self.learn_thinking = learn_thinking
        self.thinking = ThinkingMemory()
        self._owns_session = session is None
        if session is None:
            session = EnvOnceSession()  # reads the proxy/CA/netrc environment once, not per request
            adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=max(1, pool_size))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        from .._version import __version__

        self._http = Transport(api_key, self.timeout, retry, session, deadline=deadline, on_retry=on_retry,
                               max_body_bytes=max_response_bytes,
                               user_agent=f"visionkit/{__version__} python-requests/{requests.__version__}")
        if self.info.status == "deprecated":  # info: the labelling run says it once as a notice
            logger.info("%s", status_note(self.model, self.info))

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def retry(self) -> RetryPolicy:
        return self._http.retry

    @property
    def on_retry(self) -> Callable[[int, float, str], None] | None:
        return self._http.on_retry

    @on_retry.setter
    def on_retry(self, hook: Callable[[int, float, str], None] | None) -> None:
        self._http.on_retry = hook

    @property
    def deadline(self) -> float:
        return self._http.deadline

    def __repr__(self) -> str:
        return f"GeminiClient(model={self.model!r}, base_url={self.base_url!r})"

    def __enter__(self) -> GeminiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's connections (only when this client created the session)."""
        if not self._http.closed:
            self._http.closed = True
            if self._owns_session:
                self._http.session.close()

    def __getstate__(self) -> None:
        raise TypeError("GeminiClient cannot be pickled (it holds an API key and a session)")

    # -- HTTP --------------------------------------------------------------------------------------------

    def _not_found_hint(self) -> str:
        note = status_note(self.model, self.info)
        if note:
            return note
        return (f"check the model name {self.model!r}: it may not exist, not be available to this key, or be "
                f"retired (requests to a retired id return 404); {_CURRENT_HINT}")

    def _request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                 data: Any = None, what: str = "", retry: RetryPolicy | None = None,
                 stream: bool = False) -> tuple[requests.Response, int]:
        """One API call with retries (see :meth:`Transport.request`); used by the Batch API layer."""
        return self._http.request(method, url, headers=headers, data=data, what=what, retry=retry,
                                  stream=stream)

    def _post_generate(self, body: Mapping[str, Any] | bytes) -> tuple[dict, int]:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        url = f"{self.base_url}/{API_VERSION}/models/{self.model}:generateContent"
        response, attempts = self._http.request("POST", url, headers={"Content-Type": "application/json"},
                                                data=payload, what=f"model {self.model}",
                                                not_found_hint=self._not_found_hint())
        try:
            result = json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            deep = isinstance(exc, RecursionError)
            reason = "is nested too deeply to be an answer" if deep else "is not JSON"
            snippet = response.content[:80].decode("utf-8", errors="replace")
            content_type = self._http.redact(str(response.headers.get("Content-Type")))  # headers too
            error = ResponseError(f"Gemini API answered HTTP {response.status_code} with a body that "
                                  f"{reason} (Content-Type {content_type!r}, "
                                  f"{len(response.content)} bytes): {snippet!r} (model {self.model})")
            raise _set_attempts(error, attempts) from None
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
        body: dict[str, Any] = {"contents": as_contents(parts_or_contents)}
        if system_instruction is not None:
            body["systemInstruction"] = ({"parts": [{"text": system_instruction}]}
                                         if isinstance(system_instruction, str) else dict(system_instruction))
        if safety_settings is not None:
            body["safetySettings"] = [dict(s) for s in safety_settings]
        if generation_config:
            body["generationConfig"] = dict(generation_config)
        if self.service_tier in ("flex", "priority"):
            body["serviceTier"] = self.service_tier
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
            last_attempts[0] = 1  # a failure inside request sets its own attempts
            response, last_attempts[0] = self._http.request(method, url, what=f"Files API {method} "
                                                            f"{urlsplit(url).path}", **kw)
            return response

        try:
            return files_api.upload_bytes(request, self.base_url, data, mime_type,
                                          display_name=display_name, poll_interval=self.upload_poll_interval,
                                          poll_timeout=self.upload_poll_timeout, sleep=self.retry.sleep)
        except APIError as exc:
            _set_attempts(exc, last_attempts[0], replace=False)
            raise

    def options(self, *, prompt: str | None = None, classes: Sequence[str] | None = None,
                generation_config: Mapping[str, Any] | None = None, json_mode: bool | None = None,
                mask_format: str | None = None) -> RequestOptions:
        """The :class:`RequestOptions` this client sends for these arguments (tier, media resolution and
        what it learned about thinking included): pass them to :func:`~visionkit.gemini.request.build_request`
        to build the same body elsewhere (e.g. a Batch API line)."""
        learned = self.thinking.get(self.model)
        if learned != AUTO and generation_config:  # what the API said wins over a rejected override
            generation_config = {k: v for k, v in generation_config.items()
                                 if k not in ("thinkingConfig", "thinking_config")}
        return RequestOptions(prompt=prompt, classes=classes, json_mode=json_mode,
                              generation_config=generation_config, media_resolution=self.media_resolution,
                              service_tier=self.service_tier, mask_format=mask_format, thinking=learned)

    def annotate(self, image: Any, task: str, *, prompt: str | None = None,
                 classes: Sequence[str] | None = None, generation_config: Mapping[str, Any] | None = None,
                 json_mode: bool | None = None, mask_format: str | None = None) -> AnnotateResult:
        """Send one image with a detection or segmentation prompt and return the raw answer.

        Args:
            image: a path, PIL image or uint8 RGB array; it is sent upright and downscaled to ``max_side``.
            task: ``"detect"`` or ``"segment"``.
            prompt: your own prompt (default: :func:`~visionkit.gemini.prompts.build_prompt`).
            classes: label names the answer must use (prompt constraint, and a response schema in JSON mode).
            generation_config: merged over the defaults of
                :func:`~visionkit.gemini.prompts.build_generation_config`.
            json_mode: force (True) or forbid (False) JSON mode; None: on for detect, off for segment.
            mask_format: ask for ``"png"`` or ``"polygon"`` masks instead of the model's registry format.

        Raises:
            ConfigError: bad task, classes or generation config.
            InputError: the image cannot be read.
            APIError: the request failed (after retries). Its ``attempts`` attribute is the number of HTTP
                attempts made by the failed request (generateContent, or the Files API request when an
                upload fails), as :attr:`AnnotateResult.attempts` is for a success.
        """
        check_task(task)
        options = self.options(prompt=prompt, classes=classes, generation_config=generation_config,
                               json_mode=json_mode, mask_format=mask_format)
        plan = plan_request(task, self.model, options)  # bad options fail before the image is read
        prepared = prepare_image(image, self.max_side, self.jpeg_quality)
        part: Any = prepared
        body = build_request(part, task, self.model, options)
        payload = encode_request(body)
        if len(payload) > self.inline_limit_bytes:
            logger.debug("request is %d bytes, over the inline limit %d: using the Files API",
                         len(payload), self.inline_limit_bytes)
            part = self.upload(prepared.data, prepared.mime_type, display_name=_display_name(image)).part()
            body = build_request(part, task, self.model, options)
            payload = encode_request(body)
        try:
            response, attempts = self._post_generate(payload)
        except BadRequestError as exc:
            sent = body["generationConfig"].get("thinkingConfig")
            fix = thinking_fix(exc.api_message, sent) if self.learn_thinking else None
            if fix is None:
                raise
            if self.thinking.learn(self.model, fix.config):
                logger.warning("%s rejected thinkingConfig %s (400: %s); %s, for the rest of this run",
                               self.model, json.dumps(sent), exc.api_message, fix.reason)
            options = self.options(prompt=prompt, classes=classes, generation_config=generation_config,
                                   json_mode=json_mode, mask_format=mask_format)
            body = build_request(part, task, self.model, options)
            try:
                response, more = self._post_generate(body)
            except APIError as again:
                _set_attempts(again, getattr(again, "attempts", 1) + exc.attempts)
                raise
            attempts = exc.attempts + more
            self.thinking.corrected(self.model, body["generationConfig"].get("thinkingConfig"), sent,
                                    f"400: {exc.api_message}")
        usage = response.get("usageMetadata")
        return AnnotateResult(response=response, original_wh=prepared.original_wh, sent_wh=prepared.sent_wh,
                              attempts=attempts, mask_format=plan.mask_format, mask_order=plan.mask_order,
                              usage=dict(usage) if isinstance(usage, Mapping) else {})

    def prepare(self, image: Any) -> PreparedImage:
        """The image as this client would send it (upright, ``<= max_side``, JPEG or PNG)."""
        return prepare_image(image, self.max_side, self.jpeg_quality)

    def detect(self, image: Any, prompt: str | None = None, classes: Sequence[str] | None = None,
               threshold: int = DEFAULT_THRESHOLD, *, generation_config: Mapping[str, Any] | None = None):
        """Boxes for ``image`` as :class:`~visionkit.core.detections.Detections` in the original image's
        pixels.

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
        from ..answers.parse import parse_response

        result = self.annotate(image, task, prompt=prompt, classes=classes,
                               generation_config=generation_config)
        try:
            return parse_response(result.response, image_size=result.original_wh, threshold=threshold,
                                  masks=(task == "segment" and result.mask_format != "none"),
                                  mask_order=result.mask_order)
        except APIError as exc:  # BlockedError / EmptyResponseError: the request itself succeeded
            _set_attempts(exc, result.attempts, replace=False)
            raise


def _display_name(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name[:512] or "image"
    return "image"
