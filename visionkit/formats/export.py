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

Reading: the runs go through the one reader, :mod:`visionkit.formats.coco_stream` (via
:mod:`visionkit.formats.export_runs`): each ``annotations.json`` is checked first (a malformed one is an
InputError naming the file, the index and the field, before anything is written), then streamed one image
at a time when a split's labels are written, in the runs' order; COCO split files are written by
:class:`~visionkit.formats.coco_write.CocoWriter`. Memory holds a small tuple per image, not its
annotations. An image whose mask does not decode (RLE counts that do not cover the image) is listed in the
failures and left out of everything (files, labels, keypoints, counts, the empty-split check): every
run is decoded once before any image is copied.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.detections import Detections
from ..errors import ExportError, VisionkitError
from ..media.atomic import write_bytes_atomic
from ..media.paths import safe_join
from .coco_stream import ImageEntry
from .export_runs import Run, open_runs
from .splits import assign_splits, parse_split, train_never_empty
from .upright import copy_upright, dest_name

__all__ = ["FORMATS", "ExportSummary", "parse_split", "assign_splits", "copy_upright", "export_dataset",
           "image_folder"]

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
        ls_root: ``label-studio``: Label Studio's local-files document root, a folder holding ``dest``
            (default ``dest`` itself); the tasks' image URLs are relative to it.
        on_image: called with ``(file_name, error or None)`` after each image.

    Returns:
        An :class:`ExportSummary`. An image that cannot be copied is listed in ``failures`` and left out
        (with its annotations); the others are exported.

    Raises:
        ExportError: bad options, a non-empty ``dest``, or runs that cannot be read.
        InputError: a malformed run file (the message names the file, the index and the field).
    """
    from .coco import CategoryMap, check_polygon_holes

    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    check_polygon_holes(polygon_holes)
    split = parse_split(split) if isinstance(split, str) or split is None else dict(split)
    parse_split(",".join(f"{k}={v}" for k, v in split.items()))  # the same checks for a dict
    if format == "label-studio" and ls_root is not None:
        from .label_studio import relative_to_root

        relative_to_root(Path(dest), Path(ls_root))  # dest outside the root: ExportError before any write
    if format == "hf":
        from .hf import check_split_names

        check_split_names(["train", *split])  # names datasets would skip or merge: ExportError now
    dest = Path(dest)
    work = dest / PARTIAL
    if dest.exists() and (not dest.is_dir() or any(p != work for p in dest.iterdir())):
        raise ExportError(f"{dest} exists and is not an empty folder; choose a new --to folder")
    if work.is_dir() and not work.is_symlink():
        shutil.rmtree(work)  # our own partial output from an interrupted export: redo it
    elif work.is_symlink() or work.exists():
        raise ExportError(f"{work} is not a folder visionkit left; remove it or choose a new --to folder")
    opened = open_runs([runs] if isinstance(runs, (str, os.PathLike)) else runs, images_root)
    images = [(k, im) for k, run in enumerate(opened) for im in run.coco.images]
    labels: Counter = Counter()
    for run in opened:
        labels.update(run.labels())
    cats = CategoryMap(categories).fit(labels.elements())
    summary = ExportSummary(dest=dest, format=format)
    summary.points = sum(len(rows) for run in opened for rows in run.points.values())
    if format == "yolo":
        format = "yolo-segment" if any(run.coco.has_masks for run in opened) else "yolo-detect"
        summary.format = format
    where = assign_splits([im.file_name for _, im in images], split, seed)
    moved = train_never_empty(where, seed)
    if moved is not None:
        summary.notes.append(f"no image fell into train with --split {_split_text(split)}; {moved} was moved "
                             "there, so train is not empty")
    # An image whose masks do not decode is left out before anything is copied, so the empty splits, the
    # keypoints and the re-encoded count all describe the images actually written.
    kept = _decodable(opened, images, summary, on_image)
    per_split = _copy_images(opened, kept, where, work, format, summary, on_image)

    report: Counter = Counter()
    unmapped: Counter = Counter()
    splits = ["train"] + [s for s in split if s != "train"]
    summary.empty_splits = [s for s in splits[1:] if not per_split.get(s)]
    assigned = Counter(where.values())
    for part in summary.empty_splits:
        why = (f"every image of {part} failed" if assigned[part] else
               f"no image fell into {part} ({len(images)} images, --split {_split_text(split)})")
        summary.notes.append(f"{why}, so no {part} split was written" + _EMPTY_SPLIT_NOTE.get(format, ""))
    for part in splits:
        members = per_split.get(part, [])
        summary.images[part] = len(members)
        if part in summary.empty_splits:
            continue
        counts: Counter = Counter()
        items = _items(opened, members, format)
        summary.annotations += _write_split(format, work, part, items, members, opened, cats, counts,
                                            polygons=polygons, polygon_holes=polygon_holes,
                                            categories=categories, summary=summary, ls_root=ls_root,
                                            final=dest)
        for key, n in counts.items():
            if key.startswith("unmapped:"):
                unmapped[key.split(":", 1)[1]] += n
            elif key not in ("unmapped", "unmapped_labels", "unmapped_detections"):
                report[key] += n
    names = [c["name"] for c in cats.categories]
    if format.startswith("yolo"):
        from .yolo import data_yaml

        text = data_yaml(names, splits, summary.empty_splits).encode("utf-8")
        write_bytes_atomic(work / "dataset.yaml", text)  # FiftyOne's YOLOv5 importer's default name
        write_bytes_atomic(work / "data.yaml", text)     # the name Ultralytics' docs use
    elif format == "hf":
        from .hf import hf_readme

        write_bytes_atomic(work / "README.md", hf_readme(names).encode("utf-8"))
    elif format == "label-studio":
        from .label_studio import write_config

        write_config(work, names, polygons=polygons)
    _move_into_place(work, dest)
    summary.report = {k: v for k, v in sorted(report.items()) if v}
    summary.unmapped = dict(sorted(unmapped.items()))
    return summary


#: The staging folder inside ``dest`` an export is built in; its entries are moved into ``dest`` only at
#: the end, so an interrupted export leaves only this folder, which a rerun removes and redoes.
PARTIAL = ".visionkit-partial"


def _move_into_place(work: Path, dest: Path) -> None:
    """Move every top-level entry of the finished staging folder into ``dest``, then remove it."""
    try:
        for entry in sorted(work.iterdir()):
            os.replace(entry, dest / entry.name)
        work.rmdir()
    except OSError as exc:
        raise ExportError(f"cannot move the finished export from {work} into {dest}: {exc}") from exc


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


_Member = tuple[int, ImageEntry]  # (run index, image)


def _out_name(format: str, file_name: str) -> str:
    """An image's path under its split's image folder (see :func:`~visionkit.formats.hf.dataset_name`
    for ``hf``)."""
    if format == "hf":
        from .hf import dataset_name

        return dataset_name(dest_name(file_name))
    return dest_name(file_name)


def _copy_images(opened: list[Run], images: list[_Member], where: Mapping[str, str], dest: Path, format: str,
                 summary: ExportSummary, on_image: Callable[[str, str | None], None] | None
                 ) -> dict[str, list[_Member]]:
    """Copy every image upright into its split's folder; failures go to ``summary.failures``."""
    names_out: dict[tuple[str, str], str] = {}
    per_split: dict[str, list[_Member]] = {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {dest}: {exc}") from exc
    yolo = format.startswith("yolo")
    for k, im in sorted(images, key=lambda m: m[1].file_name):
        run = opened[k]
        name, part = _out_name(format, im.file_name), where[im.file_name]
        error = None
        # YOLO pairs images/<split>/a.jpg with labels/<split>/a.txt, so a.jpg and a.png would share (and
        # merge into) one label file: for YOLO the taken name is the stem, for the others the file name.
        key = (part, (Path(name).with_suffix("").as_posix() if yolo else name).casefold())
        if key in names_out:
            taken = (f"its label file labels/{part}/{Path(name).with_suffix('.txt').as_posix()}"
                     if yolo else f"its dataset name {name}")
            error = f"{taken} is taken by {names_out[key]}; rename one of the two images"
        else:
            try:
                target = safe_join(dest, f"{image_folder(format, part)}/{name}", file=run.coco.name,
                                   field=f"images[{im.pos}].file_name")
                summary.reencoded += copy_upright(run.source(im), target, (im.width, im.height))
                names_out[key] = im.file_name
                per_split.setdefault(part, []).append((k, im))
            except VisionkitError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"cannot copy {im.file_name}: {exc}"
        if error is not None:
            summary.failures.append({"file": im.file_name, "run": str(run.folder), "error": error})
        if on_image is not None:
            on_image(im.file_name, error)
    return per_split


def _decodable(opened: list[Run], images: list[_Member], summary: ExportSummary,
               on_image: Callable[[str, str | None], None] | None) -> list[_Member]:
    """``images`` without those whose masks do not decode (listed in the failures, given to ``on_image``),
    read from the runs one image at a time."""
    bad: set[tuple[int, int]] = set()
    for k, run in enumerate(opened):
        for record in run.records():
            try:
                run.coco.detections(record)
            except VisionkitError as exc:
                im = record.image
                bad.add((k, im.pos))
                summary.failures.append({"file": im.file_name, "run": str(run.folder), "error": str(exc)})
                if on_image is not None:
                    on_image(im.file_name, str(exc))
    return [(k, im) for k, im in images if (k, im.pos) not in bad]


def _items(opened: list[Run], members: list[_Member], format: str
           ) -> Iterator[tuple[str, tuple[int, int], Detections]]:
    """``(dataset name, (width, height), Detections)`` of a split's images, streamed from the runs in
    their order, one image decoded at a time (every one decodes: see :func:`_decodable`)."""
    wanted: dict[int, set[int]] = {}
    for k, im in members:
        wanted.setdefault(k, set()).add(im.pos)
    for k in sorted(wanted):
        run = opened[k]
        for record in run.records(wanted[k]):
            im = record.image
            yield _out_name(format, im.file_name), (im.width, im.height), run.coco.detections(record)


def _write_split(format: str, dest: Path, part: str, items: Iterator, members: list[_Member],
                 opened: list[Run], cats, report: Counter, *, polygons: bool, polygon_holes: str, categories,
                 summary: ExportSummary, ls_root=None, final: Path | None = None) -> int:
    """Write one split's labels in ``format`` from ``items`` (see :func:`_items`); returns the instances
    written. Counts go to ``report`` (``unmapped:<label>`` for labels outside the categories)."""
    if format == "coco":
        from ..media.atomic import write_json_atomic
        from .coco import CategoryMap
        from .coco_write import CocoWriter
        from .keypoints import keypoints_dataset

        (dest / "annotations").mkdir(parents=True, exist_ok=True)
        written = 0
        with CocoWriter(dest / "annotations" / f"instances_{part}.json", cats, polygons=polygons,
                        polygon_holes=polygon_holes, info={"description": f"visionkit export, split {part}"}
                        ) as writer:
            for name, wh, dets in items:
                written += writer.add(name, wh, dets)
            info = writer.close()["visionkit"]
        report.update({k: v for k, v in info.items() if isinstance(v, int)})
        report.update({f"unmapped:{k}": n for k, n in info.get("unmapped_labels", {}).items()})
        points = [(dest_name(im.file_name), im.width, im.height, opened[k].points[im.file_name])
                  for k, im in members if opened[k].points.get(im.file_name)]
        if points:
            # point categories: one list for every split, so ids agree between the split files
            kp_cats = CategoryMap(categories).fit(p["label"] for run in opened for rows in run.points.values()
                                                  for p in rows).categories
            kp = keypoints_dataset(points, kp_cats)
            write_json_atomic(dest / "annotations" / f"keypoints_{part}.json", kp)
            summary.points_written += len(kp["annotations"])
            report.update({f"unmapped:{k}": n
                           for k, n in kp["info"]["visionkit"].get("unmapped_labels", {}).items()})
        return written
    if format == "hf":
        from .hf import write_metadata

        return write_metadata(dest / part, items, cats, report)
    if format == "label-studio":
        from .label_studio import write_split_tasks

        return write_split_tasks(dest, part, items, cats, report, polygons=polygons,
                                 root=None if ls_root is None else Path(ls_root), final=final)
    from .yolo import write_labels

    return write_labels(dest / "labels" / part, items, cats, segment=format == "yolo-segment", report=report,
                        source=", ".join(sorted({opened[k].coco.name for k, _ in members})))
