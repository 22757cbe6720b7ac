"""(Re)draw the overlays of a finished label run from its saved answers, so ``--no-overlays`` (or another
format or size) costs nothing to undo: no request is sent and ``annotations.json`` is not touched.

The run folder says where everything is: ``sources.json`` (each image's path), ``keys.json`` (each
image's key) and ``responses/<key>.json`` (the answers of an online run). A run made from recorded
answers (``--replay``) kept them elsewhere: pass the same folder as ``replay``. The answers are parsed
with ``threshold`` and ``dedupe`` as given, so pass the values the run used to draw what it labelled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..core.masks import DEFAULT_THRESHOLD
from ..core.tasks import check_task
from ..draw.overlay_files import DEFAULT_OVERLAY_FORMAT, DEFAULT_OVERLAY_MAX_SIDE, check_overlay_options
from ..errors import ConfigError, InputError
from ..media.filekind import read_regular_text
from ..media.paths import check_name
from .answer_source import AnswerSource, RateLimiter, ResponseStore
from .image_step import ImageResult, StepConfig, init_step, offline_step, process_one, replay_answer
from .keys import load_key_map
from .outdir import lock_output
from .pipeline import PROCESS_MIN_IMAGES
from .procpool import RestartingPool, usable_cpus

__all__ = ["RedrawSummary", "redraw_overlays"]


@dataclass
class RedrawSummary:
    """The outcome of :func:`redraw_overlays`: ``failures`` lists ``{file, key, error, reason}``."""

    out: Path
    total: int = 0
    drawn: int = 0
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


_SOURCES = 'the run\'s record of its images, a JSON file {"images": {file_name: path}}'


def _sources(out: Path) -> dict[str, Path]:
    path = out / "sources.json"
    try:
        data = json.loads(read_regular_text(path, expected=_SOURCES))
        images = {str(name): Path(p) for name, p in data["images"].items()}
    except FileNotFoundError:
        raise InputError(f"{out} is not a finished label run: {path} is missing (run visionkit label "
                         "first; overlays are drawn from its record of the images)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read {path}: expected {{\"images\": {{file_name: path}}}} ({exc})") from exc
    for name in images:  # names relative to the input folder, as `label` wrote them
        check_name(name, file=path, field=f"images[{name!r}]")
    return images


def redraw_overlays(out: str | os.PathLike, *, replay: str | os.PathLike | None = None,
                    task: str = "segment", threshold: int = DEFAULT_THRESHOLD, dedupe: float | None = None,
                    overlay_format: str = DEFAULT_OVERLAY_FORMAT,
                    overlay_max_side: int | None = DEFAULT_OVERLAY_MAX_SIDE, concurrency: int = 4,
                    processes: bool | None = None,
                    on_image: Callable[[ImageResult], None] | None = None) -> RedrawSummary:
    """Write ``out/overlays/<key>.<format>`` for every image of the run in ``out`` that has an answer.

    ``task`` is the run's task: with ``"detect"``, masks an answer may hold are not drawn, as the run did
    not use them. The run's folder lock is held while drawing, so a label run cannot write beside it.

    Raises:
        InputError: ``out`` is not a finished run, or the answers folder is missing.
        ConfigError: a bad option.
    """
    out = Path(out)
    check_task(task)
    check_overlay_options(overlay_format, overlay_max_side)
    if not 0 <= threshold <= 255:
        raise ConfigError(f"threshold must be in [0, 255], got {threshold}")
    if dedupe is not None and not 0 < dedupe <= 1:
        raise ConfigError(f"dedupe IoU must be in (0, 1], got {dedupe}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    sources = _sources(out)
    keys = load_key_map(out) or {}
    answers = Path(replay) if replay is not None else out / "responses"
    if not answers.is_dir():
        raise InputError(f"no answers folder {answers}: a run made with --replay kept its answers there; "
                         "pass the same folder with --replay")
    owners: dict[str, list] = {}
    items = []
    for name, path in sources.items():
        key = keys.get(name) or Path(name).stem
        owners.setdefault(path.stem.casefold(), []).append((name, key))
        items.append((name, path, key))
    source = AnswerSource(answers, ResponseStore(out / "responses"), None, RateLimiter(None), task,
                          None, None, stem_owners=owners)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    with lock_output(out):
        step = StepConfig(out=out, task=task, threshold=threshold, polygons=False,
                          overlay=(overlay_format, overlay_max_side), dedupe=dedupe)
        return _redraw(out, items, source, step, concurrency, processes, on_image)


def _redraw(out: Path, items: list, source: AnswerSource, step: StepConfig, concurrency: int,
            processes: bool | None, on_image: Callable[[ImageResult], None] | None) -> RedrawSummary:
    summary = RedrawSummary(out=out, total=len(items))

    def job(item):
        name, path, key = item
        return path, name, key, replay_answer(source, path, name, key)

    workers = min(concurrency, usable_cpus())
    if processes is None:
        processes = len(items) >= PROCESS_MIN_IMAGES and workers >= 2
    if processes:
        pool = RestartingPool(max(workers, 1), init_step, (step,))
        run = offline_step
    else:
        pool = ThreadPoolExecutor(max_workers=concurrency)

        def run(path, name, key, found):
            return process_one(path, name, key, source=found, **step.kwargs())
    try:
        pending: dict = {}
        todo = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < max(concurrency, workers) * 2:
                item = next(todo, None)
                if item is None:
                    exhausted = True
                    break
                pending[pool.submit(run, *job(item))] = item
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                name, _, key = pending.pop(future)
                try:
                    result, _ = future.result()
                except Exception as exc:  # a worker that died
                    result = ImageResult(name, key, False, "replay", stage="worker", error=type(exc).__name__,
                                         reason=f"the worker process drawing this overlay failed: {exc}")
                reason = result.reason if not result.ok else result.overlay_error
                if reason:
                    summary.failures.append({"file": name, "key": key,
                                             "error": result.error or "ExportError", "reason": reason})
                else:
                    summary.drawn += 1
                if on_image is not None:
                    on_image(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    summary.failures.sort(key=lambda f: f["file"])
    return summary
