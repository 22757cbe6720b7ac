"""The per-image step of a label run: read the image, get its answer (asked, cached or replayed), parse it,
build its annotations and draw its overlay. One image at a time, never raising: what happened is returned
as an :class:`ImageResult`, with the image's record for ``annotations.json``.

:mod:`visionkit.run.pipeline` runs this step for many images (on threads, or on worker processes through
:func:`init_step` and :func:`offline_step`); :mod:`visionkit.run.redraw` runs it to redraw a run's overlays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..answers.parse import parse_response
from ..core.detections import ParseWarning
from ..draw.overlay_files import OVERLAY_FORMATS, write_overlay
from ..errors import AuthError, BadRequestError, InputError, NotFoundError, RateLimitError, VisionkitError
from ..formats.coco import image_annotations
from ..formats.keypoints import point_annotations
from ..media import imageio
from ..media.jpegcheck import ends_with_eoi, jpeg_damage
from .answer_source import AnswerSource, read_answer
from .reask import reuse_parse, saved_meta
from .usage import answer_usage

__all__ = ["ImageResult", "ReplayAnswer", "StepConfig", "init_step", "offline_step", "process_one",
           "replay_answer"]


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
    fatal: bool = False
    overlay_error: str = ""  # set when the image succeeded but its overlay could not be drawn or written
    usage: dict | None = None  # tokens this image's requests used in this run (online and batch answers)
    reasked: bool = False  # its masks did not decode and it was asked again with the polygon prompt
    model_version: str | None = None  # the answer's modelVersion: the model that really answered
    rotated: bool = False  # its file has an EXIF orientation: stored pixels are not upright


@dataclass(frozen=True)
class StepConfig:
    """Everything the per-image step needs besides the image and its answer. Picklable: it is sent to
    each worker process once (see :func:`init_step`)."""

    out: Path
    task: str
    threshold: int
    polygons: bool
    overlay: tuple[str, int | None] | None  # (format, max_side), or None for no overlay
    dedupe: float | None = None
    polygon_holes: str = "rle"

    def options(self) -> dict:
        """The options that shape an image's annotations (see :mod:`visionkit.run.results`)."""
        return {"task": self.task, "threshold": self.threshold, "polygons": self.polygons,
                "polygon_holes": self.polygon_holes, "dedupe": self.dedupe}

    def kwargs(self) -> dict:
        return {"out": self.out, "task": self.task, "threshold": self.threshold, "polygons": self.polygons,
                "overlay": self.overlay, "dedupe": self.dedupe, "polygon_holes": self.polygon_holes}


@dataclass(frozen=True)
class ReplayAnswer:
    """One image's answer file, found by the parent (which knows every image's stem, and checked that a
    saved response fits the request), read by a worker: a replay file, or with ``replay`` None a response
    saved in ``OUT/responses`` (a batch run's collected answers)."""

    replay: Path | None
    found: Path | None
    error: str = ""
    batch: bool = False  # the run's client answers from batch jobs only: their answers are "batch"

    def get(self, path: Path, file_name: str, key: str, size_wh: tuple[int, int] | None = None
            ) -> tuple[Any, str, int, str | None]:
        if self.found is None:
            raise InputError(self.error)
        answer = read_answer(self.found)
        if self.replay is not None:
            return answer, "replay", 0, None
        # as AnswerSource.get: an answer a batch job saved is billed to this --batch run
        return answer, "batch" if self.batch and saved_meta(answer).get("batch") else "cache", 0, None


def replay_answer(source: AnswerSource, path: Path, file_name: str, key: str, found: Path | None = None
                  ) -> ReplayAnswer:
    """Find one image's replay file in ``source.replay`` for a worker (``found``: the parent found it, or
    the saved response that fits); a missing one is reported when the worker asks for the answer, so the
    image fails at the "answer" stage."""
    if found is not None:
        return ReplayAnswer(source.replay, found, batch=bool(getattr(source.client, "answers_only", False)))
    try:
        return ReplayAnswer(source.replay, source.replay_file(path, file_name, key))
    except InputError as exc:
        return ReplayAnswer(source.replay, None, str(exc))


_STEP: list[StepConfig] = []  # set once in each worker process


