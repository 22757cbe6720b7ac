"""``visionkit consensus RUN_DIR... --out DIR [--iou IOU] [--overwrite]``: one dataset scored by agreement
across runs.

``DIR/annotations.json`` is never one of the inputs (``--out run1`` would replace run1's own dataset), and
an existing ``DIR/annotations.json`` is replaced only with ``--overwrite``; both are checked before any
work is done.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit consensus``."""
    from ..quality.consensus import DEFAULT_IOU

    p = sub.add_parser("consensus", help="merge 2+ runs over the same images; score = fraction of runs "
                                         "that found each object",
                       description="Match objects across runs per image (Hungarian, by mask or box IoU), "
                                   "write DIR/annotations.json with consensus scores and DIR/consensus.json "
                                   "with the label disagreements.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders (with annotations.json) or COCO files; at least two")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (not one of the RUNs; an existing DIR/annotations.json needs "
                        "--overwrite)")
    p.add_argument("--iou", type=float, default=DEFAULT_IOU,
                   help=f"minimum IoU for objects of two runs to be one object (default {DEFAULT_IOU:g})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing DIR/annotations.json, e.g. an earlier consensus (default: "
                        "refuse); an input RUN is never replaced")
    p.set_defaults(func=run)


def _check_out(runs: list[str], out: Path, overwrite: bool) -> None:
    """ConfigError when writing ``out/annotations.json`` would replace an input or, without ``overwrite``,
    any existing file."""
    from ..errors import ConfigError
    from ..quality.datasets import dataset_path

    target = (out / "annotations.json").resolve()
    for source in runs:
        if dataset_path(source).resolve() == target:
            raise ConfigError(f"--out {out} would replace the input {source}'s annotations.json with the "
                              "consensus; choose another output folder, e.g. --out merged")
    if target.exists() and not overwrite:
        raise ConfigError(f"{out / 'annotations.json'} already exists; pass --overwrite to replace it, or "
                          "choose another --out folder")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from ..media.atomic import write_json_atomic
    from ..quality.consensus import write_consensus

    out = Path(args.out)
    _check_out(args.runs, out, args.overwrite)
    report = write_consensus(args.runs, out / "annotations.json", iou=args.iou)
    write_json_atomic(out / "consensus.json", report, indent=2)
    votes = ", ".join(f"{k} of {len(args.runs)}: {n}" for k, n in report["votes"].items()) or "none"
    stdout.write(f"{report['objects']} objects in {report['images']} images from {len(args.runs)} runs "
                 f"(found by {votes}); {len(report['label_disagreements'])} label disagreements\n")
    for d in report["label_disagreements"][:20]:
        stdout.write(f"  {d['file_name']} object {d['object']}: {d['labels']} -> {d['label']!r}\n")
    if len(report["label_disagreements"]) > 20:
        stdout.write(f"  ... all of them in {out / 'consensus.json'}\n")
    stdout.write(f"wrote {out / 'annotations.json'}\n")
    return 0
