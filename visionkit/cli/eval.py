"""``visionkit eval PRED --truth GT.json [--iou-type segm|bbox]``: COCOeval against ground truth."""

from __future__ import annotations

import argparse
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit eval``."""
    from ..quality.evaluate import BACKENDS, DEFAULT_SCORE

    p = sub.add_parser("eval", help="evaluate a run (or COCO file) against ground truth with COCOeval",
                       description="Join images by file name and categories by name, run COCOeval, print the "
                                   "12-number summary, per-class AP and label confusions, write eval.json.")
    p.add_argument("pred", metavar="PRED", help="a run folder (with annotations.json) or a COCO file")
    p.add_argument("--truth", required=True, metavar="GT.json", help="ground-truth COCO file")
    p.add_argument("--iou-type", choices=("segm", "bbox"), default="segm",
                   help="mask or box IoU (default segm)")
    p.add_argument("--out", metavar="FILE",
                   help="where to write eval.json (default: PRED/eval.json, or beside the COCO file)")
    p.add_argument("--default-score", type=float, default=DEFAULT_SCORE,
                   help=f"score for predictions without one (default {DEFAULT_SCORE:g})")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="COCOeval implementation (default auto: faster-coco-eval when installed)")
    p.set_defaults(func=run)


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from ..media.atomic import write_json_atomic
    from ..quality.evaluate import default_eval_path, evaluate

    result = evaluate(args.pred, args.truth, iou_type=args.iou_type, default_score=args.default_score,
                      backend=args.backend)
    out = args.out or default_eval_path(args.pred)
    write_json_atomic(out, result, indent=2)
    counts = result["counts"]
    stdout.write(f"COCOeval ({result['iou_type']}, {result['backend']}) on {counts['joined_images']} of "
                 f"{counts['truth_images']} truth images, {counts['results']} predictions\n")
    stdout.write(result["summary_text"])
    width = max([len(c["name"]) for c in result["per_class"]] + [5])
    stdout.write(f"\n{'class':<{width}}  truth  pred      AP    AP50\n")
    for c in result["per_class"]:
        stdout.write(f"{c['name']:<{width}}  {c['truth']:5d} {c['predicted']:5d}  {_fmt(c['AP'])}  "
                     f"{_fmt(c['AP50'])}\n")
    if result["confusions"]:
        stdout.write("\nlabel confusions (truth -> predicted, IoU >= 0.5):\n")
        for c in result["confusions"]:
            stdout.write(f"  {c['truth']} -> {c['predicted']}: {c['count']}\n")
    for note in result["notes"]:
        stdout.write(f"note: {note}\n")
    stdout.write(f"wrote {out}\n")
    return 0
