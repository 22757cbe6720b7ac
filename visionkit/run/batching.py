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
:mod:`visionkit.run.batch_book`), so rerunning after Ctrl-C, ``kill -9`` or a reboot resumes the
recorded jobs
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

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    APIError,
    BatchError,
    ConfigError,
    InputError,
    ServerError,
    TransportError,
    VisionkitError,
)
from ..media.filekind import read_regular_text, resolved
from .answer_source import ResponseStore, request_record
from .batch_book import JobBook, JobRecord
from .batch_steps import BatchAnswers, build_jobs, cleanup, note, refresh, submit_ready

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
    "fingerprint",
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


@contextlib.contextmanager
def _lock(out: str | os.PathLike, required: bool = True) -> Iterator[bool]:
    """The output folder's run lock (the one :func:`visionkit.label` takes), held while the job record is
    written. Yields False, without the lock, when another run holds it and ``required`` is False."""
    from .outdir import lock_output

    Path(out).mkdir(parents=True, exist_ok=True)
    held = lock_output(Path(out))
    try:
        held.__enter__()
    except ConfigError:
        if required:
            raise
        yield False
        return
    try:
        yield True
    finally:
        held.__exit__(None, None, None)


def _status(book: JobBook) -> BatchStatus:
    started = [j.submitted_at for j in book.jobs if j.submitted_at]
    return BatchStatus(tuple(book.jobs), time.time() - min(started) if started else 0.0)


def status(out: str | os.PathLike) -> BatchStatus:
    """The jobs recorded in ``out/batch`` as last seen (no network)."""
    return _status(JobBook(out))


def _fingerprint(client: Any, task: str, prompt: str | None, classes: Sequence[str] | None) -> dict:
    """What a saved answer must have been asked with: exactly what online mode records."""
    return request_record(task, prompt, classes, getattr(client, "model", None),
                          getattr(client, "max_side", None), getattr(client, "media_resolution", None))


# -- submit ----------------------------------------------------------------------------------------------

def submit(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, client: Any, task: str = "segment",
           prompt: str | None = None, classes: Sequence[str] | None = None,
           max_requests: int = MAX_REQUESTS_PER_JOB, max_file_bytes: int = MAX_FILE_BYTES,
           max_inline_bytes: int = MAX_INLINE_BYTES, glob: Sequence[str] = (), exclude: Sequence[str] = (),
           limit: int | None = None, concurrency: int = 4,
           on_event: Callable[[str], None] | None = None, refresh_models: bool = False) -> BatchStatus:
    """Create batch jobs for the images that have no saved answer and are in no unfinished job.

    First the key and the model are checked and the model's thinking setting is learned
    (:mod:`visionkit.run.model_check`; ``refresh_models`` ignores the per-user cache), so every line carries
    the least thinking the model accepts, and a wrong key or model stops before anything is built.

    Jobs recorded by an earlier run are resumed first: one whose create may have reached the API is looked
    up by name, never created again. Returns once every job exists (or a 429 says the project's batch
    quota is full: the rest are created by :func:`poll` as running jobs finish).

    ``concurrency`` threads prepare the images. The images are found and keyed as :func:`visionkit.label`
    finds and keys them (``glob``, ``exclude``, ``limit``; ``OUT/keys.json`` is recorded here), so the
    answers land where the label run looks.

    Raises:
        InputError, ConfigError: no images, bad limits.
        BatchError: a create failed in a way that may have created the job; rerun to find out.
        APIError: the API refused a job (the error says why); nothing was created for it.
    """
    from .inputs import find_inputs, no_images_error
    from .keys import record_keys, run_keys

    if max_requests < 1 or max_file_bytes < 1:
        raise InputError(f"batch limits must be positive, got max_requests={max_requests}, "
                         f"max_file_bytes={max_file_bytes}")
    from ..gemini.request import plan_request
    from .model_check import check_model

    fleet = check_model(client, refresh=refresh_models)
    if fleet is not None and not fleet.announced:
        fleet.announced = True
        for message in (fleet.line(), *fleet.notices):
            note(on_event, message)
    plan = plan_request(task, client.model, client.options(prompt=prompt, classes=classes))  # fails now
    out = Path(out)
    found = find_inputs(inputs, out, glob=glob, exclude=exclude, limit=limit)
    images = found.images
    if not images:
        raise no_images_error(found)
    store = ResponseStore(out / "responses")
    with _lock(out):  # one run per folder: two at once could both create a job for the same images
        keys, known = run_keys(images, out, store.owner)
        record_keys(out, (p.relative_to(r).as_posix() for p, r in images), keys, known)
        return _submit(out, images, keys, store, client, task, prompt, classes, max_requests, max_file_bytes,
                       max_inline_bytes, concurrency, on_event, plan)


