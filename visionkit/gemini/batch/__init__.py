"""Gemini Batch API wire operations: create (inline or from a JSONL file), get, list, cancel, delete, and
the result download. The orchestration (sharding, the job record, polling, collection) is
:mod:`visionkit.run.batching`; this module only speaks the protocol.

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

from .calls import cancel_job, create_job, delete_job, find_job, get_job, inline_body, inline_size, list_jobs
from .files import JSONL_MIME_TYPE, delete_file, download_file, iter_inlined, iter_result_lines, upload_jsonl
from .job import ACTIVE_STATES, TERMINAL_STATES, BatchJob, job_state

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
    "inline_size",
    "iter_inlined",
    "iter_result_lines",
    "job_state",
    "list_jobs",
    "upload_jsonl",
]
