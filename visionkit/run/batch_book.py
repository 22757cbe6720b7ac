"""The batch job record: what ``OUT/batch/`` holds, so a batch run resumes across processes and days.

Layout::

    OUT/batch/jobs.json            {"version": 1, "jobs": [JobRecord, ...]}, rewritten atomically
    OUT/batch/<id>.keys.jsonl      one {"key", "path", "bytes", "mtime_ns"} per request of job <id>
    OUT/batch/<id>.jsonl           the job's request lines while it is being submitted (then deleted)
    OUT/batch/<id>.results.jsonl   its downloaded result lines while they are being saved (then deleted)
    OUT/batch/<id>.errors.json     {key: reason} for the lines that came back without a usable answer

A job moves through ``step`` s, and each step is written to ``jobs.json`` BEFORE the action it names, so a
process killed at any point (``kill -9``, a reboot) leaves a record that says what may have happened:

    building -> built -> uploaded -> creating -> submitted -> collected | ended

* ``building``: its request file is incomplete; nothing was sent. A new run drops it.
* ``built`` / ``uploaded``: nothing paid was sent yet; a new run goes on from there.
* ``creating``: the create request may have reached the API. A new run looks the job up by its display name
  (the record's ``id``, unique) before it creates anything, so a job is never created twice.
* ``submitted``: the job exists (``name`` = ``batches/...``); a new run only waits for it.
* ``collected``: its answers are in ``OUT/responses``; ``ended``: it FAILED, was CANCELLED or EXPIRED.

The record holds no secret: the API key is never written anywhere.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..media.atomic import atomic_open, write_json_atomic
from ..media.filekind import read_regular_text

__all__ = ["ACTIVE_STEPS", "JobBook", "JobRecord", "KeyEntry"]

#: Steps of a job whose images are taken (a new job must not ask for them again).
ACTIVE_STEPS = ("building", "built", "uploaded", "creating", "submitted")
_STEPS = ACTIVE_STEPS + ("collected", "ended")
VERSION = 1


@dataclass
class JobRecord:
    """One batch job as recorded locally (see the module docstring for ``step``)."""

    id: str
    step: str
    request: dict  # the request fingerprint its answers are saved with (visionkit.run.answer_source)
    model: str
    requests: int = 0
    bytes: int = 0
    mode: str = "file"  # "file" (uploaded JSONL) or "inline"
    mask_format: str | None = None  # what the prompt asked for ("png", "polygon", "none"; None = detect)
    mask_order: str | None = None  # the polygon point order the prompt stated ("yx"), saved with answers
    name: str | None = None  # batches/<id>
    input_file: str | None = None  # files/<id>
    state: str | None = None  # the API's state, bare ("RUNNING")
    request_count: int | None = None
    succeeded_count: int | None = None
    failed_count: int | None = None
    pending_count: int | None = None
    error: str | None = None
    line_failures: int = 0
    result_file: str | None = None
    cleaned: bool = False
    warnings: list[str] = field(default_factory=list)
    usage: dict = field(default_factory=dict)  # the usageMetadata of its answered lines, summed (core.usage)
    created: float = field(default_factory=time.time)
    submitted_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.step in ACTIVE_STEPS

    @classmethod
    def from_dict(cls, data: dict) -> JobRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class KeyEntry:
    """One request of a job: the image's output key and path, and its size and mtime when it was sent."""

    key: str
    path: str
    bytes: int
    mtime_ns: int