def _submit(out: Path, images: list, keys: list[str], store: ResponseStore, client: Any, task: str,
            prompt: str | None, classes: Sequence[str] | None, max_requests: int, max_file_bytes: int,
            max_inline_bytes: int, concurrency: int, on_event: Callable[[str], None] | None,
            plan: Any) -> BatchStatus:
    book = JobBook(out)
    for job in [j for j in book.jobs if j.step == "building"]:
        book.drop(job)  # cut off while its request file was written: nothing was sent
    request = _fingerprint(client, task, prompt, classes)
    taken = book.active_keys(request)
    todo = []
    for (path, _root), key in zip(images, keys):
        if key in taken:
            continue
        try:
            answer, _stale = store.load(key, request, path)
        except VisionkitError as exc:  # an answer is on disk (paid for) but unreadable: never ask again;
            note(on_event, f"{path}: not submitted: its saved answer cannot be read ({exc})")
            continue                   # the label run reports the error for this image
        if answer is None:
            todo.append((key, path))
    if todo:
        note(on_event, f"{len(todo)} of {len(images)} images have no saved answer; building batch requests")
        build_jobs(book, client, todo, task, prompt, classes, request, max_requests, max_file_bytes,
                   max_inline_bytes, on_event, workers=concurrency,
                   masks=(plan.mask_format, plan.mask_order))
    elif not book.jobs or not any(j.active for j in book.jobs):
        note(on_event, f"all {len(images)} images have a saved answer; no batch job is needed")
    submit_ready(book, client, on_event)
    return _status(book)


# -- poll and collect answers ------------------------------------------------------------------------------

def poll(out: str | os.PathLike, *, client: Any, wait: bool = True,
         poll_interval: float = DEFAULT_POLL_INTERVAL, max_interval: float = MAX_POLL_INTERVAL,
         on_progress: Callable[[BatchStatus], None] | None = None,
         on_event: Callable[[str], None] | None = None,
         sleep: Callable[[float], None] = time.sleep, collect_results: bool = True,
         submit_held: bool = True, request: dict | None = None) -> BatchStatus:
    """Refresh every submitted job, saving the answers of each one that succeeded; with ``wait``, repeat
    until no job is unfinished. Transient poll failures (timeouts, 5xx) are reported and polled again.

    ``collect_results=False`` only refreshes the recorded states (nothing is downloaded or deleted);
    ``submit_held=False`` creates no job that a full quota held back; ``request`` (a request fingerprint)
    waits only for the jobs asked with it (jobs of other settings are still collected if they finish).

    Raises:
        APIError: a failure that polling again cannot fix (bad key, a job the API does not know).
    """
    with _lock(out, required=collect_results or submit_held) as locked:
        book = JobBook(out)
        book.readonly = not locked  # another run is waiting on these jobs: look, but write nothing
        return _poll(book, client, wait, poll_interval, max_interval, on_progress, on_event, sleep,
                     collect_results, submit_held, request)


