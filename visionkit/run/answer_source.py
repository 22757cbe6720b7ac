"""Where one image's answer comes from: a replay folder, the responses saved by an earlier run, or the API.

Saved responses (``OUT/responses/<key>.json``) are the raw generateContent bodies, so
``--replay OUT/responses`` reproduces a run. Beside each one, ``OUT/responses/.request/<key>.json``
records what was asked (task, prompt, classes, model, max_side) and of which image (size, mtime, SHA-256).
A saved response is reused only when both still match: changing the task, the classes or the image asks
again, while re-thresholding or re-exporting never pays for the API twice. A response saved without a
record (by hand, or by an older version) is trusted as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..answers.parse import answer_text
from ..answers.response import load_response
from ..errors import BlockedError, ConfigError, EmptyResponseError, ExportError, InputError, ParseError
from ..media.atomic import FolderSync, SyncBatch, write_bytes_atomic, write_json_atomic
from ..media.filekind import check_regular, read_regular_text

__all__ = ["AnswerSource", "RateLimiter", "ResponseStore", "find_replay", "read_answer"]

RECORD_DIR = ".request"


def find_replay(replay: Path, key: str, stem: str, listing: Container[str] | None = None) -> Path | None:
    """``replay/<key>.json`` or ``.txt`` (then the same for the bare stem), or None. ``listing``: the
    names of the files in ``replay``, when the caller listed it once: a listed name needs no stat (one
    not listed is still looked for, as a case-insensitive file system may hold it under another case).

    The bare-stem fallback is for answers named after the file (``x.txt`` for ``sub/x.jpg``); callers must
    use it only when exactly one image of the run has that stem (see :meth:`AnswerSource.get`).
    """
    candidates = [f"{name}{suffix}" for name in dict.fromkeys((key, stem)) for suffix in (".json", ".txt")]
    for candidate in candidates if listing is not None else ():
        if candidate in listing:
            return replay / candidate
    for candidate in candidates:
        if (replay / candidate).is_file():
            return replay / candidate
    return None


def _files_in(folder: Path) -> frozenset[str]:
    """The names of the files in ``folder`` (one ``scandir``), or an empty set when it cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(e.name for e in entries if e.is_file())
    except OSError:
        return frozenset()


def request_record(task: str, prompt: str | None, classes: Sequence[str] | None, model: str | None,
                   max_side: int | None, media_resolution: str | None = None) -> dict:
    """What a saved answer must have been asked with to be reused (recorded beside it).
    ``media_resolution`` is recorded only when set, so records written without it stay valid."""
    record = {"task": task, "prompt": prompt, "classes": list(classes) if classes else None, "model": model,
              "max_side": max_side}
    if media_resolution:
        record["media_resolution"] = media_resolution
    return record


def read_answer(path: Path) -> Any:
    """A replay or saved file: ``.json`` = a full generateContent response (dict), ``.txt`` = model text."""
    try:
        text = read_regular_text(path, expected="an answer file (a response .json or a text .txt)")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read answer file {path}: {exc}") from exc
    if path.suffix == ".json":
        try:
            return load_response(text)
        except ParseError as exc:
            raise ParseError(f"answer file {path}: {exc}", snippet=exc.snippet) from exc
    return text


