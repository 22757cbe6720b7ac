"""``visionkit label INPUT... --out DIR --task {detect,segment} [--replay DIR] ...``."""

from __future__ import annotations

import argparse
import warnings
from typing import TextIO

from PIL import Image

from ..core.masks import DEFAULT_THRESHOLD
from ..errors import ConfigError
from ..formats.coco import load_categories
from ..media.imageio import MAX_PIXELS, set_max_pixels
from ..run.batching import DEFAULT_POLL_INTERVAL, MAX_POLL_INTERVAL, MAX_REQUESTS_PER_JOB
from ..run.model_check import answered_by, dry_run_plan
from ..run.outdir import previous_counts
from ..run.pipeline import label
from ..run.plan import plan
from ..run.usage import run_cost
from . import _batch_jobs
from ._common import add_overlay_arguments, positive_int
from ._report import Reporter

__all__ = ["add_label_arguments", "run"]


def add_label_arguments(p: argparse.ArgumentParser) -> None:
    """Every ``visionkit label`` argument (also used by ``batch collect`` to rebuild a run's arguments)."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (required)")
    p.add_argument("--task", choices=("detect", "segment"), default="segment",
                   help="ask for boxes (detect) or boxes and masks (segment)")
    p.add_argument("--replay", metavar="DIR",
                   help="use recorded answers DIR/<stem>.json (full response) or DIR/<stem>.txt (text) "
                        "instead of calling the API (default: call the API)")
    p.add_argument("--prompt", help="your own prompt text (default: Google's recommended prompt)")
    p.add_argument("--classes", help="comma-separated class names; constrains labels and fixes COCO ids "
                                     "(default: none, the model names what it finds)")
    p.add_argument("--model", default=None,
                   help="Gemini model id (default: $VISIONKIT_MODEL, else gemini-3.8-flash; see the "
                        "model table in docs/models.md)")
    p.add_argument("--refresh-models", action="store_true",
                   help="learn the model's thinking setting again (models.get and text-only probes), "
                        "ignoring what the per-user model cache remembers (default: use the cache; "
                        "see 'visionkit models')")
    p.add_argument("--base-url", help="API base URL (default: $GEMINI_BASE_URL or Google's endpoint)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per request, also the deadline for a whole answer (default 60; 900 with "
                        "--tier flex)")
    p.add_argument("--concurrency", type=int, default=4, help="images in flight (default 4)")
    p.add_argument("--rpm", type=float, help="maximum requests per minute (default: no limit)")
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
    p.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, metavar="S",
                   help="with --batch: seconds before the first poll; each wait is 1.5 times the last, "
                        f"up to {MAX_POLL_INTERVAL:g} s "
                        f"(default {DEFAULT_POLL_INTERVAL:g})")
    p.add_argument("--no-wait", action="store_true",
                   help="with --batch: submit the jobs, print their names and exit; collect later with "
                        "'visionkit batch collect DIR' (default: wait)")
    p.add_argument("--batch-max-requests", type=int, default=MAX_REQUESTS_PER_JOB, metavar="N",
                   help="with --batch: most requests per job; lower it to fit a low tier's enqueued-token "
                        f"quota (default {MAX_REQUESTS_PER_JOB})")
    # -- input selection, dry run and the image size limit (issue 11) --
    p.add_argument("--glob", action="append", default=[], metavar="PATTERN",
                   help="use only inputs matching PATTERN: a shell pattern, case-insensitive, matched "
                        "against the path relative to the input folder and the file name (* also matches /); "
                        "repeatable (default: every image)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="skip inputs matching PATTERN (as --glob); repeatable (default: none)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use only the first N images, in sorted order, after --glob and --exclude "
                        "(default: all)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be requested, reused from DIR/responses or skipped, and an "
                        "input-token estimate; send nothing and write nothing")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, metavar="N",
                   help="refuse images with more than N pixels, a guard against decompression bombs; "
                        f"raise it for huge scans (default {MAX_PIXELS:,}, about {MAX_PIXELS / 1e6:.0f} "
                        "megapixels)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-item warnings")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug log of requests and retries on stderr (the API key is never logged)")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if getattr(args, "batch", False) and args.tier != "standard":
        # A batch line carries no serviceTier (batch_steps): the job is billed at the batch price.
        raise ConfigError(f"--tier {args.tier} applies to interactive requests; a --batch job has its own "
                          "price (half the standard one), so drop --tier or --batch")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    categories = load_categories(args.categories) if args.categories else None

    set_max_pixels(args.max_pixels)
    # Pillow's DecompressionBombWarning names no file and ignores -q; the pipeline warns, naming the file.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if args.dry_run:
        return _dry_run(args, classes, stdout)
    reporter = Reporter(stderr, args.quiet, offline=args.replay is not None)
    prices = _prices(args)

    def client_factory():
        from ..gemini import GeminiClient

        return GeminiClient(model=args.model, base_url=args.base_url, timeout=args.timeout,
                            max_side=args.max_side, on_retry=reporter.retry,
                            media_resolution=args.media_resolution, service_tier=args.tier)

    if getattr(args, "batch", False):  # batch jobs answer first; the label run below reads their answers
        client_factory, code = _batch_jobs.run_jobs(args, client_factory, reporter, stdout, stderr)
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
                        glob=args.glob, exclude=args.exclude, limit=args.limit,
                        reask=not args.no_reask, prices=prices,
                        refresh_models=getattr(args, "refresh_models", False))
    finally:
        reporter.finish()
    _print_summary(summary, args, stdout)
    return 0 if summary.ok else 1


def _dry_run(args: argparse.Namespace, classes: list[str] | None, stdout: TextIO) -> int:
    """``--dry-run``: what would happen to each image; nothing is sent or written (with a key, models.get is
    asked: it is free, and a wrong key or model stops here as it would stop the run)."""
    if args.replay is None:
        fleet = dry_run_plan(args.model, args.base_url, refresh=getattr(args, "refresh_models", False))
        stdout.write(f"model    {fleet.line()}\n")
        for notice in fleet.notices:
            stdout.write(f"note     {notice}\n")
    result = plan(args.inputs, args.out, task=args.task, replay=args.replay, prompt=args.prompt,
                  classes=classes, model=args.model, max_side=args.max_side, glob=args.glob,
                  exclude=args.exclude, limit=args.limit,
                  media_resolution=getattr(args, "media_resolution", None))
    for notice in result.notices:
        stdout.write(f"note     {notice}\n")
    if not args.quiet:
        for item in result.images:
            detail = f"about {item.tokens:,} input tokens" if item.action == "request" else item.detail
            if item.action == "request" and item.detail:
                detail += f"; {item.detail}"
            stdout.write(f"{item.action:<8} {item.file}  ({detail})\n")
    stdout.write(f"dry run: {len(result.images)} images: {result.count('request')} to request (about "
                 f"{result.tokens:,} input tokens; output tokens not estimated), {result.count('reuse')} "
                 f"reused from {args.out}/responses, {result.count('replay')} from --replay, "
                 f"{result.count('fail')} would fail; nothing was sent or written\n")
    return 0


def _print_summary(summary, args: argparse.Namespace, stdout: TextIO) -> None:
    report = summary.export_report
    dataset = summary.out / "annotations.json"
    if summary.kept_previous:
        where = f"{dataset} kept as it was"
    elif "annotations.json" in summary.unwritten:  # say what IS on disk, not what was meant to be
        previous = previous_counts(dataset)
        where = (f"{dataset} NOT written; the file on disk is the previous one, unchanged "
                 f"({len(previous)} images, {sum(previous.values())} annotations)" if previous is not None
                 else f"{dataset} NOT written; there is no annotations.json on disk")
    else:
        where = f"{summary.annotations} annotations in {dataset}"
    stdout.write(f"{summary.succeeded}/{summary.total} images labelled, {summary.failed} failed; {where} "
                 f"({summary.requested} requested, {summary.cached} from cache, "
                 + (f"{summary.reused} reused from kept results, " if summary.reused else "")
                 + f"{summary.retries} retries, "
                 f"{summary.warnings} warnings, {summary.elapsed:.1f}s)\n")
    if report.get("unmapped_detections"):
        where = "--categories" if args.categories else "--classes"
        stdout.write(f"dropped {report['unmapped_detections']} detections with labels outside {where}: "
                     f"{report['unmapped_labels']}\n")
    if summary.rotation_notice():
        stdout.write(f"{summary.rotation_notice()}\n")
    if summary.points:
        stdout.write(f"{summary.points} points (pointing answers, no box) are not COCO instances: written as "
                     f"COCO keypoints to {summary.out / 'keypoints.json'}\n")
    if summary.model_line:
        stdout.write(f"model: {summary.model_line}\n")
    for version, count in summary.answered_by.items():
        if answered_by(summary.model, version):
            stdout.write(f"{count} answers came from {version}, not {summary.model} (a routed id)\n")
    if summary.usage.requests:
        again = f", {summary.reasked} images asked again with the polygon prompt" if summary.reasked else ""
        probes = (f", {summary.probe_usage.requests} of them text-only probes that learned the thinking "
                  "setting"
                  if summary.probe_usage.requests else "")
        stdout.write(f"tokens: {summary.usage.describe()}{probes}{again} (in {summary.out / 'usage.json'})\n")
        prices = _prices(args)
        if prices is not None:
            batch = bool(getattr(args, "batch", False))
            where = (f"the images at the Batch API price, half of ${prices[0]:g}/${prices[1]:g} per 1M "
                     "input/output tokens" + (", probes at the full price" if summary.probe_usage.requests
                                              else "")) if batch else \
                f"${prices[0]:g}/${prices[1]:g} per 1M input/output tokens"
            stdout.write(f"cost: ${run_cost(summary, prices, batch):.4f} at {where} (cached input counted at "
                         "the full price)\n")
    if summary.stopped:
        stdout.write(f"stopped early: {summary.stopped}\n")
    if summary.kept_previous:
        stdout.write(f"annotations.json not replaced: {summary.kept_previous}\n")
    if summary.lost_images:
        lost = summary.lost_images
        stdout.write(f"{len(lost)} images that had annotations in the previous annotations.json have none "
                     f"now: {', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''} "
                     + (f"({summary.previous_note})\n" if summary.previous_note else
                        f"(the previous file is kept as {summary.out / 'annotations.previous.json'})\n"))
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
        raise ConfigError(f"--price-in and --price-out must be >= 0, got {pin} and {pout}")
    return pin, pout