def _poll(book: JobBook, client: Any, wait: bool, poll_interval: float, max_interval: float,
          on_progress: Callable[[BatchStatus], None] | None, on_event: Callable[[str], None] | None,
          sleep: Callable[[float], None], collect_results: bool, submit_held: bool,
          request: dict | None) -> BatchStatus:
    store = ResponseStore(book.out / "responses")
    interval = max(float(poll_interval), 0.0)
    while True:
        changed = False
        for job in [j for j in book.jobs if j.step == "submitted"]:
            try:
                changed |= refresh(book, client, job, store, on_event, collect_results)
            except (TransportError, ServerError) as exc:
                note(on_event, f"batch job {job.name}: poll failed ({exc}); polling again")
        if submit_held and (changed or not any(j.step == "submitted" for j in book.jobs)):
            submit_ready(book, client, on_event)  # jobs a full quota held back
        current = _status(book)
        if on_progress is not None:
            on_progress(current)
        if not wait or not [j for j in current.active if request is None or j.request == request]:
            return current
        if not any(j.step == "submitted" for j in book.jobs):
            if not submit_held:
                return current  # only held-back jobs are left, and this caller creates none
            raise BatchError("no batch job is running and the project's batch quota refuses new ones; rerun "
                             "later", state="RESOURCE_EXHAUSTED")
        sleep(interval)
        interval = min(max(interval * POLL_BACKOFF, 0.001), max_interval)


# -- collect, cancel ---------------------------------------------------------------------------------------

def fingerprint(client: Any, task: str, prompt: str | None = None,
                classes: Sequence[str] | None = None) -> dict:
    """The request fingerprint saved answers (and jobs) are matched by: what online mode records."""
    return _fingerprint(client, task, prompt, classes)


def answers_only(out: str | os.PathLike, client: Any, *, owns: bool = False) -> Any:
    """A client for :func:`visionkit.label` that answers from ``OUT/responses`` only: an image with no saved
    answer fails with what its batch job said about it. With ``owns``, closing it closes ``client``."""
    book = JobBook(out)
    try:
        unsent = json.loads(read_regular_text(book.folder / "unsent.json", expected="a JSON object"))
    except (OSError, ValueError):
        unsent = {}
    reasons = {path: (reason, None, None) for path, reason in unsent.items()}
    answered: dict[str, JobRecord] = {}  # the job whose answer was saved: asked only if it does not fit
    for job in book.jobs:  # later jobs overwrite earlier ones
        errors = book.errors(job) if job.step == "collected" else {}
        for entry in book.keys(job):
            where = str(resolved(entry.path))
            answered.pop(where, None)
            if job.step == "collected":
                if entry.key in errors:
                    reasons[where] = (errors[entry.key], job.name, job.state)
                else:
                    reasons.pop(where, None)
                    answered[where] = job
            elif job.step == "ended":
                reasons[where] = (f"{job.error}; rerun with --batch to submit it again", job.name, job.state)
            else:
                reasons[where] = (f"still in batch job {job.name or job.id} ({job.state or job.step}); rerun "
                                  "to wait for it", job.name, job.state)
    return BatchAnswers(client, reasons, owns, answered)


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
    """Cancel every unfinished job recorded in ``out``; returns the names of those the API accepted to
    cancel (a refused one is reported through ``on_event`` as a warning, and the others are still
    cancelled). Their images are unanswered again once the API reports them CANCELLED (:func:`poll`)."""
    from ..gemini import batch as wire

    with _lock(out, required=False) as locked:
        book = JobBook(out)
        if not locked:  # a waiting run owns the record: it sees the jobs end CANCELLED at its next poll
            book.readonly = True
        return _cancel(book, client, wire, on_event)


def _cancel(book: JobBook, client: Any, wire: Any, on_event: Callable[[str], None] | None) -> list[str]:
    names = []
    for job in book.jobs:
        if job.step == "creating" and not book.readonly:
            found = wire.find_job(client, job.id)
            if found is not None:
                job.name, job.step, job.submitted_at = found.name, "submitted", time.time()
            else:
                job.step = "uploaded" if job.input_file else "built"
        if job.step == "submitted":
            try:
                wire.cancel_job(client, job.name)
            except APIError as exc:  # one refusal must not leave the other jobs running (and unsaved)
                note(on_event, f"warning: could not cancel batch job {job.name}: {exc}")
                continue
            names.append(job.name)
            note(on_event, f"cancel requested for batch job {job.name}")
        elif job.step in ("built", "uploaded") and not book.readonly:
            job.step, job.error, job.finished_at = "ended", "cancelled before it was created", time.time()
            cleanup(book, client, job, on_event)
    book.save()
    return names

