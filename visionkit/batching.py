"""Label a folder through the Gemini Batch API (half the price, 24 h target): submit, poll, collect.

::

    from visionkit import batching
    from visionkit.gemini import GeminiClient

    with GeminiClient() as client:
        batching.submit(["photos/"], "out", client=client, task="detect")    # returns once jobs exist
        batching.poll("out", client=client)                                   # waits; saves answers
        summary = batching.collect(["photos/"], "out", client=client, task="detect")  # COCO, overlays

* :func:`submit` builds one request per image that has no saved answer (``OUT/responses``, the same
  request fingerprint as online mode) and is in no unfinished job. The requests are the online ones (the
  client's model, prompt, config and image preparation), written as JSONL one line at a time and split
  into jobs by :data:`MAX_REQUESTS_PER_JOB` and :data:`MAX_FILE_BYTES`. A job small enough
  (:data:`MAX_INLINE_BYTES`) goes inline; a bigger one is uploaded through the Files API first.
* :func:`poll` waits for the jobs (``poll_interval``, times 1.5 after each poll, at most
  :data:`MAX_POLL_INTERVAL`), and as each one succeeds, saves its answers to ``OUT/responses/<key>.json``
  and deletes its uploaded input and its result file.
* :func:`collect` writes ``annotations.json``, overlays and ``failures.json`` with :func:`visionkit.label`
  from the saved answers; an image without one fails with its batch line's error (or its job's), and is
  never requested online.

Idempotency: every job is recorded in ``OUT/batch/jobs.json`` before each step that can create it (see
:mod:`visionkit.batch_jobs`), so rerunning after Ctrl-C, ``kill -9`` or a reboot resumes the recorded jobs
and never creates a second one for the same images. The library never prints; progress goes to
``on_event(message)`` and ``on_progress(status)``.

Limits (named constants, with their sources):

* :data:`MAX_FILE_BYTES` 2 GB: "Input file ≤ 2 GB" (batch-api page), and the Files API's "per-file maximum
  size of 2 GB" (https://ai.google.dev/gemini-api/docs/files).
* :data:`MAX_INLINE_BYTES` 20 MB: inline requests must "keep the total request size under 20MB"
  (https://ai.google.dev/gemini-api/docs/batch-api, "Creating a batch job").
* :data:`MAX_REQUESTS_PER_JOB` 10,000: the batch-api page states no cap on requests per job; what binds is
  the per-model "enqueued tokens" quota (rate-limits page, "Batch API rate limits": Tier 1 Gemini 2.5 Flash
  3,000,000 tokens). visionkit's default keeps a job to a few million image tokens and one job's loss (an
  expiry) small; lower it (``max_requests``, ``--batch-max-requests``) for a low tier.
* Jobs expire after 48 hours with no results (batch-api page, ``JOB_STATE_EXPIRED``).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import imageio
from .answers import AnswerSource, RateLimiter, ResponseStore
from .batch_jobs import JobBook, JobRecord, KeyEntry
from .coco import write_json_atomic
from .errors import (
    APIError,
    BatchError,
    BatchLineError,
    BlockedError,
    EmptyResponseError,
    InputError,
    RateLimitError,
    ServerError,
    TransportError,
    VisionkitError,
)
from .parse import answer_text

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "MAX_FILE_BYTES",
    "MAX_INLINE_BYTES",
    "MAX_POLL_INTERVAL",
    "MAX_REQUESTS_PER_JOB",
    "BatchStatus",
    "answers_only",
    "cancel",
    "collect",
    "poll",
    "status",
    "submit",
]

MAX_FILE_BYTES = 2_000_000_000
MAX_INLINE_BYTES = 20_000_000
MAX_REQUESTS_PER_JOB = 10_000
#: Seconds before the first poll; each later wait is 1.5 times the last, up to MAX_POLL_INTERVAL.
DEFAULT_POLL_INTERVAL = 30.0
MAX_POLL_INTERVAL = 600.0
POLL_BACKOFF = 1.5

_ENDED = {
    "FAILED": "FAILED{detail}",
    "CANCELLED": "was CANCELLED",
    "EXPIRED": "EXPIRED: it was pending or running for more than 48 hours, and an expired job has no results",
}


@dataclass(frozen=True)
class BatchStatus:
    """Every recorded job of one output folder, after the latest poll."""

    jobs: tuple[JobRecord, ...]
    elapsed: float = 0.0  # seconds since the first job was submitted
    events: tuple[str, ...] = field(default=(), repr=False)

    @property
    def active(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.active]

    @property
    def done(self) -> bool:
        """True when no job is unfinished."""
        return not self.active

    @property
    def requests(self) -> int:
        return sum(j.requests for j in self.jobs)

    @property
    def succeeded(self) -> int:
        return sum(j.succeeded_count or 0 for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.failed_count or 0 for j in self.jobs)


def _status(book: JobBook) -> BatchStatus:
    started = [j.submitted_at for j in book.jobs if j.submitted_at]
    return BatchStatus(tuple(book.jobs), time.time() - min(started) if started else 0.0)


def status(out: str | os.PathLike) -> BatchStatus:
    """The jobs recorded in ``out/batch`` as last seen (no network)."""
    return _status(JobBook(out))


def _fingerprint(client: Any, task: str, prompt: str | None, classes: Sequence[str] | None) -> dict:
    """What a saved answer must have been asked with: exactly what online mode records."""
    return AnswerSource(None, ResponseStore(Path(".")), client, RateLimiter(None), task, prompt,
                        classes).request


def _request_body(client: Any, path: Path, task: str, prompt: str | None,
                  classes: Sequence[str] | None) -> dict:
    """The generateContent body for one image, as the online client would send it."""
    # TEMPORARY until the shared request builder (visionkit.gemini.request) lands: the same three calls
    # GeminiClient.annotate makes.
    from .gemini.prompts import build_generation_config, build_prompt

    prepared = client.prepare(path)
    image_part = {"inlineData": {"mimeType": prepared.mime_type,
                                 "data": base64.b64encode(prepared.data).decode("ascii")}}
    text = build_prompt(task, classes, prompt)
    return {"contents": [{"role": "user", "parts": [image_part, {"text": text}]}],
            "generationConfig": build_generation_config(client.model, task, classes)}


def _note(on_event: Callable[[str], None] | None, message: str) -> None:
    if on_event is not None:
        on_event(message)


# -- submit ----------------------------------------------------------------------------------------------

def submit(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, client: Any, task: str = "segment",
           prompt: str | None = None, classes: Sequence[str] | None = None,
           max_requests: int = MAX_REQUESTS_PER_JOB, max_file_bytes: int = MAX_FILE_BYTES,
           max_inline_bytes: int = MAX_INLINE_BYTES,
           on_event: Callable[[str], None] | None = None) -> BatchStatus:
    """Create batch jobs for the images that have no saved answer and are in no unfinished job.

    Jobs recorded by an earlier run are resumed first: one whose create may have reached the API is looked
    up by name, never created again. Returns once every job exists (or a 429 says the project's batch
    quota is full: the rest are created by :func:`poll` as running jobs finish).

    Raises:
        InputError, ConfigError: no images, bad limits.
        BatchError: a create failed in a way that may have created the job; rerun to find out.
        APIError: the API refused a job (the error says why); nothing was created for it.
    """
    from .pipeline import _keys

    if max_requests < 1 or max_file_bytes < 1:
        raise InputError(f"batch limits must be positive, got max_requests={max_requests}, "
                         f"max_file_bytes={max_file_bytes}")
    out = Path(out)
    images = imageio.iter_images(inputs)
    if not images:
        raise InputError("no images found in the inputs")
    keys = _keys(images)
    book = JobBook(out)
    for job in [j for j in book.jobs if j.step == "building"]:
        book.drop(job)  # cut off while its request file was written: nothing was sent
    request = _fingerprint(client, task, prompt, classes)
    store = ResponseStore(out / "responses")
    taken = book.active_keys()
    todo = []
    for (path, _root), key in zip(images, keys):
        if key in taken:
            continue
        answer, _stale = store.load(key, request, path)
        if answer is None:
            todo.append((key, path))
    if todo:
        _note(on_event, f"{len(todo)} of {len(images)} images have no saved answer; building batch requests")
        _build(book, client, todo, task, prompt, classes, request, max_requests, max_file_bytes,
               max_inline_bytes, on_event)
    elif not book.jobs or not any(j.active for j in book.jobs):
        _note(on_event, f"all {len(images)} images have a saved answer; no batch job is needed")
    _submit_ready(book, client, on_event)
    return _status(book)


def _build(book: JobBook, client: Any, todo: list[tuple[str, Path]], task: str, prompt: str | None,
           classes: Sequence[str] | None, request: dict, max_requests: int, max_file_bytes: int,
           max_inline_bytes: int, on_event: Callable[[str], None] | None) -> None:
    """Write the request lines, one image at a time, into as many jobs as the limits need. Memory holds one
    line at a time, whatever the image count."""
    job: JobRecord | None = None
    stream: Any = None
    entries: list[KeyEntry] = []
    unsent: dict[str, str] = {}

    def finish() -> None:
        nonlocal job, stream
        stream.flush()
        os.fsync(stream.fileno())
        stream.close()
        os.replace(book.file(job, ".jsonl.part"), book.file(job, ".jsonl"))
        book.write_keys(job, entries)
        job.requests, job.step = len(entries), "built"
        job.mode = "inline" if job.bytes <= max_inline_bytes else "file"
        book.save()
        _note(on_event, f"batch job {job.id}: {job.requests} requests, {job.bytes / 1e6:.1f} MB ({job.mode})")
        job, stream = None, None
        entries.clear()

    try:
        for key, path in todo:
            try:
                stat = path.stat()
                body = _request_body(client, path, task, prompt, classes)
            except (VisionkitError, OSError) as exc:
                unsent[str(path.resolve())] = f"not submitted: {type(exc).__name__}: {exc}"
                _note(on_event, f"{path}: not submitted: {exc}")
                continue
            line = (json.dumps({"key": key, "request": body}, ensure_ascii=False) + "\n").encode("utf-8")
            if len(line) > max_file_bytes:
                unsent[str(path.resolve())] = (f"not submitted: its request is {len(line)} bytes, more than "
                                               f"a batch input file may hold ({max_file_bytes})")
                _note(on_event, f"{path}: {unsent[str(path.resolve())]}")
                continue
            if job is not None and (len(entries) >= max_requests or job.bytes + len(line) > max_file_bytes):
                finish()
            if job is None:
                job = book.new_job(request, client.model)
                book.save()  # recorded (as "building") before its file exists
                book.folder.mkdir(parents=True, exist_ok=True)
                stream = open(book.file(job, ".jsonl.part"), "wb")  # noqa: SIM115 (closed in finish)
            stream.write(line)
            job.bytes += len(line)
            entries.append(KeyEntry(key, str(path.resolve()), stat.st_size, stat.st_mtime_ns))
        if job is not None:
            finish()
    finally:
        if stream is not None:  # interrupted mid-job: its record says "building", so it is dropped later
            stream.close()
            book.file(job, ".jsonl.part").unlink(missing_ok=True)
        write_json_atomic(book.folder / "unsent.json", unsent, indent=1)


def _submit_ready(book: JobBook, client: Any, on_event: Callable[[str], None] | None) -> bool:
    """Create every job that is built, uploaded or possibly created. False when a 429 stopped it."""
    from .gemini import batch as wire

    for job in [j for j in book.jobs if j.step in ("built", "uploaded", "creating")]:
        if job.step == "creating":
            found = wire.find_job(client, job.id)
            if found is not None:
                _note(on_event, f"batch job {job.id} was created before the last run stopped: {found.name}")
                job.name, job.state, job.step = found.name, found.state, "submitted"
                job.submitted_at = job.submitted_at or time.time()
                _drop_request_file(book, job)
                book.save()
                continue
            job.step = "uploaded" if job.input_file else "built"
        if job.step == "built" and job.mode == "file":
            uploaded = wire.upload_jsonl(client, book.file(job, ".jsonl"), job.id)
            job.input_file, job.step = uploaded.name, "uploaded"
            book.save()
        job.step = "creating"
        book.save()  # BEFORE the request: a process killed from here on looks the job up first
        try:
            if job.mode == "file":
                created = wire.create_job(client, job.id, file_name=job.input_file, model=job.model)
            else:
                with open(book.file(job, ".jsonl"), "rb") as fh:
                    created = wire.create_job(client, job.id, inline=wire.inline_body(job.id, fh),
                                              model=job.model)
        except BatchError:
            raise  # still "creating": the next run looks it up before anything else
        except RateLimitError as exc:
            job.step = "uploaded" if job.input_file else "built"
            book.save()
            _note(on_event, f"batch job {job.id} not created yet, the project's batch quota is full ({exc}); "
                            "it is created when a running job finishes")
            return False
        except APIError as exc:
            job.step, job.error, job.finished_at = "ended", f"the API refused the job: {exc}", time.time()
            book.save()
            _cleanup(book, client, job, on_event)
            raise
        job.name, job.state, job.step = created.name, created.state, "submitted"
        job.submitted_at = time.time()
        job.request_count = created.request_count
        book.save()
        _drop_request_file(book, job)
        _note(on_event, f"batch job {job.id} submitted: {created.name} ({job.requests} requests)")
    return True


def _drop_request_file(book: JobBook, job: JobRecord) -> None:
    book.file(job, ".jsonl").unlink(missing_ok=True)


# -- poll and collect answers ------------------------------------------------------------------------------

def poll(out: str | os.PathLike, *, client: Any, wait: bool = True,
         poll_interval: float = DEFAULT_POLL_INTERVAL, max_interval: float = MAX_POLL_INTERVAL,
         on_progress: Callable[[BatchStatus], None] | None = None,
         on_event: Callable[[str], None] | None = None,
         sleep: Callable[[float], None] = time.sleep, collect_results: bool = True,
         submit_held: bool = True) -> BatchStatus:
    """Refresh every submitted job, saving the answers of each one that succeeded; with ``wait``, repeat
    until no job is unfinished. Transient poll failures (timeouts, 5xx) are reported and polled again.

    ``collect_results=False`` only refreshes the recorded states (nothing is downloaded or deleted);
    ``submit_held=False`` creates no job that a full quota held back.

    Raises:
        APIError: a failure that polling again cannot fix (bad key, a job the API does not know).
    """
    book = JobBook(out)
    store = ResponseStore(Path(out) / "responses")
    interval = max(float(poll_interval), 0.0)
    while True:
        changed = False
        for job in [j for j in book.jobs if j.step == "submitted"]:
            try:
                changed |= _refresh(book, client, job, store, on_event, collect_results)
            except (TransportError, ServerError) as exc:
                _note(on_event, f"batch job {job.name}: poll failed ({exc}); polling again")
        if submit_held and (changed or not any(j.step == "submitted" for j in book.jobs)):
            _submit_ready(book, client, on_event)  # jobs a full quota held back
        current = _status(book)
        if on_progress is not None:
            on_progress(current)
        if not wait or current.done:
            return current
        if not any(j.step == "submitted" for j in book.jobs):
            if not submit_held:
                return current  # only held-back jobs are left, and this caller creates none
            raise BatchError("no batch job is running and the project's batch quota refuses new ones; rerun "
                             "later", state="RESOURCE_EXHAUSTED")
        sleep(interval)
        interval = min(max(interval * POLL_BACKOFF, 0.001), max_interval)


def _refresh(book: JobBook, client: Any, job: JobRecord, store: ResponseStore,
             on_event: Callable[[str], None] | None, collect_results: bool = True) -> bool:
    """Poll one job; collect or close it when it has ended. True when it ended."""
    from .gemini import batch as wire

    remote = wire.get_job(client, job.name)
    if remote.state != job.state:
        _note(on_event, f"batch job {job.name}: {remote.state}")
    job.state = remote.state
    job.request_count = remote.request_count if remote.request_count is not None else job.request_count
    job.succeeded_count, job.failed_count = remote.succeeded_count, remote.failed_count
    job.pending_count = remote.pending_count
    if not collect_results:
        book.save()
        return False
    if remote.succeeded:
        _collect_job(book, client, job, remote, store, on_event)
        return True
    if remote.terminal:
        detail = f": {remote.error.get('message')}" if remote.error and remote.error.get("message") else ""
        what = _ENDED.get(remote.state, remote.state).format(detail=detail)
        job.step, job.error, job.finished_at = "ended", f"batch job {job.name} {what}", time.time()
        book.save()
        _note(on_event, f"{job.error}; its {job.requests} images are unanswered again (rerun with --batch "
                        "to submit them)")
        _cleanup(book, client, job, on_event)
        return True
    book.save()
    return False


def _collect_job(book: JobBook, client: Any, job: JobRecord, remote: Any, store: ResponseStore,
                 on_event: Callable[[str], None] | None) -> None:
    """Save a succeeded job's answers to OUT/responses, one line at a time; record the lines that failed."""
    from .gemini import batch as wire

    entries = {e.key: e for e in book.keys(job)}
    order = list(entries)
    if remote.responses_file:
        job.result_file = remote.responses_file
        book.save()
        results = book.file(job, ".results.jsonl")
        wire.download_file(client, remote.responses_file, results)
        outcomes = wire.iter_result_lines(results, order)
    else:
        outcomes = wire.iter_inlined(remote, order)
    errors: dict[str, str] = {}
    saved = unknown = 0
    for key, response, error in outcomes:
        entry = entries.pop(key, None) if key is not None else None
        if entry is None:
            unknown += 1
            continue
        if error is not None:
            errors[key] = _line_reason(error)
            continue
        try:
            answer_text(response)
        except (BlockedError, EmptyResponseError) as exc:  # not saved, as online: a rerun asks again
            errors[key] = f"{type(exc).__name__}: {exc}"
            continue
        except VisionkitError:
            pass  # saved even when it will not parse: re-parsing must not pay twice
        path = Path(entry.path)
        try:
            stat = path.stat()
        except OSError as exc:
            errors[key] = f"the image cannot be read any more: {exc}"
            continue
        if (stat.st_size, stat.st_mtime_ns) != (entry.bytes, entry.mtime_ns):
            errors[key] = "the image changed after it was submitted; rerun with --batch to ask again"
            continue
        store.save(key, job.request, path, response)
        saved += 1
    for key in entries:
        errors[key] = "the job's results have no line for this image"
    book.write_errors(job, errors)
    job.line_failures, job.step, job.finished_at = len(errors), "collected", time.time()
    if unknown:
        job.warnings.append(f"{unknown} result lines named no request of this job and were ignored")
    book.save()
    book.file(job, ".results.jsonl").unlink(missing_ok=True)
    _note(on_event, f"batch job {job.name} SUCCEEDED: {saved} answers saved, {len(errors)} lines failed")
    _cleanup(book, client, job, on_event)


