"""Gemini Batch API wire operations: create (inline or from a JSONL file), get, list, cancel, delete, and
the result download. The orchestration (sharding, the job record, polling, collection) is
:mod:`visionkit.batching`; this module only speaks the protocol.

Protocol (``shared/design/GEMINI-API-FACTS.md`` section 4; https://ai.google.dev/gemini-api/docs/batch-api,
REST samples; python-genai ``batches.py``, ``_BatchJob_from_mldev``):

* create: ``POST {base}/v1beta/models/{model}:batchGenerateContent`` with
  ``{"batch": {"displayName", "inputConfig": {"fileName": "files/..."}}}`` or, inline,
  ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata":
  {"key"}}]}}}}``.
  The answer is an Operation whose ``name`` is the job, ``batches/<id>``.
* get: ``GET {base}/v1beta/batches/<id>`` -> Operation ``{name, metadata: {state, batchStats, displayName,
  createTime, updateTime, endTime, output}, done, response, error}``; list: ``GET {base}/v1beta/batches``
  (``operations``, ``nextPageToken``); cancel: ``POST .../batches/<id>:cancel``; delete: ``DELETE``.
* results: ``response.responsesFile`` (a JSONL file downloaded from
  ``{base}/download/v1beta/files/<id>:download?alt=media``, one ``{"key", "response"|"error"}`` per line) or
  ``response.inlinedResponses.inlinedResponses`` (``[{"response"|"error", "metadata": {"key"}}]``), both in
  input order.
* states: the wire says ``BATCH_STATE_*``; the SDKs and the docs' samples say ``JOB_STATE_*``. Both are
  accepted and reduced to the bare name (``"RUNNING"``) by :func:`job_state`.

Creating a job is not idempotent ("The creation of a batch job is not idempotent", batch-api "Best
practices"): :func:`create_job` retries only a 429, which the API answers before doing anything. A
timeout, a reset or a 5xx leaves it unknown whether the job exists, and raises :class:`BatchError`; the
caller finds out with :func:`find_job` (by display name) before it ever creates again.

The key travels in the ``x-goog-api-key`` header only (every call goes through the client's request
machinery), never in a URL, and the names put into URLs are checked against the API's name patterns.
"""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from ..atomic import atomic_open
from ..errors import APIError, BatchError, HTTPStatusError, RateLimitError, ResponseError, TransportError
from . import files_api
from .client import API_VERSION, GeminiClient
from .retry import RetryPolicy
from .transport import scrub

__all__ = [
    "ACTIVE_STATES",
    "JSONL_MIME_TYPE",
    "TERMINAL_STATES",
    "BatchJob",
    "cancel_job",
    "create_job",
    "delete_file",
    "delete_job",
    "download_file",
    "find_job",
    "get_job",
    "inline_body",
    "iter_inlined",
    "iter_result_lines",
    "job_state",
    "list_jobs",
    "upload_jsonl",
]

