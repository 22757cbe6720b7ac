"""A job's files: the JSONL request file uploaded through the Files API, and the results downloaded (streamed,
redacted of any echo of the key, written atomically) and read back line by line."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import urllib3

from ...errors import TransportError
from ...media.atomic import atomic_open
from .. import files_api
from ..client import API_VERSION, GeminiClient
from ..transport import scrub
from .job import _FILE_NAME, BatchJob, _check

__all__ = [
    "JSONL_MIME_TYPE", "delete_file", "download_file", "iter_inlined", "iter_result_lines",
    "upload_jsonl",
]

#: MIME type of an uploaded request file (the batch-api REST sample uploads with ``application/jsonl``).
JSONL_MIME_TYPE = "application/jsonl"
#: States after which a job changes no more. ``PARTIALLY_SUCCEEDED`` is an SDK name with results.
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

    Each line is redacted of any echo of the API key before it is written. A download cut off mid-way (a
    reset, a truncated body, a read timeout) is started again, after the client's retry backoff, up to
    ``attempts`` times; then it raises :class:`TransportError`. Only a failure to write ``dest`` is an
    :class:`~visionkit.errors.ExportError`.
    """
    url = f"{client.base_url}/download/{API_VERSION}/{_check(_FILE_NAME, name, 'file')}:download?alt=media"
    previous: float | None = None
    for attempt in range(1, attempts + 1):
        response, _ = client._request("GET", url, stream=True, what=f"download {name}")
        try:
            size = 0
            with atomic_open(dest, "wb") as fh:
                for chunk in _redacted_lines(client, _body_chunks(response), f"download {name}"):
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


def _redacted_lines(client: GeminiClient, chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """``chunks`` regrouped into whole lines, each with any echo of the API key redacted, as every other
    answer is (a streamed body bypasses the transport's redaction). A JSON line cannot hold the key across
    a line break, so line by line misses nothing; one warning per download."""
    warned = False
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            clean = client._http.redact_body(data[:cut], what, warn=not warned)
            warned = warned or clean is not data[:cut]
            yield clean
    if rest:
        yield client._http.redact_body(rest, what, warn=not warned)


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
