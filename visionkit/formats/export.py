"""A finished ``visionkit label`` run (or several) -> a self-contained dataset folder a trainer loads.

What a run folder must contain (all written by ``visionkit label``):

* ``annotations.json``: the COCO annotations (required);
* ``sources.json``: where each input image is (``file_name`` -> absolute path); without it (runs made
  before it existed, or images moved since), pass ``images_root``, the input folder the run was given;
* ``keypoints.json``: the points of pointing answers, when there were any (optional).

Layouts written under ``dest`` (which must be empty or absent, or hold only the staging folder
:data:`PARTIAL` an interrupted export left; the dataset is built there and moved into ``dest`` at the end):

* ``coco``: ``images/<split>/<file_name>`` + ``annotations/instances_<split>.json`` (and
  ``annotations/keypoints_<split>.json`` for points, see :mod:`visionkit.formats.keypoints`);
* ``yolo-detect`` / ``yolo-segment`` (Ultralytics): ``images/<split>/...``, ``labels/<split>/<stem>.txt``
  and ``dataset.yaml`` (FiftyOne's default name) with an identical ``data.yaml`` (see
  :mod:`visionkit.formats.yolo`); ``yolo`` picks segment when the run has masks;
* ``label-studio``: ``images/<split>/...``, ``tasks.json`` (pre-annotations) and ``config.xml`` (see
  :mod:`visionkit.formats.label_studio`);
* ``hf`` (Hugging Face ``imagefolder``): ``<split>/<file_name>`` + ``<split>/metadata.jsonl`` and a
  ``README.md`` naming the classes (see :mod:`visionkit.formats.hf`).

Images are copied UPRIGHT: a file with an EXIF orientation other than 1 is re-encoded with the rotation
applied and the orientation tag removed (JPEG at quality 95, other formats lossless), because
torchvision's ``CocoDetection`` and datumaro decode files without applying it, so the pixels would
disagree with the upright width and height of the annotations. Other files are copied byte for byte.
HEIC/HEIF files become ``.jpg`` (trainers cannot read HEIC).

Split: every image goes to ``train`` unless ``split`` asks for more, e.g. ``{"val": 0.2}``: each image's
split comes from a hash of ``(seed, file_name)`` alone (see :func:`assign_splits`), so the same image + the
same seed = the same split, whatever else is in the runs: a run that grows never moves an image between
splits. The split sizes are the fractions on average, not exactly. No split is ever written EMPTY (an empty
``val`` folder stops Ultralytics' training): a named split that no image fell into is not written, and the
YOLO ``dataset.yaml`` points it at ``images/train`` (Ultralytics' own convention when there is no val);
if ``train`` itself would be empty, the image nearest to train's range moves there. Both are stated in
:attr:`ExportSummary.notes`.

Category ids are the same in every split file, and fixed across runs with ``categories`` (see
:func:`visionkit.formats.coco.load_categories`); labels outside it are dropped and reported.

Runs given: the same folder twice is read once (a note says so); an image whose file name is in two
runs is left out of both and listed in the failures (their labels may disagree, and keeping both under
new names could put one picture in two splits), the other images are exported; runs that hold no image at
all are an ExportError (nothing is written). ``dest`` may hold OS litter (``.DS_Store``, ``Thumbs.db``,
``desktop.ini``): it counts as empty.

One pass: the runs go through the one reader, :mod:`visionkit.formats.coco_stream` (via
:mod:`visionkit.formats.export_runs`): each ``annotations.json`` is checked first (a malformed one is an
InputError naming the file, the index and the field, before anything is written), then streamed ONCE,
one image at a time, in the runs' order: each image's masks are decoded once, its upright copy and its
labels written in the same step (:mod:`visionkit.formats.export_write`), so an image whose mask does not
decode, or whose file cannot be copied, is listed in the failures and leaves no trace (no file, label,
keypoint or count). A split's files are opened at its first written image, so the empty splits are
decided from what was written; if every image of ``train`` failed (or the image moved there did), the
written image nearest to train's range is moved there and the export is redone once (only in that case).
Of two images that would share a dataset name (for YOLO: a label file), the first written in the runs'
order keeps it and the other fails. Memory holds a small tuple per image, not its annotations.

The check and the read stay two passes over each file: the export needs what only the whole file tells
(every label, for the category ids and YOLO class indices; whether any mask exists, for ``yolo``; whether
every annotation has a score) before it writes the first image, and a malformed record must stop the
export before any work is done.

Finishing: the staging folder's top-level entries are moved into ``dest`` with ``os.replace``; their
names are first written to ``.visionkit-partial/.visionkit-moving``, so an export interrupted during the
moves is recognised by the rerun, which removes exactly those entries and the staging folder and redoes
the export.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError, VisionkitError
from ..media.atomic import write_bytes_atomic
from ..media.paths import safe_join
from .coco_stream import ImageRecord
from .export_dest import MOVING, OS_LITTER, PARTIAL, claim_dest, move_into_place
from .export_runs import Run, open_runs
from .export_write import SplitWriters
from .splits import assign_splits, parse_split, train_never_empty
from .upright import copy_upright, dest_name

__all__ = ["FORMATS", "MOVING", "OS_LITTER", "PARTIAL", "ExportSummary", "parse_split", "assign_splits",
           "copy_upright", "export_dataset", "image_folder"]

#: ``format`` values of :func:`export_dataset`.
FORMATS = ("coco", "yolo", "yolo-detect", "yolo-segment", "label-studio", "hf")

@dataclass
class ExportSummary:
    """The outcome of :func:`export_dataset`."""

    dest: Path
    format: str
    images: dict = field(default_factory=dict)       # split -> images written
    annotations: int = 0                             # instances written (all splits)
    points: int = 0                                  # point answers in the runs
    points_written: int = 0                          # ... written as COCO keypoints
    reencoded: int = 0                               # images rotated upright (EXIF) or converted
    report: dict = field(default_factory=dict)       # holes_filled, parts_merged, box_only, ...
    unmapped: dict = field(default_factory=dict)     # label -> detections dropped (not in categories)
    failures: list = field(default_factory=list)     # [{file, run, error}] images not exported
    empty_splits: list = field(default_factory=list)  # named splits no image fell into (not written)
    notes: list = field(default_factory=list)        # what the user should hear once (empty splits, ...)

    @property
    def ok(self) -> bool:
        return not self.failures


def export_dataset(runs: Sequence[str | os.PathLike] | str | os.PathLike, dest: str | os.PathLike, *,
                   format: str = "coco", split: Mapping[str, float] | str | None = None, seed: int = 0,
                   categories: Sequence[str | Mapping] | None = None,
                   images_root: str | os.PathLike | None = None, polygons: bool = False,
                   polygon_holes: str = "rle", ls_root: str | os.PathLike | None = None,
                   on_image: Callable[[str, str | None], None] | None = None) -> ExportSummary:
    """Export labelled runs to a dataset folder (see the module docstring for layouts and rules).

    Args:
        runs: one run folder or several (``visionkit label --out`` folders).
        dest: the dataset folder; must be empty or absent.
        format: one of :data:`FORMATS`.
        split: e.g. ``{"val": 0.2}`` or ``"val=0.2"``; None puts every image in ``train``.
        seed: the split's random seed.
        categories: fixed categories (names or ``{id, name}`` dicts); default: the runs' labels, sorted.
        images_root: where the input images are, when the runs have no (or outdated) ``sources.json``.
        polygons, polygon_holes: COCO segmentation choice, as in :func:`visionkit.formats.coco.to_coco`;
            for ``label-studio``, ``polygons`` writes masks as polygons instead of brush RLE.
        ls_root: ``label-studio`` only: Label Studio's local-files document root, a folder holding
            ``dest`` (default ``dest`` itself); the tasks' image URLs are relative to it.
        on_image: called with ``(file_name, error or None)`` after each image.

    Returns:
        An :class:`ExportSummary`. An image that cannot be decoded or copied is listed in ``failures`` and
        left out (with its annotations); the others are exported.

    Raises:
        ExportError: bad options, a non-empty ``dest``, runs without images, or runs that cannot be read.
        InputError: a malformed run file (the message names the file, the index and the field).
    """
    from .coco import CategoryMap, check_polygon_holes

    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    check_polygon_holes(polygon_holes)
    split = parse_split(split) if isinstance(split, str) or split is None else dict(split)
    parse_split(",".join(f"{k}={v}" for k, v in split.items()))  # the same checks for a dict
    if ls_root is not None and format != "label-studio":
        raise ExportError(f"--ls-root is for --format label-studio only (Label Studio's document root); "
                          f"the {format} format has no image URLs to make relative to it")
    if ls_root is not None:
        from .label_studio import relative_to_root

        relative_to_root(Path(dest), Path(ls_root))  # dest outside the root: ExportError before any write
    if format == "hf":
        from .hf import check_split_names

        check_split_names(["train", *split])  # names datasets would skip or merge: ExportError now
    dest = Path(dest)
    work = dest / PARTIAL
    claim_dest(dest, work)
    opened, run_notes = open_runs([runs] if isinstance(runs, (str, os.PathLike)) else runs, images_root)
    names = [im.file_name for run in opened for im in run.coco.images]
    if not names:
        raise ExportError(f"no images to export: {', '.join(str(run.coco.name) for run in opened)} "
                          f"list{'s' if len(opened) == 1 else ''} none (was the run labelled?); nothing "
                          "was written")
    run_notes += [f"{run.coco.name} has no images" for run in opened if not run.coco.images]
    if format == "label-studio" and not polygons and any(run.coco.has_masks for run in opened):
        from .label_studio import require_brush

        require_brush()  # a missing encoder is one ConfigError now, not a failure per image after copying
    labels: Counter = Counter()
    for run in opened:
        labels.update(run.labels())
    cats = CategoryMap(categories).fit(labels.elements())
    if format == "yolo":
        format = "yolo-segment" if any(run.coco.has_masks for run in opened) else "yolo-detect"
    kp_cats = None
    if format == "coco" and any(run.points for run in opened):
        # point categories: one list for every split, so ids agree between the split files
        kp_cats = CategoryMap(categories).fit(p["label"] for run in opened for rows in run.points.values()
                                              for p in rows).categories
    where = assign_splits(names, split, seed)
    splits = ["train"] + [s for s in split if s != "train"]
    moved = train_never_empty(where, seed)
    assigned = Counter(where.values())

    def one_pass(report_to) -> ExportSummary:
        summary = ExportSummary(dest=dest, format=format, notes=list(run_notes))
        summary.points = sum(len(rows) for run in opened for rows in run.points.values())
        writers = SplitWriters(format, work, cats, kp_cats=kp_cats, polygons=polygons,
                               polygon_holes=polygon_holes, final=dest,
                               ls_root=None if ls_root is None else Path(ls_root),
                               sources=", ".join(run.coco.name for run in opened))
        _export_images(opened, where, work, format, writers, summary, report_to)
        summary.images = {part: writers.written[part] for part in splits}
        summary.annotations, summary.points_written = writers.annotations, writers.points_written
        summary.report = {k: v for k, v in sorted(writers.report.items())
                          if v and ":" not in k and not k.startswith("unmapped")}
        summary.unmapped = dict(sorted((k.split(":", 1)[1], v) for k, v in writers.report.items()
                                       if k.startswith("unmapped:")))
        return summary

    summary = one_pass(on_image)
    if not summary.images["train"] and any(summary.images.values()):
        # every image of train failed (or the one moved there did): the written image nearest to train's
        # range moves there, and the export is redone once (the failures are the same, reported once)
        failed = {f["file"] for f in summary.failures}
        why = ("every image of train failed" if moved is None else
               f"no image fell into train with --split {_split_text(split)}")
        moved = train_never_empty({n: p for n, p in where.items() if n not in failed}, seed)
        where[moved] = "train"
        assigned = Counter(where.values())
        shutil.rmtree(work)
        summary = one_pass(None)
        summary.notes.append(f"{why}; {moved} was moved there, so train is not empty")
    elif moved is not None:
        summary.notes.append(f"no image fell into train with --split {_split_text(split)}; {moved} was moved "
                             "there, so train is not empty")
    summary.empty_splits = [s for s in splits[1:] if not summary.images[s]]
    for part in summary.empty_splits:
        why = (f"every image of {part} failed" if assigned[part] else
               f"no image fell into {part} ({len(names)} images, --split {_split_text(split)})")
        summary.notes.append(f"{why}, so no {part} split was written" + _EMPTY_SPLIT_NOTE.get(format, ""))
    if not any(summary.images.values()):
        summary.notes.append("no image could be exported (see the failures)")
    _finish(work, format, [c["name"] for c in cats.categories], splits, summary.empty_splits, polygons)
    move_into_place(work, dest)
    return summary


def _finish(work: Path, format: str, names: list[str], splits: list[str], empty: list[str],
            polygons: bool) -> None:
    """Write the dataset-wide files: YOLO's YAML, the hf README, Label Studio's config."""
    if format.startswith("yolo"):
        from .yolo import data_yaml

        text = data_yaml(names, splits, empty).encode("utf-8")
        write_bytes_atomic(work / "dataset.yaml", text)  # FiftyOne's YOLOv5 importer's default name
        write_bytes_atomic(work / "data.yaml", text)     # the name Ultralytics' docs use
    elif format == "hf":
        from .hf import hf_readme

        write_bytes_atomic(work / "README.md", hf_readme(names).encode("utf-8"))
    elif format == "label-studio":
        from .label_studio import write_config

        write_config(work, names, polygons=polygons)


_EMPTY_SPLIT_NOTE = {
    "yolo-detect": "; dataset.yaml points it at images/train (Ultralytics' convention when there is no val)",
    "yolo-segment": "; dataset.yaml points it at images/train (Ultralytics' convention when there is no val)",
    "coco": "; evaluate on annotations/instances_train.json",
    "hf": "; the dataset has no such split",
}


def _split_text(split: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in split.items())


def image_folder(format: str, part: str) -> str:
    """Where a format keeps a split's images, under the dataset folder: ``<split>`` for ``hf``, else
    ``images/<split>``."""
    return part if format == "hf" else f"images/{part}"


def _out_name(format: str, file_name: str) -> str:
    """An image's path under its split's image folder (see :func:`~visionkit.formats.hf.dataset_name`
    for ``hf``)."""
    if format == "hf":
        from .hf import dataset_name

        return dataset_name(dest_name(file_name))
    return dest_name(file_name)


def _export_images(opened: list[Run], where: Mapping[str, str], work: Path, format: str,
                   writers: SplitWriters, summary: ExportSummary,
                   on_image: Callable[[str, str | None], None] | None) -> None:
    """The one pass: every image of every run, in order, decoded once, copied and labelled (see
    :func:`_export_one`); failures go to ``summary.failures`` and ``on_image``."""
    taken: dict[tuple[str, str], str] = {}
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {work}: {exc}") from exc
    try:
        for run in opened:
            for record in run.records():
                im = record.image
                error = run.shared.get(im.file_name)
                if error is None:
                    error = _export_one(run, record, where[im.file_name], work, format, writers, taken,
                                        summary)
                if error is not None:
                    summary.failures.append({"file": im.file_name, "run": str(run.folder), "error": error})
                if on_image is not None:
                    on_image(im.file_name, error)
        writers.close()
    finally:
        writers.discard()


def _export_one(run: Run, record: ImageRecord, part: str, work: Path, format: str, writers: SplitWriters,
                taken: dict[tuple[str, str], str], summary: ExportSummary) -> str | None:
    """Decode one image's masks, copy it upright into its split and write its labels; returns the error
    (the image then leaves nothing behind) or None."""
    im = record.image
    name = _out_name(format, im.file_name)
    # YOLO pairs images/<split>/a.jpg with labels/<split>/a.txt, so a.jpg and a.png would share (and
    # merge into) one label file: for YOLO the taken name is the stem, for the others the file name.
    yolo = format.startswith("yolo")
    key = (part, (Path(name).with_suffix("").as_posix() if yolo else name).casefold())
    if key in taken:
        what = (f"its label file labels/{part}/{Path(name).with_suffix('.txt').as_posix()}"
                if yolo else f"its dataset name {name}")
        return f"{what} is taken by {taken[key]}; rename one of the two images"
    target = None
    try:
        dets = run.coco.detections(record)
        target = safe_join(work, f"{image_folder(format, part)}/{name}", file=run.coco.name,
                           field=f"images[{im.pos}].file_name")
        reencoded = copy_upright(run.source(im), target, (im.width, im.height))
        writers.add(part, name, (im.width, im.height), dets, run.points.get(im.file_name))
    except (VisionkitError, OSError) as exc:
        if target is not None:
            target.unlink(missing_ok=True)  # copied, but its labels failed: no trace
        return str(exc) if isinstance(exc, VisionkitError) else f"cannot copy {im.file_name}: {exc}"
    taken[key] = im.file_name
    summary.reencoded += reencoded
    return None