#: MIME type of an uploaded request file (the batch-api REST sample uploads with ``application/jsonl``).
JSONL_MIME_TYPE = "application/jsonl"
#: States after which a job changes no more. ``PARTIALLY_SUCCEEDED`` is an SDK name with results.
TERMINAL_STATES = frozenset({"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
#: States of a job that is still queued or working (it may yet produce results).
ACTIVE_STATES = frozenset({"PENDING", "QUEUED", "RUNNING", "CANCELLING", "PAUSED", "UPDATING", "UNSPECIFIED"})

_JOB_NAME = re.compile(r"^batches/[A-Za-z0-9_-]{1,128}$")
_FILE_NAME = re.compile(r"^files/[a-z0-9-]{1,64}$")
_STATE_PREFIXES = ("BATCH_STATE_", "JOB_STATE_")


def job_state(raw: Any) -> str:
    """``"BATCH_STATE_RUNNING"`` or ``"JOB_STATE_RUNNING"`` -> ``"RUNNING"``; missing -> ``"UNSPECIFIED"``."""
    state = str(raw or "").strip().upper()
    for prefix in _STATE_PREFIXES:
        if state.startswith(prefix):
            state = state[len(prefix):]
            break
    return state or "UNSPECIFIED"


def _count(value: Any) -> int | None:
    """An int64 stat (proto3 JSON sends them as strings) or None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class BatchJob:
    """One batch job as the API last described it.

    Attributes:
        name: ``batches/<id>``.
        state: the bare state name (``"PENDING"``, ``"RUNNING"``, ``"SUCCEEDED"``, ``"FAILED"``,
            ``"CANCELLED"``, ``"EXPIRED"``, ...), whichever naming the server used.
        raw_state: the state string exactly as received.
        display_name: the name given at creation.
        done: the Operation's ``done`` flag.
        request_count, succeeded_count, failed_count, pending_count: ``batchStats``, when given.
        responses_file: ``files/<id>`` of the JSONL results (file input), or None.
        inlined: the ``inlinedResponses`` list (inline input), or None.
        error: the job's error ``{"code", "message"}``, or None.
        create_time, update_time, end_time: RFC 3339 strings, when given.
    """

    name: str
    state: str
    raw_state: str = ""
    display_name: str | None = None
    done: bool = False
    request_count: int | None = None
    succeeded_count: int | None = None
    failed_count: int | None = None
    pending_count: int | None = None
    responses_file: str | None = None
    inlined: list | None = field(default=None, repr=False)
    error: dict | None = None
    create_time: str | None = None
    update_time: str | None = None
    end_time: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the job will change no more."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the job ended with results."""
        return self.state in ("SUCCEEDED", "PARTIALLY_SUCCEEDED")

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> BatchJob:
        """Parse an Operation (``{name, metadata, done, response}``) or a bare batch resource."""
        if not isinstance(body, Mapping):
            raise ResponseError(f"Batch API: expected a JSON object for a job, got {type(body).__name__}")
        meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else body
        name = body.get("name") or meta.get("name")
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise ResponseError(f"Batch API: the answer has no valid job name (got {str(name)[:80]!r})")
        raw_state = meta.get("state") or body.get("state") or ""
        stats = meta.get("batchStats") if isinstance(meta.get("batchStats"), Mapping) else {}
        output = body.get("response") if isinstance(body.get("response"), Mapping) else None
        if output is None and isinstance(meta.get("output"), Mapping):
            output = meta["output"]
        output = output or {}
        responses_file = output.get("responsesFile")
        inlined = output.get("inlinedResponses")
        if isinstance(inlined, Mapping):
            inlined = inlined.get("inlinedResponses")
        error = body.get("error") if isinstance(body.get("error"), Mapping) else None
        return cls(name=name, state=job_state(raw_state), raw_state=str(raw_state),
                   display_name=meta.get("displayName"), done=bool(body.get("done")),
                   request_count=_count(stats.get("requestCount")),
                   succeeded_count=_count(stats.get("successfulRequestCount")),
                   failed_count=_count(stats.get("failedRequestCount")),
                   pending_count=_count(stats.get("pendingRequestCount")),
                   responses_file=responses_file if isinstance(responses_file, str) else None,
                   inlined=list(inlined) if isinstance(inlined, list) else None,
                   error=dict(error) if error else None, create_time=meta.get("createTime"),
                   update_time=meta.get("updateTime"), end_time=meta.get("endTime"))


def _check(pattern: re.Pattern, name: str, what: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise ResponseError(f"Batch API: {what} {str(name)[:80]!r} is not a valid resource name")
    return name


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json() if response.content else {}
    except ValueError as exc:
        raise ResponseError(f"Batch API {what}: the answer is not JSON (HTTP {response.status_code}, "
                            f"{len(response.content)} bytes)") from exc


def _url(client: GeminiClient, path: str) -> str:
    return f"{client.base_url}/{API_VERSION}/{path}"


class _CreatePolicy(RetryPolicy):
    """Retry only what the API answered before doing anything: a (per-minute) 429."""

    def is_retryable(self, error: APIError) -> bool:
        if isinstance(error, RateLimitError):
            return not error.per_day
        return False


def inline_body(display_name: str, lines: Iterable[bytes | str]) -> bytes:
    """The create body for inline requests, from JSONL lines ``{"key", "request"}`` (built streaming, so
    the body is the only copy held)."""
    chunks = [b'{"batch": {"displayName": ', json.dumps(display_name).encode(), b', "inputConfig": '
              b'{"requests": {"requests": [']
    first = True
    for line in lines:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        chunks.append((b"" if first else b", ") + json.dumps(
            {"request": item["request"], "metadata": {"key": str(item["key"])}}).encode("utf-8"))
        first = False
    chunks.append(b"]}}}}")
    return b"".join(chunks)


def create_job(client: GeminiClient, display_name: str, *, file_name: str | None = None,
               inline: bytes | None = None, model: str | None = None) -> BatchJob:
    """Create one batch job from an uploaded JSONL file (``file_name``) or an inline body
    (:func:`inline_body`).

    Raises:
        BatchError: the request may or may not have created the job (timeout, reset, 5xx, an unreadable
            answer); look for ``display_name`` with :func:`find_job` before creating again.
        APIError: the API refused (400, 401/403, 404, a 429 after retries): no job was created.
    """
    if (file_name is None) == (inline is None):
        raise ValueError("create_job takes exactly one of file_name and inline")
    model = (model or client.model).removeprefix("models/")
    if file_name is not None:
        payload = json.dumps({"batch": {"displayName": display_name,
                                        "inputConfig": {"fileName": _check(_FILE_NAME, file_name, "file")}}}
                             ).encode("utf-8")
    else:
        payload = inline
    policy = _CreatePolicy(max_attempts=client.retry.max_attempts, base_delay=client.retry.base_delay,
                           max_delay=client.retry.max_delay, max_total_wait=client.retry.max_total_wait,
                           jitter=client.retry.jitter, sleep=client.retry.sleep, rng=client.retry.rng)
    try:
        response, _ = client._request("POST", _url(client, f"models/{model}:batchGenerateContent"),
                                      headers={"Content-Type": "application/json"}, data=payload,
                                      retry=policy, what=f"batch create {display_name}")
        return BatchJob.from_api(_json(response, "create"))
    except (TransportError, ResponseError) as exc:
        raise _unknown(display_name, exc) from exc
    except HTTPStatusError as exc:
        if exc.status >= 500 or exc.status == 408:
            raise _unknown(display_name, exc) from exc
        raise


def _unknown(display_name: str, exc: BaseException) -> BatchError:
    return BatchError(f"creating batch job {display_name!r} failed in a way that may have created it anyway "
                      f"({exc}); it is looked up by name before any new attempt", job=display_name)


def get_job(client: GeminiClient, name: str) -> BatchJob:
    """The job's current state (``GET batches/<id>``)."""
    response, _ = client._request("GET", _url(client, _check(_JOB_NAME, name, "job")),
                                  what=f"batch get {name}")
    return BatchJob.from_api(_json(response, f"get {name}"))


def list_jobs(client: GeminiClient, page_size: int = 100) -> Iterator[BatchJob]:
    """Every job of the project, newest first as the API lists them (``GET batches``, paged)."""
    token = ""
    while True:
        query = f"?pageSize={int(page_size)}" + (f"&pageToken={requests.utils.quote(token)}" if token else "")
        response, _ = client._request("GET", _url(client, "batches") + query, what="batch list")
        body = _json(response, "list")
        body = body if isinstance(body, Mapping) else {}
        for op in body.get("operations") or []:
            try:
                yield BatchJob.from_api(op)
            except ResponseError:
                continue  # another tool's oddity must not hide ours
        token = body.get("nextPageToken")
        if not token:
            return


def find_job(client: GeminiClient, display_name: str) -> BatchJob | None:
    """The job created with ``display_name``, or None when the project has none."""
    for job in list_jobs(client):
        if job.display_name == display_name:
            return job
    return None


def cancel_job(client: GeminiClient, name: str) -> None:
    """Ask the API to cancel a job (``POST batches/<id>:cancel``); it ends CANCELLED."""
    client._request("POST", _url(client, _check(_JOB_NAME, name, "job") + ":cancel"),
                    headers={"Content-Type": "application/json"}, data=b"{}", what=f"batch cancel {name}")


def delete_job(client: GeminiClient, name: str) -> None:
    """Delete a job record (``DELETE batches/<id>``)."""
    client._request("DELETE", _url(client, _check(_JOB_NAME, name, "job")), what=f"batch delete {name}")


def upload_jsonl(client: GeminiClient, path: str | os.PathLike, display_name: str
                 ) -> files_api.UploadedFile:
    """Upload a JSONL request file through the Files API, streamed from disk."""
    def request(method: str, url: str, **kw: Any) -> requests.Response:
        return client._request(method, url, what=f"Files API {method} (batch input)", **kw)[0]

    with open(path, "rb") as fh:
        return files_api.upload_bytes(request, client.base_url, fh, JSONL_MIME_TYPE,
                                      display_name=display_name, poll_interval=client.upload_poll_interval,
                                      poll_timeout=client.upload_poll_timeout, sleep=client.retry.sleep)


def delete_file(client: GeminiClient, name: str) -> None:
    """Delete an uploaded or generated file (``DELETE files/<id>``)."""
    _check(_FILE_NAME, name, "file")
    files_api.delete_file(lambda method, url, **kw: client._request(method, url, what=f"delete {name}",
                                                                     **kw)[0], client.base_url, name)


class _CutOff(Exception):
    """The download broke while its body was read (deliberately not an OSError: ``atomic_open`` turns those
    into a disk-write error)."""


def download_file(client: GeminiClient, name: str, dest: str | os.PathLike, *, attempts: int = 3) -> int:
    """Stream file ``name`` (a job's ``responsesFile``) to ``dest``, atomically. Returns its byte count.

    A download cut off mid-way (a reset, a truncated body, a read timeout) is started again, after the
    client's retry backoff, up to ``attempts`` times; then it raises :class:`TransportError`. Only a
    failure to write ``dest`` is an :class:`~visionkit.errors.ExportError`.
    """
    url = f"{client.base_url}/download/{API_VERSION}/{_check(_FILE_NAME, name, 'file')}:download?alt=media"
    previous: float | None = None
    for attempt in range(1, attempts + 1):
        response, _ = client._request("GET", url, stream=True, what=f"download {name}")
        try:
            size = 0
            with atomic_open(dest, "wb") as fh:
                for chunk in _body_chunks(response):
                    fh.write(chunk)
                    size += len(chunk)
            return size
        except _CutOff as exc:
            cause = exc.__cause__
            if attempt == attempts:
                raise TransportError(f"download of {name} was cut off {attempts} times: "
                                     f"{type(cause).__name__}") from None
            previous = client.retry.backoff(attempt, previous)
            client.retry.sleep(previous)
        finally:
            response.close()
    raise AssertionError("unreachable")


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body's pieces; a network failure while reading becomes :class:`_CutOff`."""
    chunks = response.iter_content(1 << 20)
    while True:
        try:
            chunk = next(chunks, None)
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
            scrub(exc)  # requests' errors carry the prepared request, key header included
            raise _CutOff() from exc
        if chunk is None:
            return
        yield chunk


def _line_outcome(item: Mapping[str, Any]) -> tuple[dict | None, dict | None]:
    response = item.get("response")
    error = item.get("error") or item.get("status")
    if isinstance(response, Mapping):
        return dict(response), None
    if isinstance(error, Mapping):
        return None, dict(error)
    if "candidates" in item or "promptFeedback" in item:  # a bare GenerateContentResponse line
        return {k: v for k, v in item.items() if k != "key"}, None
    return None, {"message": "the result line holds neither a response nor an error"}


def iter_result_lines(path: str | os.PathLike, keys: list[str] | None = None
                      ) -> Iterator[tuple[str | None, dict | None, dict | None]]:
    """``(key, response, error)`` for each line of a downloaded result file, read one line at a time.

    A line without ``key`` is matched by position in ``keys`` (the API writes results in input order).
    """
    with open(Path(path), "rb") as fh:
        for index, raw in enumerate(fh):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                yield (keys[index] if keys and index < len(keys) else None), None, {
                    "message": f"result line {index + 1} is not JSON"}
                continue
            if not isinstance(item, Mapping):
                yield None, None, {"message": f"result line {index + 1} is not a JSON object"}
                continue
            key = item.get("key")
            if key is None and keys and index < len(keys):
                key = keys[index]
            yield (None if key is None else str(key)), *_line_outcome(item)


def iter_inlined(job: BatchJob, keys: list[str] | None = None
                 ) -> Iterator[tuple[str | None, dict | None, dict | None]]:
    """``(key, response, error)`` for each inlined response of a finished inline job."""
    for index, item in enumerate(job.inlined or []):
        if not isinstance(item, Mapping):
            continue
        meta = item.get("metadata") if isinstance(item.get("metadata"), Mapping) else {}
        key = meta.get("key")
        if key is None and keys and index < len(keys):
            key = keys[index]
        yield (None if key is None else str(key)), *_line_outcome(item)
