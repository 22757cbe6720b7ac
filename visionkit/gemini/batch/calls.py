"""The job calls: create (inline or from an uploaded JSONL file; never retried past a 429, see the package
docstring), get, list, find by display name, cancel and delete."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import requests

from ...errors import APIError, BatchError, HTTPStatusError, RateLimitError, ResponseError, TransportError
from ..client import API_VERSION, GeminiClient
from ..retry import Failed, RetryPolicy
from .job import _FILE_NAME, _JOB_NAME, BatchJob, _check

__all__ = [
    "cancel_job", "create_job", "delete_job", "find_job", "get_job", "inline_body", "inline_size",
    "list_jobs",
]

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

    def paces(self, failed: Failed) -> bool:
        return False  # a 429 here means the batch quota is full: max_attempts tries, backed off, not more


def _inline_head(display_name: str) -> bytes:
    return (b'{"batch": {"displayName": ' + json.dumps(display_name, ensure_ascii=False).encode("utf-8")
            + b', "inputConfig": {"requests": {"requests": [')


_INLINE_TAIL = b"]}}}}"
#: Bytes an inline item ``{"request": R, "metadata": {"key": K}}`` has more than its JSONL line
#: ``{"key": K, "request": R}`` without the newline: ``"metadata": {`` and ``}``.
_ITEM_EXTRA = len(b'"metadata": {}')
_SEPARATOR = b", "


def inline_body(display_name: str, lines: Iterable[bytes | str]) -> bytes:
    """The create body for inline requests, from JSONL lines ``{"key", "request"}`` (built streaming, so
    the body is the only copy held). UTF-8, not ASCII-escaped, exactly as the lines are written, so its
    size is known before it is built (:func:`inline_size`)."""
    chunks = [_inline_head(display_name)]
    first = True
    for line in lines:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        chunks.append((b"" if first else _SEPARATOR) + json.dumps(
            {"request": item["request"], "metadata": {"key": str(item["key"])}},
            ensure_ascii=False).encode("utf-8"))
        first = False
    chunks.append(_INLINE_TAIL)
    return b"".join(chunks)


def inline_size(display_name: str, line_bytes: int, count: int) -> int:
    """The byte size of :func:`inline_body` for ``count`` JSONL lines of ``line_bytes`` in all (newlines
    included), each written as ``json.dumps({"key": K, "request": R}, ensure_ascii=False) + "\n"``."""
    body = len(_inline_head(display_name)) + len(_INLINE_TAIL)
    if count:
        body += line_bytes - count + count * _ITEM_EXTRA + (count - 1) * len(_SEPARATOR)
    return body


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
                           jitter=client.retry.jitter, sleep=client.retry.sleep, rng=client.retry.rng,
                           clock=client.retry.clock)
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