def _line_reason(error: dict) -> str:
    code, message = error.get("code"), error.get("message") or "no message"
    return "the batch line failed" + (f" (code {code})" if code is not None else "") + f": {message}"


def _cleanup(book: JobBook, client: Any, job: JobRecord, on_event: Callable[[str], None] | None) -> None:
    """Delete the job's uploaded input and its result file, so nothing fills the 20 GB file quota. A failed
    delete is a warning (files expire after 48 hours anyway)."""
    from .errors import NotFoundError
    from .gemini import batch as wire

    ok = True
    for name in (job.input_file, job.result_file):
        if not name:
            continue
        try:
            wire.delete_file(client, name)
        except NotFoundError:
            pass  # gone already
        except APIError as exc:
            ok = False
            warning = f"could not delete {name} ({exc}); it expires 48 hours after it was made"
            job.warnings.append(warning)
            _note(on_event, f"warning: batch job {job.id}: {warning}")
    job.cleaned = ok
    _drop_request_file(book, job)
    book.save()


# -- collect, cancel ---------------------------------------------------------------------------------------

class _BatchAnswers:
    """A stand-in client for :func:`visionkit.label`: saved answers are used by the pipeline itself; this
    answers every other image with its batch error, and never sends a request."""

    def __init__(self, client: Any, reasons: dict[str, tuple[str, str | None, str | None]], owns: bool):
        self._client = client
        self._reasons = reasons
        self._owns = owns

    def __getattr__(self, name: str) -> Any:  # model, max_side, ...: the request fingerprint's fields
        return getattr(self._client, name)

    def annotate(self, image: Any, task: str, **_: Any) -> Any:
        reason, job, state = self._reasons.get(str(Path(image).resolve()), (
            "no saved answer, and the image is in no batch job; rerun with --batch to submit it", None, None))
        error = BatchLineError(reason, job=job, state=state)
        error.attempts = 0  # type: ignore[attr-defined]
        raise error

    def close(self) -> None:
        if self._owns:
            self._client.close()