def image_facts(path: Path, with_digest: bool = True) -> dict:
    stat = check_regular(path)  # a FIFO would block the digest's read for ever
    try:
        facts: dict[str, Any] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if with_digest:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            facts["sha256"] = digest.hexdigest()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    return facts


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ResponseStore:
    """The saved responses of one output folder (``OUT/responses``). Safe to use from many threads.

    ``folders``: each saved file is fsynced before its rename, and the folders' fsyncs are left to it
    (:class:`~visionkit.media.atomic.FolderSync`: at most a second later; the owner closes it at the end of
    the run); without it, each save fsyncs its folders too."""

    def __init__(self, folder: Path, folders: FolderSync | None = None):
        self.folder = Path(folder)
        self.folders = folders

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str, request: dict, image: Path) -> tuple[Any | None, str | None]:
        """``(answer, None)`` when a saved answer fits this request and image; ``(None, why)`` when one is
        saved but stale; ``(None, None)`` when none is saved."""
        saved, stale = self.check(key, request, image)
        return (None, stale) if saved is None else (read_answer(saved), None)

    def check(self, key: str, request: dict, image: Path) -> tuple[Path | None, str | None]:
        """What :meth:`load` decides, without reading the answer: ``(its file, None)`` when a saved answer
        fits, ``(None, why)`` when one is saved but stale, ``(None, None)`` when none is saved."""
        saved = self.path(key)
        if not saved.is_file():
            return None, None
        record_path = self.folder / RECORD_DIR / f"{key}.json"
        if record_path.is_file():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                asked, seen = record["request"], record["image"]
            except (OSError, ValueError, KeyError, TypeError):
                record = None
            if record is not None:
                changed = sorted(k for k in set(asked) | set(request) if asked.get(k) != request.get(k))
                if changed:
                    return None, f"the saved answer was for another request ({', '.join(changed)} changed)"
                now = image_facts(image, with_digest=False)
                if (now["bytes"], now["mtime_ns"]) != (seen.get("bytes"), seen.get("mtime_ns")) \
                        and image_facts(image)["sha256"] != seen.get("sha256"):
                    return None, "the saved answer was for another version of the image"
                if "response_sha256" in record and record["response_sha256"] != _file_digest(saved):
                    return None, "the saved answer does not match its request record"
        return saved, None

    def owner(self, key: str, images: dict[str, Path]) -> str | None:
        """Which of ``images`` (``{file_name: path}``) the response saved under ``key`` was asked about,
        by the SHA-256 in its request record; None when there is no record or not exactly one matches."""
        try:
            record = json.loads(read_regular_text(self.folder / RECORD_DIR / f"{key}.json"))
            digest = record["image"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError, InputError):
            return None
        matches = []
        for file_name, path in images.items():
            try:
                if image_facts(path)["sha256"] == digest:
                    matches.append(file_name)
            except InputError:
                continue
        return matches[0] if len(matches) == 1 else None

    def save(self, key: str, request: dict, image: Path, response: dict, batch: SyncBatch | None = None
             ) -> None:
        """Save a response and its request record as one unit: the record (written first) holds the
        response's SHA-256, so a response that is not the one its record describes (another process wrote
        one of the two) is never reused. Raises ExportError naming the file (a full disk). With ``batch``,
        both are written through it: durable only once the caller calls ``batch.sync()``."""
        body = json.dumps(response, ensure_ascii=False).encode("utf-8")
        record = {"request": request, "image": image_facts(image),
                  "response_sha256": hashlib.sha256(body).hexdigest()}
        if batch is not None:
            batch.write_bytes(self.folder / RECORD_DIR / f"{key}.json",
                              json.dumps(record, ensure_ascii=False).encode("utf-8"))
            batch.write_bytes(self.path(key), body)
            return
        write_json_atomic(self.folder / RECORD_DIR / f"{key}.json", record, folders=self.folders)
        write_bytes_atomic(self.path(key), body, folders=self.folders)


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart, across threads. ``rpm=None``: no limit."""

    def __init__(self, rpm: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rpm is not None and rpm <= 0:
            raise ConfigError(f"rpm must be positive, got {rpm}")
        self.interval = 0.0 if rpm is None else 60.0 / rpm
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class AnswerSource:
    """Finds or fetches one image's answer: a replay folder, a saved response, or the API (then saved).

    Thread-safe: one instance serves all of a run's workers.
    """

    def __init__(self, replay: Path | None, store: ResponseStore, client: Any, limiter: RateLimiter,
                 task: str, prompt: str | None, classes: Sequence[str] | None,
                 stem_owners: Mapping[str, Sequence[tuple[str, str]]] | None = None, reask: bool = True):
        self.replay, self.store, self.client, self.limiter = replay, store, client, limiter
        # {stem.casefold(): [(file_name, key), ...]}: which images a bare-stem replay answer could mean.
        self.stem_owners = stem_owners or {}
        # Paid answers whose save failed (a full disk): {key: (image, response)}, retried at the end.
        self._unsaved: dict[str, tuple[Path, dict]] = {}
        self._unsaved_lock = threading.Lock()
        self._replayed_keys: dict[str, str] | None = None
        # the replay folder's file names, listed once: a stat per candidate name cost more, per image
        self._listing = _files_in(replay) if replay is not None else None
        self.task, self.prompt, self.classes = task, prompt, classes
        self.reask = reask  # ask once more with the polygon prompt when masks do not decode
        # What the saved answers must have been asked with (see visionkit.run.answer_source).
        self.request = request_record(task, prompt, classes, getattr(client, "model", None),
                                      getattr(client, "max_side", None),
                                      getattr(client, "media_resolution", None))

    def get(self, path: Path, file_name: str, key: str, size_wh: tuple[int, int] | None = None
            ) -> tuple[Any, str, int, str | None]:
        """``(answer, source, attempts, note)``; source is "replay", "cache", "api" or "batch" (an answer a
        batch job of this ``--batch`` run saved: billed to this run, see :mod:`visionkit.run.usage`).
        ``size_wh``: the upright image's size, when the caller read it already."""
        if self.replay is not None:
            return read_answer(self.replay_file(path, file_name, key)), "replay", 0, None
        answer, stale = self.store.load(key, self.request, path)
        if answer is not None:
            from .reask import saved_meta

            batch = getattr(self.client, "answers_only", False) and saved_meta(answer).get("batch")
            return answer, "batch" if batch else "cache", 0, None
        self.limiter.acquire()
        result = self.client.annotate(path, self.task, prompt=self.prompt, classes=self.classes)
        response, attempts, reasked = self._checked(result, path, size_wh)
        try:
            answer_text(response)
        except (BlockedError, EmptyResponseError):
            pass  # not saved: a rerun may get a real answer
        else:
            # Saved even when it will not parse: re-parsing later must not pay for the API again.
            unsaved = self._save(key, path, response)
            if unsaved:
                stale = unsaved if stale is None else f"{stale}; asked again; {unsaved}"
                return response, "api", attempts, "; ".join(filter(None, (stale, reasked)))
        note = None if stale is None else f"{stale}; asked again"
        note = "; ".join(filter(None, (note, reasked))) or None
        return response, "api", attempts, note

    def _checked(self, result: Any, path: Path, size_wh: tuple[int, int] | None
                 ) -> tuple[dict, int, str | None]:
        """The response to keep (with its usage entry), the HTTP attempts in all, and a re-ask note."""
        from . import reask

        if not (self.reask and self.task == "segment" and hasattr(self.client, "info")):
            return reask.no_reask(result), result.attempts, None
        from ..media.imageio import image_size

        response, more, note = reask.reask(self.client, path, self.task, self.prompt, self.classes, result,
                                           size_wh or image_size(path))
        return response, result.attempts + more, note

    def _save(self, key: str, path: Path, response: dict) -> str | None:
        """Save a paid answer; when that fails (a full disk), keep it in memory for a retry and say so."""
        try:
            self.store.save(key, self.request, path, response)
        except ExportError as exc:
            with self._unsaved_lock:
                self._unsaved[key] = (path, response)
            return (f"the answer could not be saved ({exc}); it is kept in memory for this run and the save "
                    "is retried at the end")
        return None

    def _replay_keys(self) -> dict[str, str]:
        """``{file_name: key}`` of the run whose ``responses`` folder is replayed (else empty)."""
        if self._replayed_keys is None:  # a benign race: every thread computes the same map
            from .keys import load_key_map

            found = load_key_map(self.replay.parent) if self.replay is not None else None
            self._replayed_keys = found or {}
        return self._replayed_keys

    def answer_file(self, path: Path, file_name: str, key: str) -> Path | None:
        """The file :meth:`get` would read this image's answer from without sending a request (the replay
        file, or a saved response that fits), or None (there is none: it would fail, or ask)."""
        try:
            if self.replay is not None:
                return self.replay_file(path, file_name, key)
            with self._unsaved_lock:
                if key in self._unsaved:
                    return None  # the answer on disk (if any) is not the one this run used
            return self.store.check(key, self.request, path)[0]
        except (InputError, OSError):
            return None

    def unsaved_count(self) -> int:
        with self._unsaved_lock:
            return len(self._unsaved)

    def retry_unsaved(self) -> tuple[int, str]:
        """Try again to save the answers kept in memory; returns ``(still unsaved, last error)``."""
        with self._unsaved_lock:
            held = list(self._unsaved.items())
        why = ""
        for key, (path, response) in held:
            try:
                self.store.save(key, self.request, path, response)
            except (ExportError, InputError) as exc:
                why = str(exc)
                continue
            with self._unsaved_lock:
                self._unsaved.pop(key, None)
        return self.unsaved_count(), why

    def replay_file(self, path: Path, file_name: str, key: str) -> Path:
        """The replay file that answers this image; raises InputError naming it when none fits (the
        pipeline's worker processes get the file found here, as they do not know the other images)."""
        return self._replay_file(path, file_name, key)

    def _replay_file(self, path: Path, file_name: str, key: str) -> Path:
        """The answer under the key the replayed run gave this image (``--replay RUN/responses``, whose
        ``RUN/keys.json`` says), else ``<key>.json``/``.txt``, else ``<stem>.json``/``.txt`` when no other
        image has that stem."""
        recorded = self._replay_keys().get(file_name)
        found = find_replay(self.replay, recorded, recorded, self._listing) if recorded else None
        found = found or find_replay(self.replay, key, key, self._listing)
        if found is not None:
            return found
        stem = path.stem
        fallback = find_replay(self.replay, stem, stem, self._listing) if stem != key else None
        owners = self.stem_owners.get(path.stem.casefold(), ())
        if fallback is not None and len(owners) > 1:
            names = " or ".join(f for f, _ in owners)
            keys = " or ".join(f"{k}{fallback.suffix}" for _, k in owners)
            raise InputError(f"replay answer {fallback.name} could mean {names} (they share the stem "
                             f"{path.stem!r}); rename it after the image it belongs to: {keys}")
        if fallback is None:
            tried = dict.fromkeys((key, path.stem))
            raise InputError(f"no replay answer for {file_name}: looked for "
                             f"{' and '.join(f'{n}.json and {n}.txt' for n in tried)} in {self.replay}")
        return fallback
