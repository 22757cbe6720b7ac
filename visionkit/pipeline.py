"""Label many images: answers (replayed, cached or requested) -> COCO + overlays, streamed to disk.

Output folder layout::

    OUT/annotations.json     COCO for every image that succeeded (written atomically, at the end)
    OUT/overlays/<key>.png   one overlay per image that succeeded
    OUT/responses/<key>.json every raw API response (online mode), written atomically as it arrives
    OUT/failures.json        [{file, key, stage, error, reason}] for every image that failed

``<key>`` is the image's file stem; when two inputs share a stem, their paths relative to their input
folder (without suffix, ``/`` replaced by ``__``) are used instead, so keys stay unique.

Resuming: an image whose ``OUT/responses/<key>.json`` exists is not requested again, so rerunning the
same command after an interruption (even ``kill -9``) only asks for the images not yet answered.
``annotations.json`` is rebuilt from all answers, so it equals the one an uninterrupted run writes.

Memory stays flat in the number of images: each image's annotations go to a spool file as soon as it
is done, and ``annotations.json`` is streamed from it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import imageio
from .atomic import atomic_open
from .coco import CategoryMap, assemble, finish_annotation, image_annotations, write_json_atomic
from .detections import ParseWarning
from .errors import (
    BlockedError,
    ConfigError,
    EmptyResponseError,
    ExportError,
    InputError,
    ParseError,
    VisionkitError,
)
from .masks import DEFAULT_THRESHOLD
from .parse import answer_text, parse_response
from .response import load_response

__all__ = ["ImageResult", "LabelSummary", "Progress", "RateLimiter", "label"]

TASKS = ("detect", "segment")


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image. ``error`` is set when it failed; ``stage`` says where."""

    file: str
    key: str
    ok: bool
    source: str  # "replay", "cache", "api" or "" (failed before an answer was found)
    detections: int = 0
    warnings: tuple[ParseWarning, ...] = ()
    attempts: int = 0
    stage: str = ""
    error: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    """A progress snapshot, sent after every image."""

    total: int
    done: int
    failed: int
    cached: int
    retries: int
    elapsed: float

    @property
    def eta(self) -> float | None:
        """Seconds left at the current pace, or None before the first image."""
        finished = self.done + self.failed
        if finished == 0:
            return None
        return self.elapsed / finished * (self.total - finished)


@dataclass
class LabelSummary:
    """The outcome of :func:`label`."""

    out: Path
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    requested: int = 0
    retries: int = 0
    detections: int = 0
    annotations: int = 0
    warnings: int = 0
    elapsed: float = 0.0
    failures: list[dict] = field(default_factory=list)
    export_report: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every image succeeded."""
        return self.failed == 0


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


def _keys(images: Sequence[tuple[Path, Path]]) -> list[str]:
    """Unique output keys: the stem, or the relative path when stems collide."""
    stems = Counter(path.stem for path, _ in images)
    keys = []
    for path, root in images:
        if stems[path.stem] == 1:
            keys.append(path.stem)
        else:
            rel = path.relative_to(root).with_suffix("")
            keys.append("__".join(rel.parts))
    dup = [k for k, n in Counter(keys).items() if n > 1]
    if dup:
        raise InputError(f"two inputs map to the same output name {dup[0]!r}; rename one of them")
    return keys


def _file_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _find_replay(replay: Path, key: str, stem: str) -> Path | None:
    for name in dict.fromkeys((key, stem)):
        for suffix in (".json", ".txt"):
            candidate = replay / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_answer(path: Path) -> Any:
    """A replay/cache file: ``.json`` = full generateContent response, ``.txt`` = the model's text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read answer file {path}: {exc}") from exc
    if path.suffix == ".json":
        try:
            return load_response(text)
        except ParseError as exc:
            raise ParseError(f"answer file {path}: {exc}", snippet=exc.snippet) from exc
    return text


