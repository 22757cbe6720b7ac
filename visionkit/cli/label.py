"""``visionkit label INPUT... --out DIR --task {detect,segment} [--replay DIR] ...``."""

from __future__ import annotations

import argparse
import threading
import time
from typing import TextIO

from ..coco import load_categories
from ..masks import DEFAULT_THRESHOLD
from ..overlay_files import DEFAULT_OVERLAY_FORMAT, DEFAULT_OVERLAY_MAX_SIDE, OVERLAY_FORMATS
from ..pipeline import ImageResult, Progress, label
from . import batch as _batch_cli

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit label``."""
    p = sub.add_parser("label", help="label images with Gemini (or recorded answers) into COCO + overlays",
                       description="Label images into DIR/annotations.json (COCO), DIR/overlays/, "
                                   "DIR/responses/ and DIR/failures.json.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--task", choices=("detect", "segment"), default="segment")
    p.add_argument("--replay", metavar="DIR",
                   help="use recorded answers DIR/<stem>.json (full response) or DIR/<stem>.txt (text) "
                        "instead of calling the API")
    p.add_argument("--prompt", help="your own prompt text (default: Google's recommended prompt)")
    p.add_argument("--classes", help="comma-separated class names; constrains labels and fixes COCO ids")
    p.add_argument("--model", default=None,
                   help="Gemini model id (default: $VISIONKIT_MODEL, else gemini-3.8-flash; see the README's "
                        "model table)")
    p.add_argument("--base-url", help="API base URL (default: $GEMINI_BASE_URL or Google's endpoint)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per request, also the deadline for a whole answer (default 60; 900 with "
                        "--tier flex)")
    p.add_argument("--concurrency", type=int, default=4, help="images in flight (default 4)")
    p.add_argument("--rpm", type=float, help="maximum requests per minute")
    p.add_argument("--max-side", type=int, default=1024, help="longest side sent to the API (default 1024)")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                   help=f"mask threshold 0-255, pixels > T are in (default {DEFAULT_THRESHOLD})")
    p.add_argument("--polygons", action="store_true", help="write polygon segmentations instead of RLE")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay images")
    add_overlay_arguments(p)
    p.add_argument("--dedupe", type=float, metavar="IOU", default=None,
                   help="drop near-duplicates within each image: a detection overlapping an earlier one of "
                        "the same label with mask (else box) IoU >= IOU is dropped, with a warning "
                        "(default: off; 0.7 is a good start)")
    # -- dataset options (issue 8) --
    p.add_argument("--polygon-holes", choices=("rle", "fill"), default="rle",
                   help="with --polygons, a mask with holes stays RLE ('rle') or is written as polygons "
                        "with its holes filled ('fill') (default rle)")
    p.add_argument("--categories", metavar="FILE",
                   help="fix COCO category ids across runs: a COCO file or categories list (.json), or a "
                        "names file, one per line (default: ids from --classes, else from the labels)")
    # -- models, cost and speed (issue 6) --
    p.add_argument("--media-resolution", choices=("low", "medium", "high", "ultra_high"), default=None,
                   help="image token budget sent as mediaResolution (low/medium/high for every model that "
                        "takes it, ultra_high per image part on Gemini 3) (default: the model's own)")
    p.add_argument("--tier", choices=("standard", "flex", "priority"), default="standard",
                   help="service tier: flex costs half with latencies of minutes and dropped requests "
                        "(retried), priority costs more (default standard)")
    p.add_argument("--no-reask", action="store_true",
                   help="do not ask again with the polygon prompt when an answer's masks cannot be decoded "
                        "(seg tokens, placeholders) (default: ask once more)")
    p.add_argument("--price-in", type=float, metavar="USD", default=None,
                   help="USD per 1M input tokens, to print the run's cost (default: no cost)")
    p.add_argument("--price-out", type=float, metavar="USD", default=None,
                   help="USD per 1M output tokens, thinking included (default: no cost)")
    # -- batch mode (issue 7) --
    p.add_argument("--batch", action="store_true",
                   help="send the requests as Gemini Batch API jobs (half the price, results within 24 h), "
                        "wait, then write the same outputs; rerunning the same command resumes the jobs "
                        "recorded in DIR/batch and never creates a second one (default: off)")
    p.add_argument("--poll-interval", type=float, default=_batch_cli.DEFAULT_POLL_INTERVAL, metavar="S",
                   help="with --batch: seconds before the first poll; each wait is 1.5 times the last, "
                        f"up to {_batch_cli.MAX_POLL_INTERVAL:g} s "
                        f"(default {_batch_cli.DEFAULT_POLL_INTERVAL:g})")
    p.add_argument("--no-wait", action="store_true",
                   help="with --batch: submit the jobs, print their names and exit; collect later with "
                        "'visionkit batch collect DIR' (default: wait)")
    p.add_argument("--batch-max-requests", type=int, default=_batch_cli.MAX_REQUESTS_PER_JOB, metavar="N",
                   help="with --batch: most requests per job; lower it to fit a low tier's enqueued-token "
                        f"quota (default {_batch_cli.MAX_REQUESTS_PER_JOB})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-item warnings")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug log of requests and retries on stderr (the API key is never logged)")
    p.set_defaults(func=run)


def add_overlay_arguments(p: argparse.ArgumentParser) -> None:
    """``--overlay-format`` and ``--overlay-max-side`` (shared by ``label`` and ``overlays``)."""
    p.add_argument("--overlay-format", choices=tuple(OVERLAY_FORMATS), default=DEFAULT_OVERLAY_FORMAT,
                   help=f"overlay file format (default {DEFAULT_OVERLAY_FORMAT}: ~10x faster to write and ~6x"
                        " smaller than png)")
    p.add_argument("--overlay-max-side", type=int, default=DEFAULT_OVERLAY_MAX_SIDE, metavar="PX",
                   help="shrink the image so its longest side is at most PX before drawing the overlay; "
                        f"0 = full size (default {DEFAULT_OVERLAY_MAX_SIDE})")


class _Reporter:
    """Per-image lines and a one-line progress bar on stderr (the bar only on a terminal)."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream = stream
        self.quiet = quiet
        self.bar = not quiet and stream.isatty()
        self._bar_shown = False
        self._last = 0.0
        self._lock = threading.Lock()
        self.live_retries = 0

    def retry(self, attempt: int, delay: float, reason: str) -> None:
        """Client hook (worker threads): count retries as they happen, for the bar."""
        with self._lock:
            self.live_retries += 1

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False

    def interrupt(self, in_flight: int) -> None:
        """First Ctrl-C: say at once what the run is waiting for."""
        self._clear()
        self.stream.write(f"interrupted: {in_flight} requests in flight; waiting for their answers so they "
                          "are saved (press Ctrl-C again to abort them)\n")
        self.stream.flush()

    def notice(self, text: str) -> None:
        self._clear()
        self.stream.write(f"note: {text}\n")

    def image(self, result: ImageResult) -> None:
        if result.overlay_error:
            self._clear()
            self.stream.write(f"OVERLAY NOT WRITTEN {result.file} (annotations kept): "
                              f"{result.overlay_error}\n")
        if not result.ok:
            self._clear()
            self.stream.write(f"FAILED {result.file} [{result.stage}] {result.error}: {result.reason}\n")
        elif result.warnings and not self.quiet:
            self._clear()
            for w in result.warnings:
                self.stream.write(f"warning {result.file}: {w}\n")

    def progress(self, p: Progress) -> None:
        if not self.bar:
            return
        now = time.monotonic()
        finished = p.done + p.failed
        if finished < p.total and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        filled = int(width * finished / max(p.total, 1))
        eta = "--:--" if p.eta is None else f"{int(p.eta) // 60:02d}:{int(p.eta) % 60:02d}"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {finished}/{p.total} "
                          f"done {p.done} failed {p.failed} cached {p.cached} "
                          f"retries {max(p.retries, self.live_retries)} "
                          f"ETA {eta}\033[K")
        self.stream.flush()
        self._bar_shown = True

    def finish(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    categories = load_categories(args.categories) if args.categories else None

    reporter = _Reporter(stderr, args.quiet)
    prices = _prices(args)

    def client_factory():
        from ..gemini import GeminiClient

        return GeminiClient(model=args.model, base_url=args.base_url, timeout=args.timeout,
                            max_side=args.max_side, on_retry=reporter.retry,
                            media_resolution=args.media_resolution, service_tier=args.tier)

    if getattr(args, "batch", False):  # batch jobs answer first; the label run below reads their answers
        client_factory, code = _batch_cli.run_jobs(args, client_factory, reporter, stdout, stderr)
        if code is not None:
            return code

    try:
        summary = label(args.inputs, args.out, task=args.task, replay=args.replay,
                        client_factory=client_factory, prompt=args.prompt, classes=classes,
                        threshold=args.threshold, concurrency=args.concurrency, rpm=args.rpm,
                        polygons=args.polygons, overlays=not args.no_overlays, dedupe=args.dedupe,
                        overlay_format=args.overlay_format, overlay_max_side=args.overlay_max_side,
                        on_image=reporter.image, on_progress=reporter.progress,
                        polygon_holes=args.polygon_holes, categories=categories,
                        on_notice=reporter.notice, on_interrupt=reporter.interrupt,
                        reask=not args.no_reask, prices=prices)
    finally:
        reporter.finish()
    _print_summary(summary, args, stdout)
    return 0 if summary.ok else 1


def _print_summary(summary, args: argparse.Namespace, stdout: TextIO) -> None:
    report = summary.export_report
    dataset = summary.out / "annotations.json"
    where = (f"{dataset} kept as it was" if summary.kept_previous
             else f"{summary.annotations} annotations in {dataset}")
    stdout.write(f"{summary.succeeded}/{summary.total} images labelled, {summary.failed} failed; {where} "
                 f"({summary.requested} requested, {summary.cached} from cache, {summary.retries} retries, "
                 f"{summary.warnings} warnings, {summary.elapsed:.1f}s)\n")
    if report.get("unmapped_detections"):
        where = "--categories" if args.categories else "--classes"
        stdout.write(f"dropped {report['unmapped_detections']} detections with labels outside {where}: "
                     f"{report['unmapped_labels']}\n")
    if summary.points:
        stdout.write(f"{summary.points} points (pointing answers, no box) are not COCO instances: written as "
                     f"COCO keypoints to {summary.out / 'keypoints.json'}\n")
    if summary.usage.requests:
        again = f", {summary.reasked} images asked again with the polygon prompt" if summary.reasked else ""
        stdout.write(f"tokens: {summary.usage.describe()}{again} (in {summary.out / 'usage.json'})\n")
        prices = _prices(args)
        if prices is not None:
            stdout.write(f"cost: ${summary.usage.cost(*prices):.4f} at ${prices[0]:g}/${prices[1]:g} per 1M "
                         "input/output tokens (cached input counted at the full price)\n")
    if summary.stopped:
        stdout.write(f"stopped early: {summary.stopped}\n")
    if summary.kept_previous:
        stdout.write(f"annotations.json not replaced: {summary.kept_previous}\n")
    if summary.lost_images:
        lost = summary.lost_images
        stdout.write(f"{len(lost)} images that had annotations in the previous annotations.json have none "
                     f"now: {', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''} (the previous file is "
                     f"kept as {summary.out / 'annotations.previous.json'})\n")
    if summary.overlay_failures:
        stdout.write(f"{len(summary.overlay_failures)} overlays could not be written (their images' "
                     "annotations are kept)\n")
    for error in summary.export_errors:
        stdout.write(f"NOT WRITTEN: {error}\n")
    if summary.unsaved:
        stdout.write(f"{summary.unsaved} paid answers could not be saved; a rerun will ask for them again\n")
    if (summary.failed or summary.overlay_failures) and (summary.out / "failures.json").is_file():
        stdout.write(f"failures listed in {summary.out / 'failures.json'}\n")


def _prices(args: argparse.Namespace) -> tuple[float, float] | None:
    """``(--price-in, --price-out)``, both or neither; a missing one counts 0 (e.g. free output)."""
    if args.price_in is None and args.price_out is None:
        return None
    pin, pout = args.price_in or 0.0, args.price_out or 0.0
    if pin < 0 or pout < 0:
        from ..errors import ConfigError

        raise ConfigError(f"--price-in and --price-out must be >= 0, got {pin} and {pout}")
    return pin, pout