#: A job id as :meth:`JobBook.new_job` makes it; it becomes file names in ``OUT/batch``, so a hand-edited
#: record cannot turn it into a path (``../x``, an absolute path) out of the folder.
_JOB_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class JobBook:
    """The jobs recorded in ``OUT/batch`` (one process at a time)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out / "batch"
        self.path = self.folder / "jobs.json"
        self.jobs: list[JobRecord] = []
        self.run_id = ""
        self.counter = 0
        self.readonly = False  # set when another process owns the record: save() then writes nothing
        if self.path.exists():  # a FIFO or folder there is said (it may stand for paid jobs), not skipped
            try:
                data = json.loads(read_regular_text(self.path, expected="the batch job record, a JSON file"))
                self.jobs = [JobRecord.from_dict(j) for j in data["jobs"]]
                self.run_id, self.counter = str(data["run_id"]), int(data["counter"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise InputError(f"the batch job record {self.path} cannot be read ({exc}); it names paid "
                                 "jobs, so it is not replaced: fix or move it by hand") from exc
            bad = [j.step for j in self.jobs if j.step not in _STEPS]
            if bad:
                raise InputError(f"the batch job record {self.path} has an unknown step {bad[0]!r}")
            for i, job in enumerate(self.jobs):  # an id names files in OUT/batch: never a path out of it
                if not isinstance(job.id, str) or not _JOB_ID.fullmatch(job.id):
                    raise InputError(f"{self.path}: jobs[{i}].id: {job.id!r} is not a job id; expected "
                                     "letters, digits, '.', '_' or '-' (like 'visionkit-1a2b3c4d-1'), since "
                                     "it names the job's files in the batch folder")

    def save(self) -> None:
        """Write ``jobs.json`` atomically (a reader sees the old or the new record, never half)."""
        if self.readonly:
            return
        if not self.run_id:
            self.run_id = secrets.token_hex(4)
        write_json_atomic(self.path, {"version": VERSION, "run_id": self.run_id, "counter": self.counter,
                                      "jobs": [asdict(j) for j in self.jobs]}, indent=1)

    def new_job(self, request: dict, model: str) -> JobRecord:
        """Add a job in step ``building`` with a fresh, unique id (its display name at the API)."""
        if not self.run_id:
            self.run_id = secrets.token_hex(4)
        self.counter += 1
        job = JobRecord(id=f"visionkit-{self.run_id}-{self.counter}", step="building", request=request,
                        model=model)
        self.jobs.append(job)
        return job

    def file(self, job: JobRecord, suffix: str) -> Path:
        return self.folder / f"{job.id}{suffix}"

    def drop(self, job: JobRecord) -> None:
        """Forget a job that never reached the API, and its local files."""
        self.jobs.remove(job)
        for suffix in (".jsonl", ".jsonl.part", ".keys.jsonl", ".keys.jsonl.part"):
            self.file(job, suffix).unlink(missing_ok=True)

    def write_keys(self, job: JobRecord, entries: list[KeyEntry]) -> None:
        with atomic_open(self.file(job, ".keys.jsonl")) as fh:
            for e in entries:
                fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")

    def keys(self, job: JobRecord) -> Iterator[KeyEntry]:
        path = self.file(job, ".keys.jsonl")
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield KeyEntry(**json.loads(line))

    def write_errors(self, job: JobRecord, errors: dict[str, str]) -> None:
        write_json_atomic(self.file(job, ".errors.json"), errors, indent=1)

    def errors(self, job: JobRecord) -> dict[str, str]:
        path = self.file(job, ".errors.json")
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def active_keys(self, request: dict | None = None) -> set[str]:
        """Keys of the images that a recorded, unfinished job asks for (with ``request``: only jobs asked
        with that request fingerprint; a job with other settings does not answer this request)."""
        return {e.key for job in self.jobs if job.active and (request is None or job.request == request)
                for e in self.keys(job)}

    def summary(self) -> dict[str, Any]:
        """Totals over every job, for progress lines."""
        total = {"jobs": len(self.jobs), "active": sum(j.active for j in self.jobs),
                 "requests": sum(j.requests for j in self.jobs), "succeeded": 0, "failed": 0}
        for j in self.jobs:
            total["succeeded"] += j.succeeded_count or 0
            total["failed"] += j.failed_count or 0
        return total