def label(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, task: str = "segment",
          replay: str | os.PathLike | None = None, client: Any = None,
          client_factory: Callable[[], Any] | None = None, prompt: str | None = None,
          classes: Sequence[str] | None = None, threshold: int = DEFAULT_THRESHOLD,
          concurrency: int = 4, rpm: float | None = None, polygons: bool = False,
          overlays: bool = True, on_image: Callable[[ImageResult], None] | None = None,
          on_progress: Callable[[Progress], None] | None = None) -> LabelSummary:
    """Label images and write COCO, overlays, raw responses and a failure report under ``out``.

    Args:
        inputs: image files and/or folders (searched recursively for jpg, jpeg, png, webp, bmp, heic).
        out: output folder (created).
        task: ``"detect"`` (boxes) or ``"segment"`` (boxes and masks).
        replay: a folder of recorded answers, ``<key>.json`` (full response) or ``<key>.txt`` (text), used
            instead of the API. Without it, answers come from ``OUT/responses`` or from the client.
        client: a :class:`visionkit.gemini.GeminiClient` (or anything with its ``annotate`` method).
        client_factory: builds the client on first need, so a run whose answers are all cached needs no
            API key. Ignored when ``client`` is given.
        prompt, classes: passed to the client; ``classes`` also fixes the COCO categories and their order.
        threshold: mask binarization threshold (0-255).
        concurrency: images processed at once (API requests in flight).
        rpm: maximum requests per minute sent to the API.
        polygons: write polygon segmentations instead of RLE.
        overlays: write ``OUT/overlays/<key>.png``.
        on_image: called (from the calling thread) with each image's :class:`ImageResult`.
        on_progress: called (from the calling thread) with a :class:`Progress` after each image.

    Returns:
        A :class:`LabelSummary`. One image's failure never stops the others; see ``failures``.
    """
    started = time.monotonic()
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if not 0 <= threshold <= 255:
        raise ConfigError(f"threshold must be in [0, 255], got {threshold}")
    out = Path(out)
    replay_dir = None if replay is None else Path(replay)
    if replay_dir is not None and not replay_dir.is_dir():
        raise InputError(f"replay folder {replay_dir} does not exist")
    images = imageio.iter_images(inputs)
    if not images:
        raise InputError("no images found in the inputs (looked for "
                         f"{', '.join(sorted(imageio.IMAGE_SUFFIXES))})")
    keys = _keys(images)
    try:
        for sub in ("overlays", "responses") if overlays else ("responses",):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create output folder {out}: {exc}") from exc

    limiter = RateLimiter(rpm)
    if replay_dir is None and client is None:
        missing = [k for k in keys if not (out / "responses" / f"{k}.json").is_file()]
        if missing:
            # Built up front, so a configuration error (no API key) stops the run before any work.
            if client_factory is None:
                raise ConfigError(f"{len(missing)} images have no saved answer and no Gemini client was "
                                  "given; pass a client, or replay recorded answers")
            client = client_factory()

    def get_client() -> Any:
        return client

    def work(index: int) -> tuple[ImageResult, dict | None]:
        path, root = images[index]
        return _process_one(path, _file_name(path, root), keys[index], out=out, replay=replay_dir,
                            task=task, get_client=get_client, limiter=limiter, prompt=prompt,
                            classes=classes, threshold=threshold, polygons=polygons, overlays=overlays)

    summary = LabelSummary(out=out, total=len(images))
    labels: Counter = Counter()
    report: Counter = Counter()
    offsets: dict[int, tuple[int, int]] = {}
    # The spool is an unlinked temp file: nothing is left behind, even after kill -9.
    with tempfile.TemporaryFile(dir=out) as spool, ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending = {}
        next_index = 0
        # Keep a bounded window of work in flight, so memory does not grow with the image count.
        while next_index < len(images) or pending:
            while next_index < len(images) and len(pending) < concurrency * 2:
                pending[pool.submit(work, next_index)] = next_index
                next_index += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                result, record = future.result()
                _account(summary, result)
                if record is not None:
                    labels.update(a["label"] for a in record["annotations"])
                    report.update(record.pop("report"))
                    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
                    offsets[index] = (spool.seek(0, os.SEEK_END), len(line))
                    spool.write(line)
                if on_image is not None:
                    on_image(result)
                if on_progress is not None:
                    on_progress(Progress(summary.total, summary.succeeded, summary.failed,
                                         summary.cached, summary.retries, time.monotonic() - started))
        spool.flush()
        _write_annotations(out / "annotations.json", spool, offsets, labels, report, classes, summary)
    summary.failures.sort(key=lambda f: f["file"])
    write_json_atomic(out / "failures.json", summary.failures, indent=2)
    summary.elapsed = time.monotonic() - started
    return summary


def _account(summary: LabelSummary, result: ImageResult) -> None:
    summary.warnings += len(result.warnings)
    summary.retries += max(result.attempts - 1, 0)
    summary.cached += result.source == "cache"
    summary.requested += result.source == "api"
    if result.ok:
        summary.succeeded += 1
        summary.detections += result.detections
    else:
        summary.failed += 1
        summary.failures.append({"file": result.file, "key": result.key, "stage": result.stage,
                                 "error": result.error, "reason": result.reason})