def init_step(step: StepConfig) -> None:
    """The worker processes' initializer: keep the run's :class:`StepConfig`."""
    _STEP[:] = [step]


def offline_step(path: Path, file_name: str, key: str, answer: ReplayAnswer
                 ) -> tuple[ImageResult, dict | None]:
    """The per-image step in a worker process; all inputs are explicit and picklable."""
    return process_one(path, file_name, key, source=answer, **_STEP[0].kwargs())


def _is_fatal(exc: BaseException) -> bool:
    """Failures that would repeat for every image: a bad or unauthorised key, an unknown model, a daily
    quota. Going on would only send more doomed (and possibly billed) requests."""
    if isinstance(exc, (AuthError, NotFoundError)):
        return True
    if isinstance(exc, RateLimitError):
        return exc.per_day
    return isinstance(exc, BadRequestError) and "api key" in (exc.api_message or "").lower()


def process_one(path: Path, file_name: str, key: str, *, source: AnswerSource, out: Path, task: str,
                threshold: int, polygons: bool, overlay: tuple[str, int | None] | None,
                dedupe: float | None = None, polygon_holes: str = "rle"
                ) -> tuple[ImageResult, dict | None]:
    """Answer -> detections -> annotations (+ overlay) for one image. Never raises an Exception.

    ``overlay`` is ``(format, max_side)``, or None for no overlay. An overlay that cannot be drawn or
    written does not fail the image: its annotations are kept, and the result carries ``overlay_error``.
    """
    stage, origin, attempts, usage, reasked, version = "image", "", 0, None, False, None
    try:
        # The image first, in every mode: one that cannot be read (a FIFO, a link loop, a broken file)
        # fails here, before an answer is asked for, and the same way whether it would be replayed or paid.
        *size_wh, orientation = imageio.image_header(path)  # header only: pixels are decoded for the overlay
        size_wh = tuple(size_wh)
        large = imageio.large_image_note(size_wh)
        # libjpeg's complaints: from the overlay's decode when one is drawn (no decode just for the check);
        # a JPEG cut short (no EOI), which may not decode at all, is checked here, before it is paid for
        late_check = overlay is not None and ends_with_eoi(path)
        damage = None if late_check else _jpeg_damage(path)
        stage = "answer"
        origin = "api" if source.replay is None else "replay"
        answer, origin, attempts, note = source.get(path, file_name, key, size_wh=size_wh)
        meta = saved_meta(answer)  # what visionkit noted beside the answer: usage, mask order
        if origin in ("api", "batch"):
            usage = answer_usage(answer)
            reasked = bool(meta.get("reasked"))
            version = answer.get("modelVersion") if isinstance(answer, dict) else None
        stage = "parse"
        order = meta.get("maskOrder") if meta.get("maskOrder") in ("yx", "xy") else None
        with_masks = task == "segment" and meta.get("maskFormat") != "none"
        # a fresh answer was parsed already by the re-ask check: that parse is used when it fits
        dets = reuse_parse(answer, size_wh, threshold, order, with_masks)
        if dets is None:
            dets = parse_response(answer, size_wh, threshold, mask_order=order, masks=with_masks)
        if dedupe is not None:  # near-duplicates out before export and overlay
            from ..core.dedupe import dedupe as drop_duplicates

            dets = drop_duplicates(dets, dedupe)
        stage = "export"
        report: Counter = Counter()
        anns = image_annotations(dets, polygons=polygons, polygon_holes=polygon_holes, report=report)
        points = point_annotations(dets)
    except VisionkitError as exc:
        if origin == "api" and stage == "answer":
            attempts = getattr(exc, "attempts", 1)
            origin = origin if attempts else ""  # nothing was sent (a batch run's unanswered image)
        elif origin == "api":
            origin = "cache" if attempts == 0 else origin
        return ImageResult(file_name, key, False, origin, attempts=attempts, stage=stage,
                           error=type(exc).__name__, reason=str(exc), fatal=_is_fatal(exc), usage=usage,
                           reasked=reasked, model_version=version), None
    except Exception as exc:  # a bug must not stop the other images; it is reported as such
        return ImageResult(file_name, key, False, origin, attempts=attempts, stage=stage,
                           error=type(exc).__name__, usage=usage, reasked=reasked, model_version=version,
                           reason=f"internal error (please report it): {exc!r}"), None
    glyphs: list[str] = []  # labels the font cannot draw: the image's warnings, shown and counted as such
    overlay_error = ""
    if overlay is not None:
        try:
            rgb, overlay_error, late = _read_overlay_image(path, overlay[1], bool(damage), late_check)
        except InputError as exc:  # the early check's failure, found by the overlay's decode
            return ImageResult(file_name, key, False, origin, attempts=attempts, stage="image",
                               error=type(exc).__name__, reason=str(exc), usage=usage, reasked=reasked,
                               model_version=version), None
        damage = damage or late
        if rgb is not None:
            overlay_error = _write_overlay(out, key, rgb, dets, overlay, glyphs.append)
    record = {"file_name": file_name, "width": size_wh[0], "height": size_wh[1], "annotations": anns,
              "report": dict(report)}
    if points:
        record["points"] = points
    notes = (*(ParseWarning(None, None, n) for n in (note, large, damage) if n),
             *(ParseWarning(None, "overlay", g) for g in glyphs))
    warnings = (*notes, *dets.warnings) if notes else dets.warnings
    return ImageResult(file_name, key, True, origin, detections=len(dets), warnings=warnings,
                       attempts=attempts, overlay_error=overlay_error, usage=usage, reasked=reasked,
                       model_version=version, rotated=orientation != 1), record


