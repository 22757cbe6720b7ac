"""``visionkit report DIR [--out DIR/report] [--thumb-size PX]``: a static review page for a run folder."""

from __future__ import annotations

import argparse
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit report``."""
    from ..quality.report import DEFAULT_THUMB_SIZE

    p = sub.add_parser("report", help="write DIR/report/index.html, a static review page (no server)",
                       description="Per-class counts and mask areas, failed images, warnings, a filterable "
                                   "gallery of overlays and, with DIR/eval.json, per-class AP and the worst "
                                   "images first. Opens from file://.")
    p.add_argument("run_dir", metavar="DIR", help="a run folder (with annotations.json)")
    p.add_argument("--out", metavar="FOLDER", help="report folder (default: DIR/report)")
    p.add_argument("--thumb-size", type=int, default=DEFAULT_THUMB_SIZE,
                   help=f"longest side of the gallery thumbnails in pixels (default {DEFAULT_THUMB_SIZE})")
    p.add_argument("--workers", type=int, default=4, help="threads making thumbnails (default 4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from ..quality.report import build_report

    summary = build_report(args.run_dir, out=args.out, thumb_size=args.thumb_size, workers=args.workers)
    for problem in summary.problems:
        stderr.write(f"warning: {problem}\n")
    stdout.write(f"{summary.images} images, {summary.annotations} objects, {summary.failed} failed, "
                 f"{summary.with_warnings} with warnings; {summary.thumbnails} thumbnails "
                 f"({summary.thumbnails_reused} reused)\nwrote {summary.path}\n")
    return 0