def _process_one(path: Path, file_name: str, key: str, *, out: Path, replay: Path | None, task: str,
                 get_client: Callable[[], Any], limiter: RateLimiter, prompt: str | None,
                 classes: Sequence[str] | None, threshold: int, polygons: bool, overlays: bool
                 ) -> tuple[ImageResult, dict | None]:
    """Answer -> detections -> annotations (+ overlay) for one image. Never raises VisionkitError."""
    stage, source, attempts = "answer", "", 0
    try:
        cache = out / "responses" / f"{key}.json"
        if replay is not None:
            found = _find_replay(replay, key, path.stem)
            if found is None:
                raise InputError(f"no replay answer for {file_name}: looked for {key}.json and {key}.txt "
                                 f"in {replay}")
            answer, source = _read_answer(found), "replay"
        elif cache.is_file():
            answer, source = _read_answer(cache), "cache"
        else:
            limiter.acquire()
            result = get_client().annotate(path, task, prompt=prompt, classes=classes)
            answer, source, attempts = result.response, "api", result.attempts
            try:
                answer_text(answer)
            except (BlockedError, EmptyResponseError):
                pass  # not saved: a rerun may get a real answer
            else:
                # Saved even when it will not parse: re-parsing later must not pay for the API again.
                write_json_atomic(cache, answer)
        # The image is decoded again here rather than held through the request: with many requests in
        # flight, holding full-size images would cost far more memory than the second decode costs time.
        stage = "image"
        rgb = imageio.read_rgb(path) if overlays else None
        size_wh = (rgb.shape[1], rgb.shape[0]) if rgb is not None else imageio.image_size(path)
        stage = "parse"
        dets = parse_response(answer, size_wh, threshold, masks=(task == "segment"))
        stage = "export"
        report: Counter = Counter()
        anns = image_annotations(dets, polygons=polygons, report=report)
        if rgb is not None:
            from .overlay import draw_overlay

            imageio.write_png_atomic(out / "overlays" / f"{key}.png", draw_overlay(rgb, dets))
    except VisionkitError as exc:
        return ImageResult(file_name, key, False, source, attempts=attempts, stage=stage,
                           error=type(exc).__name__, reason=str(exc)), None
    except Exception as exc:  # a bug must not stop the other images; it is reported as such
        return ImageResult(file_name, key, False, source, attempts=attempts, stage=stage,
                           error=type(exc).__name__,
                           reason=f"internal error (please report it): {exc!r}"), None
    record = {"file_name": file_name, "width": size_wh[0], "height": size_wh[1], "annotations": anns,
              "report": dict(report)}
    return ImageResult(file_name, key, True, source, detections=len(dets), warnings=dets.warnings,
                       attempts=attempts), record


def _write_annotations(path: Path, spool, offsets: dict[int, tuple[int, int]], labels: Counter,
                       report: Counter, classes: Sequence[str] | None, summary: LabelSummary) -> None:
    """Stream the COCO file from the spool, images in input order, atomically."""
    cats = CategoryMap(list(classes) if classes else None).fit(labels.elements())
    unmapped: Counter = Counter()
    order = sorted(offsets)

    def records() -> Iterable[dict]:
        for index in order:
            start, size = offsets[index]
            spool.seek(start)
            yield json.loads(spool.read(size))

    images = []
    for image_id, record in enumerate(records(), start=1):
        images.append({"id": image_id, "file_name": record["file_name"], "width": record["width"],
                       "height": record["height"]})
    head = assemble(images, [], cats, report, Counter(), None)
    with atomic_open(path) as fh:
        fh.write("{")
        for key in ("licenses", "images", "categories"):
            fh.write(f"{json.dumps(key)}: {json.dumps(head[key], ensure_ascii=False)}, ")
        fh.write('"annotations": [')
        ann_id = 0
        for image_id, record in enumerate(records(), start=1):
            for ann in record["annotations"]:
                done = finish_annotation(ann, image_id, ann_id + 1, cats, unmapped)
                if done is None:
                    continue
                fh.write(("," if ann_id else "") + json.dumps(done, ensure_ascii=False))
                ann_id += 1
        # info last: it carries the report, known only once every annotation was mapped.
        info = assemble([], [], cats, report, unmapped, None)["info"]
        fh.write(f'], "info": {json.dumps(info, ensure_ascii=False)}}}')
    summary.annotations = ann_id
    summary.export_report = info["visionkit"]