def _jpeg_damage(path: Path) -> str | None:
    """A warning when libjpeg complains about this JPEG's data (see :mod:`visionkit.media.jpegcheck`);
    raises InputError when the file does not decode at all (cut short), in every mode alike."""
    return _damage_note(path, jpeg_damage(path))


def _damage_note(path: Path, complaint: str | None) -> str | None:
    """The warning for libjpeg's ``complaint`` about ``path``, or InputError when Pillow cannot decode it."""
    if not complaint:
        return None
    try:
        imageio.open_upright(path).close()
    except InputError as exc:
        raise InputError(f"{path}: the JPEG data is cut short or damaged beyond decoding (libjpeg: "
                         f"{complaint}); the file may be incomplete (an interrupted download or "
                         "copy)") from exc
    return (f"the JPEG data is damaged (libjpeg: {complaint}); it decodes, but parts of the image may be "
            "grey or shifted, so the answer and the overlay may be wrong there")


def _read_overlay_image(image: Path, max_side: int | None, damaged: bool, check: bool
                        ) -> tuple[np.ndarray | None, str, str | None]:
    """Read the image for its overlay (again: holding it through the request would cost far more memory
    than a second decode costs time): (pixels or None, "" or why they could not be read, and with
    ``check`` the damage warning from the same decode, as :func:`_jpeg_damage`, which raises InputError
    when the file does not decode at all). A JPEG known to be damaged is read by Pillow, which keeps
    libjpeg's complaint off stderr (it is on the image already); the fast read does too."""
    checked: list[str] = []
    rgb, error = None, ""
    try:
        rgb = np.asarray(imageio.open_upright(image).convert("RGB")) if damaged else \
            imageio.read_rgb(image, max_side=max_side, checked=checked)
    except VisionkitError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a reading bug must not cost the image its annotations
        error = f"internal error drawing the overlay (please report it): {exc!r}"
    if not check:
        return rgb, error, None
    # not decoded by libjpeg here (another format, or a JPEG left to Pillow): the separate check
    return rgb, error, _damage_note(image, checked[0] if checked else jpeg_damage(image))


def _write_overlay(out: Path, key: str, source: np.ndarray, dets, overlay: tuple[str, int | None],
                   on_missing_glyphs: Callable[[str], None]) -> str:
    """Draw and write one overlay of ``source`` (read by :func:`_read_overlay_image`); returns "" or why
    it could not be done."""
    fmt, max_side = overlay
    try:
        write_overlay(out / "overlays" / f"{key}{OVERLAY_FORMATS[fmt]}", source, dets, fmt=fmt,
                      max_side=max_side, on_missing_glyphs=on_missing_glyphs)
    except VisionkitError as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a drawing bug must not cost the image its annotations
        return f"internal error drawing the overlay (please report it): {exc!r}"
    return ""
