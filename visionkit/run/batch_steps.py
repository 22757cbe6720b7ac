"""The steps behind :mod:`visionkit.run.batching`: write a job's request lines, create it, poll it, save its
answers, and delete what it uploaded. Each step records itself in the job book
(:mod:`visionkit.run.batch_book`)
before it acts, so a process killed at any point resumes without creating a job twice.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..answers.parse import answer_text
from ..core.usage import Usage
from ..errors import (
    APIError,
    BatchError,
    BatchLineError,
    BlockedError,
    EmptyResponseError,
    InputError,
    NotFoundError,
    RateLimitError,
    VisionkitError,
)
from ..media.atomic import SyncBatch, write_json_atomic
from ..media.filekind import open_regular, read_regular_text, resolved
from .answer_source import RECORD_DIR, ResponseStore
from .batch_book import JobBook, JobRecord, KeyEntry

__all__ = ["BatchAnswers", "build_jobs", "cleanup", "collect_job", "note", "refresh", "request_body",
           "submit_ready"]


_ENDED = {
    "FAILED": "FAILED{detail}",
    "CANCELLED": "was CANCELLED",
    "EXPIRED": "EXPIRED: it was pending or running for more than 48 hours, and an expired job has no results",
}


def request_body(client: Any, path: Path, task: str, prompt: str | None,
                 classes: Sequence[str] | None) -> dict:
    """The generateContent body for one image: the one the online client sends (the shared builder,
    :func:`visionkit.gemini.request.build_request`, with the client's options, model and image
    preparation). A batch line carries no ``serviceTier``: a batch job is billed at the batch price."""
    from ..gemini.request import build_request

    body = build_request(client.prepare(path), task, client.model, client.options(prompt=prompt,
                                                                                  classes=classes))
    body.pop("serviceTier", None)
    return body


def note(on_event: Callable[[str], None] | None, message: str) -> None:
    if on_event is not None:
        on_event(message)


def _lines(client: Any, todo: list[tuple[str, Path]], task: str, prompt: str | None,
           classes: Sequence[str] | None, workers: int) -> Iterator[tuple[str, Path, Any]]:
    """``(key, path, (stat, line) or the error)`` in input order; ``workers`` threads prepare the images
    (decoding and JPEG encoding release the GIL), with at most ``2 * workers`` lines held at once."""
    def make(key: str, path: Path) -> tuple[os.stat_result, bytes]:
        stat = path.stat()
        body = request_body(client, path, task, prompt, classes)
        return stat, (json.dumps({"key": key, "request": body}, ensure_ascii=False) + "\n").encode("utf-8")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        window: deque = deque()
        items = iter(todo)
        try:
            while True:
                while len(window) < 2 * max(1, workers):
                    item = next(items, None)
                    if item is None:
                        break
                    window.append((item, pool.submit(make, *item)))
                if not window:
                    return
                (key, path), future = window.popleft()
                try:
                    yield key, path, future.result()
                except (VisionkitError, OSError) as exc:
                    yield key, path, exc
        finally:
            for _, future in window:
                future.cancel()


def build_jobs(book: JobBook, client: Any, todo: list[tuple[str, Path]], task: str, prompt: str | None,
               classes: Sequence[str] | None, request: dict, max_requests: int, max_file_bytes: int,
               max_inline_bytes: int, on_event: Callable[[str], None] | None, workers: int = 4,
               masks: tuple[str | None, str | None] = (None, None)) -> None:
    """Write the request lines (and each job's key list) into as many jobs as the limits need, straight to
    disk. Memory holds a few lines at a time, whatever the image count."""
    from ..gemini import batch as wire

    job: JobRecord | None = None
    stream: Any = None  # the job's request lines
    keys: Any = None  # the job's key list
    count = 0
    unsent: dict[str, str] = {}

    def finish() -> None:
        nonlocal job, stream, keys, count
        for fh in (stream, keys):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        os.replace(book.file(job, ".keys.jsonl.part"), book.file(job, ".keys.jsonl"))
        os.replace(book.file(job, ".jsonl.part"), book.file(job, ".jsonl"))
        job.requests, job.step = count, "built"
        # Decided on the create body that would be sent (its metadata wrapping included), not the lines.
        inline = wire.inline_size(job.id, job.bytes, count)
        job.mode = "inline" if inline <= max_inline_bytes else "file"
        book.save()
        note(on_event, f"batch job {job.id}: {job.requests} requests, {job.bytes / 1e6:.1f} MB ({job.mode})")
        job, stream, keys, count = None, None, None, 0

    try:
        for key, path, made in _lines(client, todo, task, prompt, classes, workers):
            if isinstance(made, BaseException):
                unsent[str(resolved(path))] = f"not submitted: {type(made).__name__}: {made}"
                note(on_event, f"{path}: not submitted: {made}")
                continue
            stat, line = made
            if len(line) > max_file_bytes:
                unsent[str(resolved(path))] = (f"not submitted: its request is {len(line)} bytes, more than "
                                               f"a batch input file may hold ({max_file_bytes})")
                note(on_event, f"{path}: {unsent[str(resolved(path))]}")
                continue
            if job is not None and (count >= max_requests or job.bytes + len(line) > max_file_bytes):
                finish()
            if job is None:
                job = book.new_job(request, client.model)
                job.mask_format, job.mask_order = masks
                book.save()  # recorded (as "building") before its files exist
                book.folder.mkdir(parents=True, exist_ok=True)
                stream = open(book.file(job, ".jsonl.part"), "wb")  # noqa: SIM115 (closed in finish)
                keys = open(book.file(job, ".keys.jsonl.part"), "w", encoding="utf-8")  # noqa: SIM115
            stream.write(line)
            entry = KeyEntry(key, str(resolved(path)), stat.st_size, stat.st_mtime_ns)
            keys.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")
            job.bytes += len(line)
            count += 1
        if job is not None:
            finish()
    finally:
        if stream is not None:  # interrupted mid-job: its record says "building", so it is dropped later
            for fh, suffix in ((stream, ".jsonl.part"), (keys, ".keys.jsonl.part")):
                fh.close()
                book.file(job, suffix).unlink(missing_ok=True)
        write_json_atomic(book.folder / "unsent.json", unsent, indent=1)


def submit_ready(book: JobBook, client: Any, on_event: Callable[[str], None] | None) -> bool:
    """Create every job that is built, uploaded or possibly created. False when a 429 stopped it."""
    from ..gemini import batch as wire

    for job in [j for j in book.jobs if j.step in ("built", "uploaded", "creating")]:
        if job.step == "creating":
            found = wire.find_job(client, job.id)
            if found is not None:
                note(on_event, f"batch job {job.id} was created before the last run stopped: {found.name}")
                job.name, job.state, job.step = found.name, found.state, "submitted"
                job.submitted_at = job.submitted_at or time.time()
                drop_request_file(book, job)
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
                with open_regular(book.file(job, ".jsonl"), expected="the job's request lines") as fh:
                    created = wire.create_job(client, job.id, inline=wire.inline_body(job.id, fh),
                                              model=job.model)
        except BatchError:
            raise  # still "creating": the next run looks it up before anything else
        except RateLimitError as exc:
            job.step = "uploaded" if job.input_file else "built"
            book.save()
            note(on_event, f"batch job {job.id} not created yet, the project's batch quota is full ({exc}); "
                            "it is created when a running job finishes")
            return False
        except APIError as exc:
            job.step, job.error, job.finished_at = "ended", f"the API refused the job: {exc}", time.time()
            book.save()
            cleanup(book, client, job, on_event)
            raise
        job.name, job.state, job.step = created.name, created.state, "submitted"
        job.submitted_at = time.time()
        job.request_count = created.request_count
        book.save()
        drop_request_file(book, job)
        note(on_event, f"batch job {job.id} submitted: {created.name} ({job.requests} requests)")
    return True


def drop_request_file(book: JobBook, job: JobRecord) -> None:
    book.file(job, ".jsonl").unlink(missing_ok=True)


def refresh(book: JobBook, client: Any, job: JobRecord, store: ResponseStore,
             on_event: Callable[[str], None] | None, collect_results: bool = True) -> bool:
    """Poll one job; collect or close it when it has ended. True when it ended."""
    from ..gemini import batch as wire

    remote = wire.get_job(client, job.name)
    if remote.state != job.state:
        note(on_event, f"batch job {job.name}: {remote.state}")
    job.state = remote.state
    job.request_count = remote.request_count if remote.request_count is not None else job.request_count
    job.succeeded_count, job.failed_count = remote.succeeded_count, remote.failed_count
    job.pending_count = remote.pending_count
    if not collect_results:
        book.save()
        return False
    if remote.succeeded:
        collect_job(book, client, job, remote, store, on_event)
        return True
    if remote.terminal:
        detail = f": {remote.error.get('message')}" if remote.error and remote.error.get("message") else ""
        what = _ENDED.get(remote.state, remote.state).format(detail=detail)
        job.step, job.error, job.finished_at = "ended", f"batch job {job.name} {what}", time.time()
        book.save()
        note(on_event, f"{job.error}; its {job.requests} images are unanswered again (rerun with --batch "
                        "to submit them)")
        cleanup(book, client, job, on_event)
        return True
    book.save()
    return False


def collect_job(book: JobBook, client: Any, job: JobRecord, remote: Any, store: ResponseStore,
                 on_event: Callable[[str], None] | None) -> None:
    """Save a succeeded job's answers to OUT/responses, one line at a time; record the lines that failed."""
    from ..gemini import batch as wire

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
    billed = Usage()
    saved = unknown = superseded = 0
    synced = SyncBatch()  # the answers are made durable together (one syncfs), not with 4 fsyncs each
    for key, response, error in outcomes:
        entry = entries.pop(key, None) if key is not None else None
        if entry is None:
            unknown += 1
            continue
        if error is not None:
            errors[key] = line_reason(error)
            continue
        billed.add(Usage.of(response.get("usageMetadata") if isinstance(response, dict) else None))
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
        if _superseded(store, key, job):
            superseded += 1  # a later run with other settings already saved a paid answer: keep it
            continue
        store.save(key, job.request, path, _with_meta(response, job), batch=synced)
        saved += 1
    for key in entries:
        errors[key] = "the job's results have no line for this image"
    synced.sync()  # every saved answer on disk before the job is recorded as collected
    book.write_errors(job, errors)
    job.line_failures, job.step, job.finished_at = len(errors), "collected", time.time()
    job.usage = billed.to_json()  # what the job's answers billed: 'batch status' shows it
    if unknown:
        job.warnings.append(f"{unknown} result lines named no request of this job and were ignored")
    book.save()
    book.file(job, ".results.jsonl").unlink(missing_ok=True)
    if superseded:
        job.warnings.append(f"{superseded} answers were not saved: newer answers asked with other settings "
                            "are kept")
    note(on_event, f"batch job {job.name} SUCCEEDED: {saved} answers saved, {len(errors)} lines failed"
         + (f", {superseded} superseded by newer answers" if superseded else ""))
    cleanup(book, client, job, on_event)


def _with_meta(response: dict, job: JobRecord) -> dict:
    """The response with visionkit's entry, as online mode saves it (usage, mask format and order), plus
    the job it came from."""
    from .reask import annotate_meta

    line = SimpleNamespace(response=response, mask_format=job.mask_format, mask_order=job.mask_order)
    return annotate_meta(line, Usage.of(response.get("usageMetadata")), batch=job.name)


def _superseded(store: ResponseStore, key: str, job: JobRecord) -> bool:
    """True when the saved answer for ``key`` was asked with other settings after this job was submitted
    (overwriting it would throw a newer paid answer away)."""
    record = store.folder / RECORD_DIR / f"{key}.json"
    try:
        asked = json.loads(read_regular_text(record, expected="a request record")).get("request")
        when = record.stat().st_mtime
    except (OSError, ValueError, AttributeError, InputError):
        return False
    return asked != job.request and when > (job.submitted_at or 0)


def line_reason(error: dict) -> str:
    code, message = error.get("code"), error.get("message") or "no message"
    return "the batch line failed" + (f" (code {code})" if code is not None else "") + f": {message}"


def cleanup(book: JobBook, client: Any, job: JobRecord, on_event: Callable[[str], None] | None) -> None:
    """Delete the job's uploaded input and its result file, so nothing fills the 20 GB file quota. A failed
    delete is a warning (files expire after 48 hours anyway)."""
    from ..gemini import batch as wire

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
            note(on_event, f"warning: batch job {job.id}: {warning}")
    job.cleaned = ok
    drop_request_file(book, job)
    book.save()


class BatchAnswers:
    """A stand-in client for :func:`visionkit.label`: saved answers are used by the pipeline itself; this
    answers every other image with its batch error, and never sends a request."""

    answers_only = True  # the run bills the batch answers, sends no probe, labels on worker processes

    def __init__(self, client: Any, reasons: dict[str, tuple[str, str | None, str | None]], owns: bool,
                 answered: dict[str, JobRecord] | None = None):
        self._client = client
        self._reasons = reasons
        self._owns = owns
        self._answered = answered or {}  # {image path: the job whose answer is saved in OUT/responses}

    def __getattr__(self, name: str) -> Any:  # model, max_side, ...: the request fingerprint's fields
        return getattr(self._client, name)

    def annotate(self, image: Any, task: str, prompt: str | None = None,
                 classes: Sequence[str] | None = None, **_: Any) -> Any:
        where = str(resolved(image))
        job_record = self._answered.get(where)
        if job_record is not None:  # its answer is saved, but the pipeline found it does not fit this run
            reason, job, state = self._mismatch(job_record, task, prompt, classes), job_record.name, \
                job_record.state
        else:
            reason, job, state = self._reasons.get(where, (
                "no saved answer, and the image is in no batch job; rerun with --batch to submit it", None,
                None))
        error = BatchLineError(reason, job=job, state=state)
        error.attempts = 0  # type: ignore[attr-defined]
        raise error

    def _mismatch(self, job: JobRecord, task: str, prompt: str | None, classes: Sequence[str] | None) -> str:
        from .answer_source import request_record

        now = request_record(task, prompt, classes, getattr(self._client, "model", None),
                             getattr(self._client, "max_side", None),
                             getattr(self._client, "media_resolution", None))
        asked = job.request or {}
        changed = [f"{k} {asked.get(k)!r}, this run {now.get(k)!r}" for k in sorted(set(asked) | set(now))
                   if asked.get(k) != now.get(k)]
        if not changed:
            return (f"the answer of batch job {job.name} is saved, but no longer fits (the image changed, or "
                    "a newer answer asked with other settings replaced it); nothing was requested")
        return (f"the answer of batch job {job.name} is saved, but for other settings "
                f"({'; '.join(changed)}); run with those settings to use it (nothing was requested)")

    def close(self) -> None:
        if self._owns:
            self._client.close()
