"""``visionkit overlays DIR [--replay DIR] [--overlay-format F] [--overlay-max-side PX] ...``."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..core.masks import DEFAULT_THRESHOLD
from ._common import add_overlay_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit overlays``."""
    p = sub.add_parser("overlays", help="(re)draw the overlays of a finished label run from saved answers",
                       description="Write DIR/overlays/<key>.<format> for every image of the label run in "
                                   "DIR, from its saved answers (DIR/responses, or --replay). Sends no "
                                   "request and leaves annotations.json as it is.")
    p.add_argument("out", metavar="DIR", help="the output folder of a finished `visionkit label` run")
    p.add_argument("--replay", metavar="ANSWERS",
                   help="the answers folder the run was made with (default: DIR/responses)")
    p.add_argument("--task", choices=("detect", "segment"), default="segment",
                   help="the task the run used: with detect, masks an answer may hold are not drawn "
                        "(default segment)")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                   help=f"mask threshold 0-255, as given to label (default {DEFAULT_THRESHOLD})")
    p.add_argument("--dedupe", type=float, metavar="IOU", default=None,
                   help="drop near-duplicates as `label --dedupe` does (default: off)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="images drawn at once, at most one process per CPU (default 4)")
    add_overlay_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary and failures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from ..run.redraw import redraw_overlays

    summary = redraw_overlays(args.out, replay=args.replay, task=args.task, threshold=args.threshold,
                              dedupe=args.dedupe,
                              overlay_format=args.overlay_format, overlay_max_side=args.overlay_max_side,
                              concurrency=args.concurrency)
    for f in summary.failures:
        stderr.write(f"FAILED {f['file']} {f['error']}: {f['reason']}\n")
    stdout.write(f"{summary.drawn}/{summary.total} overlays written to {summary.out / 'overlays'}"
                 f"{f', {len(summary.failures)} failed' if summary.failures else ''}\n")
    return 0 if summary.ok else 1
