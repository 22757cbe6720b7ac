"""The Batch API half of :class:`~visionkit.testing.FakeGemini`: jobs with scriptable state timelines.

::

    with FakeGemini() as server:
        server.batch.script(("PENDING", "RUNNING", "RUNNING", "SUCCEEDED"), ("PENDING", "EXPIRED"))
        server.batch.line_error = lambda key, req: {"code": 13, "message": "gone"} if key == "b" else None
        ...                                       # the first job created succeeds on its third poll,
        len(server.batch.creates)                 # the second expires; line "b" fails

Endpoints (wire format of ``visionkit.gemini.batch``):

* ``POST /v1beta/models/{model}:batchGenerateContent`` (inline requests, or ``inputConfig.fileName`` naming
  an uploaded JSONL file; malformed input is a 400, as the API validates at creation);
* ``GET /v1beta/batches/{id}`` (each call is one poll: the job moves one step along its timeline),
  ``GET /v1beta/batches`` (paged list, no poll), ``POST /v1beta/batches/{id}:cancel``,
  ``DELETE /v1beta/batches/{id}``;
* ``DELETE /v1beta/files/{id}`` and ``GET /download/v1beta/files/{id}:download?alt=media`` (generated
  result files only, like the real Files API).

A job's state at creation is ``timeline[0]`` and at poll *n* ``timeline[n]`` (the last one repeats).
``state_style`` picks the names on the wire: ``"BATCH"`` (``BATCH_STATE_RUNNING``, what the API sends) or
``"JOB"`` (``JOB_STATE_RUNNING``, the SDK's names). When a job first reaches SUCCEEDED its requests are
answered as online requests are (the dialect, or the responder; ``line_error(key, request)`` can fail
chosen lines), into a result file (file input) or ``inlinedResponses`` (inline input). FAILED jobs carry
an error; EXPIRED and CANCELLED jobs have no results. Every call is recorded in ``FakeGemini.requests``
with the kinds in :data:`KINDS`; each answered line goes to ``FakeGemini.log`` as a ``batch_line``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .fake_http import reset
from .fake_records import RecordedRequest, _Headers
from .fake_responses import error_body

if TYPE_CHECKING:
    from .fake_http import Handler

__all__ = ["KINDS", "FakeBatch", "FakeJob", "slow_timeline"]

#: ``RecordedRequest.kind`` values of the batch endpoints.
KINDS = frozenset({"batch_create", "batch_get", "batch_list", "batch_cancel", "batch_delete", "file_delete",
                   "file_download"})
_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
_CREATE = re.compile(r"^/v1beta/models/([^/:]+):batchGenerateContent$")
_JOB = re.compile(r"^/v1beta/batches/([a-z0-9-]+)$")
_CANCEL = re.compile(r"^/v1beta/batches/([a-z0-9-]+):cancel$")
_FILE = re.compile(r"^/v1beta/files/([a-z0-9-]+)$")
_DOWNLOAD = re.compile(r"^/download/v1beta/files/([a-z0-9-]+):download$")
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."


def slow_timeline(pending: int = 3, running: int = 100, end: str = "SUCCEEDED") -> tuple[str, ...]:
    """A job that stays PENDING for ``pending`` polls and RUNNING for ``running`` more, then ends."""
    return ("PENDING",) * pending + ("RUNNING",) * running + (end,)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


@dataclass
class FakeJob:
    """One job held by the fake server (inspect it in tests; change it through :class:`FakeBatch`)."""

    id: str
    model: str
    display_name: str
    requests: list[tuple[str, dict]] = field(repr=False)  # (key, GenerateContentRequest) in input order
    input_file: str | None
    timeline: tuple[str, ...]
    polls: int = 0
    forced: str | None = None
    create_time: str = field(default_factory=_now)
    inlined: list | None = field(default=None, repr=False)
    result_file: str | None = None
    failed_lines: int = 0

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def state(self) -> str:
        return self.forced or self.timeline[min(self.polls, len(self.timeline) - 1)]


class FakeBatch:
    """Batch jobs of one :class:`FakeGemini` (``server.batch``).

    Attributes:
        timeline: the states of a job not given one by :meth:`script`.
        state_style: ``"BATCH"`` (wire names) or ``"JOB"`` (SDK names).
        line_error: ``line_error(key, request) -> dict | None``: an error object (``{"code", "message"}``)
            for that line instead of an answer.
        refuse_result_delete: answer 403 to deleting a generated result file (some keys cannot).
        cut_downloads: how many of the next result downloads are cut off (full ``Content-Length``, half
            the body, then a connection reset).
        page_size: the most jobs per list page.
    """

    def __init__(self, fake: Any):  # the FakeGemini that owns these jobs (it imports this module)
        self.fake = fake
        self.timeline: tuple[str, ...] = ("PENDING", "RUNNING", "SUCCEEDED")
        self.state_style = "BATCH"
        self.line_error: Callable[[str, dict], dict | None] | None = None
        self.refuse_result_delete = False
        self.cut_downloads = 0
        self.page_size = 50
        self._timelines: deque[tuple[str, ...]] = deque()
        self._create_faults: deque = deque()
        self._jobs: dict[str, FakeJob] = {}
        self._lock = threading.RLock()
        self._counter = 0

    # -- test API ----------------------------------------------------------------------------------------

    def script(self, *timelines: tuple[str, ...]) -> None:
        """Queue timelines: each job created next takes the next one (then :attr:`timeline` applies)."""
        for timeline in timelines:
            bad = [s for s in timeline if s not in _STATES]
            if not timeline or bad:
                raise ValueError(f"a timeline is a non-empty sequence of {_STATES}, got {timeline!r}")
        with self._lock:
            self._timelines.extend(tuple(t) for t in timelines)

    def push_create_faults(self, *faults: Any) -> None:
        """Queue :class:`~visionkit.testing.Fault` s for the next create requests, one each:
        ``Fault.status(code)`` refuses (no job is made); ``Fault.reset()`` makes the job, then drops the
        connection unanswered; ``Fault.slow(s)`` makes the job and answers after ``s`` seconds."""
        with self._lock:
            self._create_faults.extend(faults)

    @property
    def jobs(self) -> list[FakeJob]:
        """The jobs held (deleted ones are gone), oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def job(self, name: str) -> FakeJob:
        """The job ``batches/<id>`` (or ``<id>``)."""
        with self._lock:
            return self._jobs[name.removeprefix("batches/")]

    def set_state(self, name: str, state: str) -> None:
        """Force a job into ``state`` from now on (e.g. to finish a job scripted to take many polls)."""
        if state not in _STATES:
            raise ValueError(f"state must be one of {_STATES}, got {state!r}")
        with self._lock:
            self.job(name).forced = state

    @property
    def creates(self) -> list[RecordedRequest]:
        """Every create request received (each one that succeeded made a paid job)."""
        return [r for r in self.fake.requests if r.kind == "batch_create"]

    def calls(self, kind: str) -> list[RecordedRequest]:
        """The recorded requests of one kind (see :data:`KINDS`)."""
        return [r for r in self.fake.requests if r.kind == kind]

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._timelines.clear()
            self._create_faults.clear()

    # -- routing (called by FakeGemini) --------------------------------------------------------------------

    @staticmethod
    def kind(method: str, path: str) -> str | None:
        """The request kind of a batch endpoint, or None."""
        if method == "POST" and _CREATE.match(path):
            return "batch_create"
        if method == "POST" and _CANCEL.match(path):
            return "batch_cancel"
        if path == "/v1beta/batches" and method == "GET":
            return "batch_list"
        if _JOB.match(path):
            return {"GET": "batch_get", "DELETE": "batch_delete"}.get(method)
        if method == "DELETE" and _FILE.match(path):
            return "file_delete"
        if method == "GET" and _DOWNLOAD.match(path):
            return "file_download"
        return None

    def handle(self, h: Handler, record: RecordedRequest) -> None:
        """Answer one batch request (its kind is in :data:`KINDS`)."""
        fake, path = self.fake, record.path
        with self._lock:
            if record.kind == "batch_create":
                fault = self._create_faults.popleft() if self._create_faults else None
                if fault is not None and fault.kind == "status":
                    return fake._send_fault_status(h, fault)  # refused: no job is made
                status, body = self._create(_CREATE.match(path).group(1), record.json)
                if fault is not None and fault.kind == "reset":
                    return reset(h)  # the job exists, but its creator never hears of it
                if fault is not None and fault.kind == "slow":
                    fake._stopping.wait(fault.seconds)
            elif record.kind == "batch_list":
                status, body = self._list(record.query)
            elif record.kind in ("batch_get", "batch_delete", "batch_cancel"):
                match = (_CANCEL if record.kind == "batch_cancel" else _JOB).match(path)
                job = self._jobs.get(match.group(1))
                if job is None:
                    status, body = 404, error_body(404, f"Batch batches/{match.group(1)} not found.")
                elif record.kind == "batch_get":
                    job.polls += 1
                    status, body = 200, self._operation(job)
                elif record.kind == "batch_cancel":
                    if job.state not in _TERMINAL:
                        job.forced = "CANCELLED"
                    status, body = 200, {}
                else:
                    del self._jobs[job.id]
                    status, body = 200, {}
            elif record.kind == "file_delete":
                status, body = self._delete_file(_FILE.match(path).group(1))
            else:
                return self._download(h, _DOWNLOAD.match(path).group(1), record.query)
        fake._send_json(h, status, body)

    # -- internals ---------------------------------------------------------------------------------------

    def _create(self, model: str, body: Any) -> tuple[int, dict]:
        batch = body.get("batch") if isinstance(body, Mapping) else None
        if not isinstance(batch, Mapping):
            return 400, error_body(400, "Invalid JSON payload: expected {\"batch\": {...}}.")
        config = batch.get("inputConfig") or batch.get("input_config") or {}
        display = batch.get("displayName") or batch.get("display_name")
        if not display:
            return 400, error_body(400, "batch.display_name is required.")
        file_name = config.get("fileName") or config.get("file_name")
        inline = (config.get("requests") or {}).get("requests")
        try:
            if file_name:
                with self.fake._lock:
                    stored = self.fake._files.get(str(file_name).removeprefix("files/"))
                if stored is None:
                    return 400, error_body(400, f"File {file_name} not found or not accessible.")
                lines = [json.loads(raw) for raw in stored["data"].splitlines() if raw.strip()]
                requests = [(str(item["key"]), item["request"]) for item in lines]
            elif isinstance(inline, list):
                requests = [(str((item.get("metadata") or {}).get("key", i)), item["request"])
                            for i, item in enumerate(inline)]
                file_name = None
            else:
                return 400, error_body(400, "batch.input_config needs file_name or requests.")
            if not requests or not all(isinstance(r, Mapping) and r.get("contents") for _, r in requests):
                raise ValueError("every request needs contents")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return 400, error_body(400, f"Invalid batch input: {exc}")
        self._counter += 1
        timeline = self._timelines.popleft() if self._timelines else tuple(self.timeline)
        job = FakeJob(id=f"fakebatch-{self._counter:04d}", model=model, display_name=str(display),
                      requests=requests, input_file=file_name, timeline=timeline)
        self._jobs[job.id] = job
        return 200, self._operation(job)

    def _wire(self, state: str) -> str:
        return ("JOB_STATE_" if self.state_style == "JOB" else "BATCH_STATE_") + state

    def _stats(self, job: FakeJob) -> dict:
        n = len(job.requests)
        state = job.state
        if state == "SUCCEEDED":
            done, failed = n - job.failed_lines, job.failed_lines
        elif state == "RUNNING":
            running = job.timeline.count("RUNNING")
            seen = sum(1 for s in job.timeline[:min(job.polls, len(job.timeline) - 1) + 1] if s == "RUNNING")
            done, failed = int(n * seen / (running + 1)), 0
        else:
            done, failed = 0, 0
        stats = {"requestCount": str(n), "successfulRequestCount": str(done),
                 "pendingRequestCount": str(0 if state in _TERMINAL else n - done - failed)}
        if failed:
            stats["failedRequestCount"] = str(failed)
        return stats

    def _operation(self, job: FakeJob) -> dict:
        state = job.state
        if state == "SUCCEEDED" and job.inlined is None and job.result_file is None:
            self._answer(job)
        meta: dict[str, Any] = {"@type": _TYPE + "GenerateContentBatch", "model": f"models/{job.model}",
                                "displayName": job.display_name, "createTime": job.create_time,
                                "updateTime": _now(), "batchStats": self._stats(job),
                                "state": self._wire(state), "name": job.name}
        op: dict[str, Any] = {"name": job.name, "metadata": meta, "done": state in _TERMINAL}
        if state in _TERMINAL:
            meta["endTime"] = _now()
        if state == "SUCCEEDED":
            output = ({"responsesFile": job.result_file} if job.result_file is not None
                      else {"inlinedResponses": {"inlinedResponses": job.inlined}})
            meta["output"] = output
            op["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
        elif state == "FAILED":
            op["error"] = {"code": 13, "message": "Batch job failed: an internal error has occurred (fake)."}
        return op

    def _answer(self, job: FakeJob) -> None:
        """Answer every request of a job that just succeeded, as the responder would online."""
        outcomes = []
        for key, request in job.requests:
            error = self.line_error(key, request) if self.line_error is not None else None
            if error is None:
                record = RecordedRequest(index=-1, kind="batch_line", method="POST",
                                         path=f"/v1beta/models/{job.model}:generateContent", query={},
                                         headers=_Headers(), body_size=0, json=request)
                record = self.fake._describe_generate(record, job.model)
                self.fake._log(record)
                response, error = self.fake._answer_line(record)
            outcomes.append((key, response if error is None else None, error))
        job.failed_lines = sum(1 for _, _, e in outcomes if e is not None)
        if job.input_file is None:
            job.inlined = [{"metadata": {"key": k}, **({"response": r} if e is None else {"error": e})}
                           for k, r, e in outcomes]
            return
        data = "".join(json.dumps({"key": k, **({"response": r} if e is None else {"error": e})}) + "\n"
                       for k, r, e in outcomes).encode("utf-8")
        file_id = f"{job.id}-results"
        meta = {"name": f"files/{file_id}", "displayName": f"{job.display_name} results",
                "mimeType": "application/jsonl", "sizeBytes": str(len(data)), "createTime": _now(),
                "updateTime": _now(), "state": "ACTIVE", "source": "GENERATED",
                "uri": f"{self.fake.base_url}/v1beta/files/{file_id}",
                "downloadUri": f"{self.fake.base_url}/download/v1beta/files/{file_id}:download?alt=media"}
        with self.fake._lock:
            self.fake._files[file_id] = {"meta": meta, "data": data, "polls": 0}
        job.result_file = f"files/{file_id}"

    def _list(self, query: Mapping[str, list[str]]) -> tuple[int, dict]:
        try:
            size = min(int(query.get("pageSize", ["50"])[0]), self.page_size)
            start = int(query.get("pageToken", ["0"])[0] or 0)
        except ValueError:
            return 400, error_body(400, "Invalid page size or token.")
        jobs = list(reversed(self._jobs.values()))  # newest first
        page = jobs[start:start + max(size, 1)]
        body: dict[str, Any] = {"operations": [self._listed(job) for job in page]}
        if start + len(page) < len(jobs):
            body["nextPageToken"] = str(start + len(page))
        return 200, body

    def _listed(self, job: FakeJob) -> dict:
        op = self._operation(job)
        op.pop("response", None)
        op["metadata"].pop("output", None)
        return op

    def _delete_file(self, file_id: str) -> tuple[int, dict]:
        with self.fake._lock:
            stored = self.fake._files.get(file_id)
            if stored is None:
                return 404, error_body(404, f"File files/{file_id} not found.")
            if stored["meta"].get("source") == "GENERATED" and self.refuse_result_delete:
                return 403, error_body(403, "Generated files cannot be deleted with this key (fake).")
            del self.fake._files[file_id]
        return 200, {}

    def _download(self, h: Handler, file_id: str, query: Mapping[str, list[str]]) -> None:
        with self.fake._lock:
            stored = self.fake._files.get(file_id)
        if query.get("alt") != ["media"]:
            return self.fake._send_json(h, 400, error_body(400, "Download needs alt=media."))
        if stored is None:
            return self.fake._send_json(h, 404, error_body(404, f"File files/{file_id} not found."))
        if stored["meta"].get("source") != "GENERATED":
            return self.fake._send_json(h, 400, error_body(400, "Only generated files can be downloaded."))
        with self._lock:
            cut = self.cut_downloads > 0
            self.cut_downloads -= cut
        if cut:
            return self._cut(h, stored["data"])
        self.fake._send(h, 200, stored["data"], "application/octet-stream")

    @staticmethod
    def _cut(h: Handler, data: bytes) -> None:
        """Announce all of ``data``, send half of it, then reset the connection."""
        try:
            h.send_response(200, "OK")
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[:len(data) // 2])
            h.wfile.flush()
        except OSError:
            pass
        reset(h)