def answers_only(out: str | os.PathLike, client: Any, *, owns: bool = False) -> Any:
    """A client for :func:`visionkit.label` that answers from ``OUT/responses`` only: an image with no saved
    answer fails with what its batch job said about it. With ``owns``, closing it closes ``client``."""
    book = JobBook(out)
    try:
        unsent = json.loads((book.folder / "unsent.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        unsent = {}
    reasons = {path: (reason, None, None) for path, reason in unsent.items()}
    for job in book.jobs:  # later jobs overwrite earlier ones
        errors = book.errors(job) if job.step == "collected" else {}
        for entry in book.keys(job):
            where = str(Path(entry.path).resolve())
            if job.step == "collected":
                if entry.key in errors:
                    reasons[where] = (errors[entry.key], job.name, job.state)
                else:
                    reasons.pop(where, None)
            elif job.step == "ended":
                reasons[where] = (f"{job.error}; rerun with --batch to submit it again", job.name, job.state)
            else:
                reasons[where] = (f"still in batch job {job.name or job.id} ({job.state or job.step}); rerun "
                                  "to wait for it", job.name, job.state)
    return _BatchAnswers(client, reasons, owns)


def collect(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, client: Any,
            task: str = "segment", prompt: str | None = None, classes: Sequence[str] | None = None,
            on_event: Callable[[str], None] | None = None, **label_options: Any):
    """Save the answers of jobs that have finished, then write the dataset from every saved answer with
    :func:`visionkit.label` (``label_options``: threshold, polygons, overlays, ...). Images without an
    answer are failures naming their batch error; nothing is requested online."""
    from .pipeline import label

    poll(out, client=client, wait=False, on_event=on_event)
    return label(inputs, out, task=task, client=answers_only(out, client), prompt=prompt, classes=classes,
                 **label_options)


def cancel(out: str | os.PathLike, *, client: Any,
           on_event: Callable[[str], None] | None = None) -> list[str]:
    """Cancel every unfinished job recorded in ``out``; returns their names. Their images are unanswered
    again once the API reports them CANCELLED (:func:`poll`)."""
    from .gemini import batch as wire

    book = JobBook(out)
    names = []
    for job in book.jobs:
        if job.step == "creating":
            found = wire.find_job(client, job.id)
            if found is not None:
                job.name, job.step, job.submitted_at = found.name, "submitted", time.time()
            else:
                job.step = "uploaded" if job.input_file else "built"
        if job.step == "submitted":
            wire.cancel_job(client, job.name)
            names.append(job.name)
            _note(on_event, f"cancel requested for batch job {job.name}")
        elif job.step in ("built", "uploaded"):
            job.step, job.error, job.finished_at = "ended", "cancelled before it was created", time.time()
            _cleanup(book, client, job, on_event)
    book.save()
    return names

