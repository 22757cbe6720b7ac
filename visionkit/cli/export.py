"""``visionkit export DIR... --to DEST --format {coco,yolo,yolo-detect,yolo-segment,label-studio,hf}
[--split ...]``."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..formats.coco import load_categories
from ..formats.export import FORMATS, export_dataset

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit export``."""
    p = sub.add_parser("export", help="turn labelled run folders into a dataset folder (COCO, YOLO, "
                                      "Label Studio, Hugging Face)",
                       description="Export one or more `visionkit label` output folders (annotations.json + "
                                   "sources.json) into a self-contained dataset folder with upright image "
                                   "copies.")
    p.add_argument("runs", nargs="+", metavar="DIR", help="run folders written by `visionkit label --out`")
    p.add_argument("--to", required=True, metavar="DEST",
                   help="the dataset folder (must be empty or absent; .DS_Store, Thumbs.db and desktop.ini "
                        "count as empty)")
    p.add_argument("--format", choices=FORMATS, default="coco",
                   help="coco: images/ + annotations/instances_<split>.json; yolo-detect / yolo-segment: "
                        "Ultralytics images/, labels/, dataset.yaml (= data.yaml); yolo: segment when the "
                        "run has masks; label-studio: images/, tasks_<split>.json with predictions, "
                        "config.xml; hf: a Hugging Face imagefolder, <split>/ with metadata.jsonl "
                        "(default coco)")
    p.add_argument("--split", metavar="NAME=FRAC[,...]", default="",
                   help="seeded random split, e.g. val=0.2 or val=0.1,test=0.1; the rest is train "
                        "(default: everything in train)")
    p.add_argument("--seed", type=int, default=0, help="random seed of --split (default 0)")
    p.add_argument("--categories", metavar="FILE",
                   help="fix category ids: a COCO file or categories list (.json), or a names file, one per "
                        "line; labels outside it are dropped and reported (default: the runs' labels, "
                        "sorted)")
    p.add_argument("--images", metavar="ROOT",
                   help="the input folder the runs were given, when their sources.json is missing or the "
                        "images moved (default: the paths in DIR/sources.json)")
    p.add_argument("--polygons", action="store_true",
                   help="COCO: write polygon segmentations instead of RLE (default RLE); label-studio: "
                        "masks as polygons instead of brush RLE")
    p.add_argument("--polygon-holes", choices=("rle", "fill"), default="rle",
                   help="COCO with --polygons: a mask with holes stays RLE ('rle') or has its holes filled "
                        "('fill') (default rle)")
    p.add_argument("--ls-root", metavar="DIR",
                   help="label-studio only (an error with other formats): Label Studio's "
                        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, a folder holding DEST; image URLs are "
                        "relative to it (default: DEST itself)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-image failure lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    categories = load_categories(args.categories) if args.categories else None

    def on_image(file_name: str, error: str | None) -> None:
        if error is not None and not args.quiet:
            stderr.write(f"FAILED {file_name}: {error}\n")

    s = export_dataset(args.runs, args.to, format=args.format, split=args.split, seed=args.seed,
                       categories=categories, images_root=args.images, polygons=args.polygons,
                       polygon_holes=args.polygon_holes, ls_root=args.ls_root, on_image=on_image)
    splits = ", ".join(f"{n} {k}" for k, n in s.images.items())
    stdout.write(f"{sum(s.images.values())} images ({splits}), {s.annotations} annotations written to "
                 f"{s.dest} as {s.format}; {s.reencoded} images re-encoded upright\n")
    for note in s.notes:
        stdout.write(f"note: {note}\n")
    if s.report:
        stdout.write("notes: " + ", ".join(f"{k} {v}" for k, v in s.report.items()) + "\n")
    if s.unmapped:
        stdout.write(f"dropped {sum(s.unmapped.values())} detections with labels outside --categories: "
                     f"{s.unmapped}\n")
    if s.points:
        if s.points_written:
            stdout.write(f"{s.points_written} points written as COCO keypoints to "
                         f"{s.dest / 'annotations'}/keypoints_<split>.json\n")
        else:
            stdout.write(f"{s.points} points (pointing answers) are not in the {s.format} labels: YOLO "
                         "detect/segment has no point form (export --format coco writes them as keypoints)\n")
    if s.failures:
        stdout.write(f"{len(s.failures)} images not exported (listed above)\n")
    return 0 if s.ok else 1
