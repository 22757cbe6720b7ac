"""A batch job as the API describes it: its states (both namings) and :class:`BatchJob`, parsed from an
Operation or a bare batch resource, with the resource-name patterns that every call checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import ResponseError

__all__ = ["ACTIVE_STATES", "BatchJob", "TERMINAL_STATES", "job_state"]

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
