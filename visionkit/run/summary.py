"""What a label run reports: a :class:`Progress` snapshot after every image, and the :class:`LabelSummary`
that :func:`visionkit.run.pipeline.label` returns, which adds up every image's
:class:`~visionkit.run.image_step.ImageResult`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..core.usage import Usage
from .image_step import ImageResult

__all__ = ["LabelSummary", "Progress"]


@dataclass(frozen=True)
class Progress:
    """A progress snapshot, sent after every image."""

    total: int
    done: int
    failed: int
    cached: int
    retries: int
    elapsed: float
    in_flight: int = 0  # images being worked on (requests in flight, online)

    @property
    def eta(self) -> float | None:
        """Seconds left at the current pace, or None before the first image."""
        finished = self.done + self.failed
        if finished == 0:
            return None
        return self.elapsed / finished * (self.total - finished)


@dataclass
class LabelSummary:
    """The outcome of :func:`visionkit.run.pipeline.label`."""

    out: Path
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    reused: int = 0  # images whose result was kept from the last run (not parsed again)
    requested: int = 0
    retries: int = 0
    detections: int = 0
    annotations: int = 0
    warnings: int = 0
    elapsed: float = 0.0
    failures: list[dict] = field(default_factory=list)
    export_report: dict = field(default_factory=dict)
    points: int = 0  # point answers written to keypoints.json
    stopped: str | None = None  # why the run stopped early, if it did
    notices: list[str] = field(default_factory=list)  # things the user should hear once (skipped inputs)
    overlay_failures: list[dict] = field(default_factory=list)  # annotations kept, overlay not written
    kept_previous: str | None = None  # why annotations.json was left as it was, if it was
    lost_images: list[str] = field(default_factory=list)  # had annotations before, have none now
    previous_note: str | None = None  # set when an older, fuller annotations.previous.json was kept instead
    export_errors: list[str] = field(default_factory=list)  # outputs that could not be written (full disk)
    unwritten: list[str] = field(default_factory=list)  # their file names ("annotations.json", ...)
    unsaved: int = 0  # paid answers that could not be saved, even when retried at the end
    usage: Usage = field(default_factory=Usage)  # tokens spent by this run's requests (see
                                                 # visionkit.core.usage)
    reasked: int = 0  # images asked again with the polygon prompt (their masks did not decode)
    # -- the model (issue 15; see visionkit.run.model_check) --
    model: str | None = None  # the model asked (online and batch runs)
    model_line: str | None = None  # the up-front line: the model, its status, the thinking sent and why
    image_usage: Usage = field(default_factory=Usage)  # the images' share of ``usage`` (the rest: probes)
    probe_usage: Usage = field(default_factory=Usage)  # text-only probes that learned the thinking setting
    batch_answers: int = 0  # answers of this --batch run's jobs (billed at the batch price)
    answered_by: Counter = field(default_factory=Counter)  # modelVersion -> answers of this run
    rotated: int = 0  # images whose files carry an EXIF rotation (see rotation_notice)

    @property
    def ok(self) -> bool:
        """True when every image succeeded and every output was written."""
        return self.failed == 0 and not self.overlay_failures and not self.export_errors and not self.unsaved

    def add(self, result: ImageResult) -> None:
        """Count one image's result."""
        self.warnings += len(result.warnings)
        self.retries += max(result.attempts - 1, 0)
        self.cached += result.source == "cache"
        self.requested += result.source == "api"
        self.batch_answers += result.source == "batch"
        self.reasked += result.reasked
        self.rotated += result.rotated
        if result.usage:
            self.usage.add(Usage.of(result.usage))
            self.image_usage.add(Usage.of(result.usage))
        if result.model_version:
            self.answered_by[str(result.model_version)] += 1
        if result.ok:
            self.succeeded += 1
            self.detections += result.detections
            if result.overlay_error:
                self.overlay_failures.append({
                    "file": result.file, "key": result.key, "stage": "overlay", "error": "ExportError",
                    "reason": f"{result.overlay_error} (the image's annotations are in annotations.json)"})
        else:
            self.failed += 1
            self.failures.append({"file": result.file, "key": result.key, "stage": result.stage,
                                  "error": result.error, "reason": result.reason})

    def rotation_notice(self) -> str | None:
        """What a run folder is not, said once (``visionkit label``'s summary prints it) when it matters: a
        dataset loader reading the original files. None when no image carries an EXIF rotation."""
        if not self.rotated:
            return None
        return (f"{self.rotated} images carry an EXIF rotation: annotations.json describes them upright, but "
                "loaders that read the original files through this run folder (torchvision's CocoDetection, "
                "datumaro) see them sideways; `visionkit export` writes upright copies for them")
