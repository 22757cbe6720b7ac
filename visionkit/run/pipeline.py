"""Label many images: answers (replayed, cached or requested) -> COCO + overlays, streamed to disk.

Output folder layout::

    OUT/annotations.json     COCO for every image that succeeded (written atomically, at the end)
    OUT/overlays/<key>.jpg   one overlay per image that succeeded (.png or .webp with overlay_format)
    OUT/responses/<key>.json the raw API response of each image (online mode), written atomically as it
                             arrives; blocked and empty answers are not kept, so a rerun asks again
    OUT/failures.json        [{file, key, stage, error, reason}] for every image that failed, and (stage
                             "overlay") every overlay that could not be written: that image's
                             annotations are kept
    OUT/keys.json            {file_name: key}, recorded before any image is processed
    OUT/warnings.json        every image's warnings (see :mod:`visionkit.run.warnings`)
    OUT/annotations.previous.json   the previous annotations.json, when the new one lost images
    OUT/sources.json         {"images": {file_name: absolute path}}: where each input image is, so
                             ``visionkit export`` can copy the images into a dataset folder
    OUT/keypoints.json       pointing answers as COCO keypoints (only when some answer had points)

``<key>`` is the image's file stem, or its relative path joined by ``__`` when another image shares the
stem; once recorded in ``keys.json`` it never changes, so a folder can grow (see :mod:`visionkit.run.keys`).
Inputs under ``OUT`` and other visionkit output folders are skipped (see :mod:`visionkit.run.inputs`). A
rerun never replaces ``annotations.json`` with a worse one silently (see :mod:`visionkit.run.outdir`).

Resuming: an image whose saved response fits the request (see :mod:`visionkit.run.answer_source`) is not
requested
again, so rerunning the same command after an interruption (even ``kill -9``) only asks for the images not
yet answered. ``annotations.json`` is rebuilt from all answers, so it equals the one an uninterrupted run
writes. Ctrl-C drops the queued work at once. A failure that would repeat for every image (a bad key, an
unknown model, a daily quota) stops the run instead of sending more doomed requests.

Memory stays flat in the number of images: each image's annotations go to a spool file as soon as it
is done, and ``annotations.json`` is streamed from it.

This module runs the images (the bounded window of work, the thread or process pool, resuming, the
output lock, progress and Ctrl-C); what happens to one image is :mod:`visionkit.run.image_step`, the files
written at the end are :mod:`visionkit.run.outputs`, and what the run reports is :mod:`visionkit.run.summary`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..core.masks import DEFAULT_THRESHOLD
from ..core.tasks import check_task
from ..draw.overlay_files import DEFAULT_OVERLAY_FORMAT, DEFAULT_OVERLAY_MAX_SIDE, check_overlay_options
from ..errors import ConfigError, ExportError, InputError
from ..formats.coco import CategoryMap, check_polygon_holes
from ..media.atomic import FolderSync
from .answer_source import AnswerSource, RateLimiter, ResponseStore
from .image_step import ImageResult, StepConfig, init_step, offline_step, process_one, replay_answer
from .inputs import find_inputs, no_images_error
from .keys import record_keys, run_keys, stem_owners
from .model_check import answer_note, start_model
from .outdir import prepare_output
from .outputs import export, save_unsaved, write_annotations, write_failures, write_keypoints, write_sources
from .procpool import BrokenProcessPool, RestartingPool, usable_cpus
from .results import ResultCache
from .spool import Records, Spool
from .summary import LabelSummary, Progress
from .usage import write_usage
from .warnings import WarningLog

__all__ = ["PROCESS_MIN_IMAGES", "Aborted", "ImageResult", "LabelSummary", "Progress", "RateLimiter",
           "StepConfig", "label"]

#: Offline runs with at least this many images use a process pool by default (below it, starting the
#: workers costs more than they save).
PROCESS_MIN_IMAGES = 16


def label(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, task: str = "segment",
          replay: str | os.PathLike | None = None, client: Any = None,
          client_factory: Callable[[], Any] | None = None, prompt: str | None = None,
          classes: Sequence[str] | None = None, threshold: int = DEFAULT_THRESHOLD,
          concurrency: int = 4, rpm: float | None = None, polygons: bool = False,
          overlays: bool = True, overlay_format: str = DEFAULT_OVERLAY_FORMAT,
          overlay_max_side: int | None = DEFAULT_OVERLAY_MAX_SIDE, dedupe: float | None = None,
          on_image: Callable[[ImageResult], None] | None = None,
          on_progress: Callable[[Progress], None] | None = None, polygon_holes: str = "rle",
          categories: Sequence[str | Mapping] | None = None, glob: Sequence[str] = (),
          exclude: Sequence[str] = (), limit: int | None = None,
          on_notice: Callable[[str], None] | None = None,
          on_interrupt: Callable[[int], None] | None = None, processes: bool | None = None,
          reask: bool = True, prices: tuple[float, float] | None = None,
          refresh_models: bool = False) -> LabelSummary:
    """Label images and write COCO, overlays, raw responses and a failure report under ``out``.

    Args:
        inputs: image files and/or folders (searched recursively for jpg, jpeg, png, webp, bmp, tif, gif,
            heic).
        out: output folder (created).
        task: ``"detect"`` (boxes) or ``"segment"`` (boxes and masks).
        replay: a folder of recorded answers, ``<key>.json`` (full response) or ``<key>.txt`` (text), used
            instead of the API. Without it, answers come from ``OUT/responses`` or from the client.
        client: a :class:`visionkit.gemini.GeminiClient` (or anything with its ``annotate`` method).
        client_factory: builds the client when ``client`` is None (online mode only); a client built this
            way is closed at the end.
        prompt, classes: passed to the client; ``classes`` also fixes the COCO categories and their order.
        threshold: mask binarization threshold (0-255).
        concurrency: images processed at once (API requests in flight).
        rpm: maximum requests per minute sent to the API.
        polygons: write polygon segmentations instead of RLE.
        polygon_holes: with ``polygons``, a mask with holes stays RLE (``"rle"``) or is written with its
            holes filled (``"fill"``); see :mod:`visionkit.formats.coco`.
        categories: the COCO categories (names, or ``{id, name}`` dicts, e.g. from
            :func:`visionkit.formats.coco.load_categories`), so ids stay the same across runs; overrides the
            categories ``classes`` would fix. Labels outside it are dropped and reported.
        overlays: write ``OUT/overlays/<key>.<format>``.
        overlay_format: ``"jpg"`` (default), ``"png"`` or ``"webp"`` (see
        :mod:`visionkit.draw.overlay_files`).
        overlay_max_side: overlays are drawn on the image shrunk so its longest side is at most this
            (default 2048; None or 0: full size).
        dedupe: drop near-duplicates within each image at this IoU (see :mod:`visionkit.core.dedupe`).
        on_image: called (from the calling thread) with each image's :class:`ImageResult`.
        on_progress: called (from the calling thread) with a :class:`Progress` after each image.
        glob, exclude, limit: input filters (see :mod:`visionkit.run.inputs`); output folders found among the
            inputs are always skipped.
        on_interrupt: called at once on Ctrl-C with the number of requests in flight; the run then waits
            for them (their answers are saved) and raises KeyboardInterrupt. A second Ctrl-C while
            waiting raises :class:`Aborted` without waiting.
        on_notice: called with each notice (skipped inputs, ...) as soon as it is known; notices are also
            in ``LabelSummary.notices``.
        reask: ask once more with the polygon prompt when a segmentation answer's masks do not decode
            (see :mod:`visionkit.run.reask`); both requests count in the usage.
        prices: ``(USD per 1M input tokens, USD per 1M output tokens)``: ``OUT/usage.json`` then holds the
            run's cost too (see :mod:`visionkit.core.usage`).
        refresh_models: ignore the per-user model cache (:mod:`visionkit.run.model_check`).
        processes: run the offline (replay) step on a pool of ``min(concurrency, CPUs)`` processes
            (see :mod:`visionkit.run.procpool`). None (default): when replaying at least
            :data:`PROCESS_MIN_IMAGES` images on 2 or more CPUs. The online path always uses threads.

    Returns:
        A :class:`LabelSummary`. One image's failure never stops the others, except a failure that will
        hit every image (bad key, unknown model, daily quota): then the run stops, and the images not
        attempted are listed as such in ``failures``.

    Raises:
        ConfigError, InputError, ExportError: before any image is processed (bad options, no images,
        no client, an output folder that cannot be written).
    """
    started = time.monotonic()
    check_task(task)
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if not 0 <= threshold <= 255:
        raise ConfigError(f"threshold must be in [0, 255], got {threshold}")
    check_overlay_options(overlay_format, overlay_max_side)
    if dedupe is not None and not 0 < dedupe <= 1:
        raise ConfigError(f"dedupe IoU must be in (0, 1], got {dedupe}")
    check_polygon_holes(polygon_holes)
    fixed = list(categories) if categories is not None else (list(classes) if classes else None)
    categories = CategoryMap(fixed)  # a bad class list fails now, not at the end
    out = Path(out)
    replay_dir = None if replay is None else Path(replay)
    if replay_dir is not None and not replay_dir.is_dir():
        raise InputError(f"replay folder {replay_dir} does not exist")
    found = find_inputs(inputs, out, glob=glob, exclude=exclude, limit=limit)
    images = found.images
    if not images:
        raise no_images_error(found)
    # paid answers: each file fsynced as it is saved, their folders every second and at the end (see
    # docs/reliability.md)
    store = ResponseStore(out / "responses", FolderSync())
    if replay_dir is None and client is None and client_factory is None:
        raise ConfigError("online labeling needs a Gemini client; to label from recorded answers "
                          "without one, pass replay (for example OUT/responses)")

    summary = LabelSummary(out=out, total=len(images))
    warning_log = WarningLog()  # OUT/warnings.json, for visionkit report
    for notice in found.notices:
        _notify(summary, on_notice, notice)
    aborted = False
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(store.folders.close)  # last: after the pool's requests in flight are saved
        if replay_dir is None and client is None:
            client = client_factory()  # before anything is written: no API key stops the run here
            cleanup.callback(client.close)
        if replay_dir is None:  # the key and the model, checked before anything is sent or written
            for notice in start_model(client, task, summary, refresh=refresh_models):
                _notify(summary, on_notice, notice)
        spool = prepare_output(out, cleanup, lambda n: _notify(summary, on_notice, n), overlays=overlays,
                               online=replay_dir is None)
        keys, known_keys = run_keys(images, out, store.owner)
        names = images.names  # each image's file_name
        record_keys(out, names, keys, known_keys)
        del known_keys  # the recorded map: not needed again (a million entries would stay for nothing)
        source = AnswerSource(replay_dir, store, client, RateLimiter(rpm), task, prompt, classes,
                              stem_owners=stem_owners(images, keys), reask=reask)
        step = StepConfig(out=out, task=task, threshold=threshold, polygons=polygons,
                          overlay=(overlay_format, overlay_max_side) if overlays else None, dedupe=dedupe,
                          polygon_holes=polygon_holes)
        workers = min(concurrency, usable_cpus())
        # A client that never sends a request (a batch run's collected answers) is offline too.
        answers_only = getattr(client, "answers_only", False) is True
        offline = replay_dir is not None or answers_only
        if processes is None:
            processes = offline and len(images) >= PROCESS_MIN_IMAGES and workers >= 2
        if processes and offline:
            if overlays:  # imported once here, so forked workers inherit it instead of each importing it
                from ..draw import overlay  # noqa: F401
            pool = RestartingPool(max(workers, 1), init_step, (step,))
            window = max(concurrency, workers) * 2
        else:
            pool = ThreadPoolExecutor(max_workers=concurrency)
            window = concurrency * 2
        cleanup.callback(lambda: pool.shutdown(wait=not aborted))
        cache = cleanup.enter_context(contextlib.closing(  # a batch run's results are kept apart (usage)
            ResultCache(out, {**step.options(), "answers_only": answers_only}, step.overlay)))
        try:
            _run(images, names, keys, pool, window, source, spool, summary, categories, started, step, cache,
                 on_image=warning_log.wrap(on_image), on_progress=on_progress, fixed_categories=fixed,
                 on_interrupt=on_interrupt, on_notice=on_notice)
        except BaseException as exc:
            # Ctrl-C or a crash: drop queued work at once rather than pay for it; requests in flight end,
            # unless the run was aborted (a second Ctrl-C): then nothing waits for them.
            aborted = isinstance(exc, Aborted)
            pool.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, KeyboardInterrupt) and not aborted:
                source.retry_unsaved()  # answers held in memory get a last chance to reach the disk
            raise
        summary.reused = cache.hits
        save_unsaved(source, summary, lambda n: _notify(summary, on_notice, n))
        write_failures(out / "failures.json", summary)
        if replay_dir is None:
            export(summary, "usage.json", write_usage, out / "usage.json", summary, client, prices)
        warning_log.save(out, summary.export_errors)
    summary.elapsed = time.monotonic() - started
    return summary


def _run(images: list[tuple[Path, Path]], names: list[str], keys: list[str],
         pool: ThreadPoolExecutor | RestartingPool, window: int, source: AnswerSource, spool: Spool,
         summary: LabelSummary, categories: CategoryMap,
         started: float, step: StepConfig, cache: ResultCache, *,
         on_image: Callable[[ImageResult], None] | None,
         on_progress: Callable[[Progress], None] | None, fixed_categories: list | None = None,
         on_interrupt: Callable[[int], None] | None = None,
         on_notice: Callable[[str], None] | None = None) -> None:
    """Process every image on ``pool``, spool the results, then write ``annotations.json``."""
    labels: Counter = Counter()
    report: Counter = Counter()
    records = Records(spool, names)
    out = step.out
    in_process = isinstance(pool, RestartingPool)
    # Images in flight when a worker died: each is retried ALONE, so the one that kills its worker is
    # told apart from those that only shared the pool with it.
    suspects: list[int] = []
    alone: int | None = None

    def work(index: int) -> tuple[ImageResult, dict | None]:
        path, root = images[index]
        return process_one(images[index][0], names[index], keys[index], source=source,
                            **step.kwargs())

    answers: dict[int, Path | None] = {}  # the answer file of each image in flight

    def submit(index: int) -> Future:
        path, file_name = images[index][0], names[index]
        found = answers[index] = source.answer_file(path, file_name, keys[index])
        kept = cache.lookup(keys[index], file_name, path, found)  # an unchanged image is not redone
        if kept is not None:
            origin = "replay" if source.replay else "cache"
            return _done(cache.kept_result(kept[0], file_name, origin), kept)
        if not in_process:
            return pool.submit(work, index)
        if found is None and source.replay is None:  # no saved answer: the client says why (a batch error)
            return _done(*work(index))
        answer = replay_answer(source, path, file_name, keys[index], found)
        return pool.submit(offline_step, path, file_name, keys[index], answer)

    def progress() -> None:
        if on_progress is not None:
            on_progress(Progress(summary.total, summary.succeeded, summary.failed, summary.cached,
                                 summary.retries, time.monotonic() - started,
                                 in_flight=sum(f.running() for f in pending)))

    pending: dict = {}
    next_index = 0
    not_attempted: list[int] = []
    progress()  # the bar shows before the first image finishes
    try:
        # A bounded window of work in flight, so memory does not grow with the image count.
        while next_index < len(images) or pending or suspects:
            if suspects and not pending and summary.stopped is None:
                alone = suspects.pop(0)
                pending[submit(alone)] = alone
            while (summary.stopped is None and not suspects and alone is None and next_index < len(images)
                   and len(pending) < window):
                pending[submit(next_index)] = next_index
                next_index += 1
            if suspects and summary.stopped is not None:
                not_attempted.extend(suspects)
                suspects.clear()
            if not pending:
                break
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if not finished:
                progress()  # time passes, and requests start: keep the bar (ETA, in flight) current
            for future in finished:
                index = pending.pop(future)
                if future.cancelled():
                    not_attempted.append(index)
                    continue
                if in_process and isinstance(future.exception(), BrokenProcessPool):
                    pool.restart()
                    if index != alone:
                        suspects.append(index)
                        continue
                    alone = None
                    result, record = ImageResult(
                        names[index], keys[index], False, "replay", stage="worker",
                        error="WorkerDied", reason="the worker process labelling this image died, also when "
                        "it was the only image in flight (out of memory, or a crash in native code)"), None
                else:
                    if index == alone:
                        alone = None
                    result, record = future.result()
                summary.add(result)
                if routed := answer_note(summary, result):  # modelVersion names another model
                    _notify(summary, on_notice, routed)
                if result.fatal and summary.stopped is None:
                    summary.stopped = f"{result.file}: {result.error}: {result.reason}"
                    for other in pending:
                        other.cancel()  # queued work is dropped; requests in flight finish
                found = answers.pop(index, None)
                if record is not None:
                    path = images[index][0] if isinstance(record, dict) else None  # None: kept as it was
                    if result.source == "api":  # the answer was asked for in this run: where it was saved
                        found = source.answer_file(path, result.file, result.key)
                    line, head = cache.spool_line(result, record, path, found)
                    labels.update(head["labels"])
                    report.update(head["report"])
                    records.add(index, line, *head["wh"], head["points"])
                    if spool.fallback and spool.fallback not in summary.notices:
                        _notify(summary, on_notice, spool.fallback)
                if on_image is not None:
                    on_image(result)
                progress()
    except KeyboardInterrupt:
        _finish_in_flight(pending, on_interrupt)
        raise
    for index in sorted(not_attempted + list(range(next_index, len(images)))):
        summary.add(ImageResult(
            names[index], keys[index], False, "", stage="not attempted", error="Stopped",
            reason=f"the run stopped after a failure that would repeat for every image ({summary.stopped})"))
    spool.flush()
    export(summary, "annotations.json", write_annotations, out / "annotations.json", records, labels, report,
           categories, summary)
    if summary.kept_previous is None:  # else the previous dataset's companions stay with it
        export(summary, "sources.json", write_sources, out / "sources.json", images, names)
        export(summary, "keypoints.json", write_keypoints, out / "keypoints.json", records, fixed_categories,
               summary)
    if records:  # kept for the next run (a run where nothing succeeded keeps the previous results)
        with contextlib.suppress(ExportError, OSError):
            cache.save(records.line(i) for i in records.indices())


def _done(result: ImageResult, record: dict | tuple | None) -> Future:
    """A future that is already done: an image finished without the pool."""
    future: Future = Future()
    future.set_result((result, record))
    return future


class Aborted(KeyboardInterrupt):
    """A second Ctrl-C: the requests in flight were abandoned (``in_flight`` of them)."""

    def __init__(self, in_flight: int):
        super().__init__(f"aborted with {in_flight} requests in flight")
        self.in_flight = in_flight


def _finish_in_flight(pending: dict, on_interrupt: Callable[[int], None] | None) -> None:
    """After a first Ctrl-C: drop the queued work, say how many requests are in flight, and wait for them
    (their answers are saved as they arrive). A second Ctrl-C raises :class:`Aborted`."""
    for future in pending:
        future.cancel()
    running = [f for f in pending if not f.done()]
    if on_interrupt is not None:
        on_interrupt(len(running))
    try:
        wait(running)
    except KeyboardInterrupt:
        raise Aborted(sum(not f.done() for f in running)) from None


def _notify(summary: LabelSummary, on_notice: Callable[[str], None] | None, notice: str) -> None:
    summary.notices.append(notice)
    if on_notice is not None:
        on_notice(notice)
