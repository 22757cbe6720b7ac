"""A finished ``visionkit label`` run (or several) -> a self-contained dataset folder a trainer loads.

What a run folder must contain (all written by ``visionkit label``):

* ``annotations.json``: the COCO annotations (required);
* ``sources.json``: where each input image is (``file_name`` -> absolute path); without it (runs made
  before it existed, or images moved since), pass ``images_root``, the input folder the run was given;
* ``keypoints.json``: the points of pointing answers, when there were any (optional).

Layouts written under ``dest`` (which must be empty or absent):

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
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.detections import Detections
from ..errors import ExportError, VisionkitError
from ..media.atomic import write_bytes_atomic
from ..media.paths import check_name, safe_join
from .coco_read import has_mask, image_detections, index_coco
from .splits import assign_splits, parse_split, train_never_empty
from .upright import copy_upright, dest_name

__all__ = ["FORMATS", "ExportSummary", "RunImage", "load_runs", "parse_split", "assign_splits",
           "copy_upright", "export_dataset", "image_folder"]

#: ``format`` values of :func:`export_dataset`.
FORMATS = ("coco", "yolo", "yolo-detect", "yolo-segment", "label-studio", "hf")

@dataclass
class RunImage:
    """One labelled image of a run, ready to export. Its masks are decoded only when
    :attr:`detections` is read (each time), so an export holds one image's masks at a time."""

    file_name: str           # as in the run's annotations.json (relative to its input folder)
    source: Path             # the input image
    width: int
    height: int
    annotations: list        # its COCO annotations, as in the file
    names: dict              # category id -> name
    with_score: bool = False
    points: list = field(default_factory=list)  # point annotations (formats.keypoints), with "label"
    run: Path = Path(".")

    @property
    def labels(self) -> list[str]:
        return [self.names[int(a["category_id"])] for a in self.annotations]

    @property
    def detections(self) -> Detections:
        """Detections (labels are category names), decoded from the annotations now."""
        return image_detections({"width": self.width, "height": self.height}, self.annotations, self.names,
                                self.with_score)


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


def load_runs(runs: Sequence[str | os.PathLike], images_root: str | os.PathLike | None = None
              ) -> list[RunImage]:
    """Read the labelled images of run folders (see the module docstring for what they hold).

    Raises:
        ExportError: a run folder lacks ``annotations.json`` or has broken JSON, an image appears in two
            runs, or the images cannot be located (no ``sources.json`` and no ``images_root``).
    """
    out: list[RunImage] = []
    seen: dict[str, Path] = {}
    for run in map(Path, runs):
        dataset = _read_json(run / "annotations.json", "is it a `visionkit label` output folder?")
        sources = None
        if images_root is None:
            data = _read_json(run / "sources.json", "pass the input folder the run was given (--images)")
            sources = data.get("images") if isinstance(data, Mapping) else None
            if not isinstance(sources, Mapping):
                raise ExportError(f"{run / 'sources.json'}: expected {{'images': {{file_name: path}}}}")
        points: dict[str, list] = {}
        if (run / "keypoints.json").exists():
            kp = _read_json(run / "keypoints.json", "")
            kp_names = {c["id"]: c["name"] for c in kp.get("categories", [])}
            kp_files = {i["id"]: i["file_name"] for i in kp.get("images", [])}
            for ann in kp.get("annotations", []):
                row = {k: v for k, v in ann.items() if k not in ("id", "image_id", "category_id")}
                row["label"] = kp_names[ann["category_id"]]
                points.setdefault(kp_files[ann["image_id"]], []).append(row)
        entries, by_image, names, with_score = index_coco(dataset)
        for k, img in enumerate(entries):
            # the name becomes a path under DEST (and under images_root): refused when it would leave it
            name = check_name(img.get("file_name"), file=run / "annotations.json",
                              field=f"images[{k}].file_name")
            if name in seen:
                raise ExportError(f"{name} is in two runs ({seen[name]} and {run}); export them separately "
                                  "or label the image once")
            seen[name] = run
            source = (safe_join(images_root, name, file=run / "annotations.json",
                                field=f"images[{k}].file_name") if images_root is not None
                      else Path(sources.get(name, run / "?missing" / name)))
            out.append(RunImage(name, source, int(img["width"]), int(img["height"]),
                                by_image.get(int(img["id"]), []), names, with_score,
                                points.get(name, []), run))
    return out


def _read_json(path: Path, hint: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(f"{path} not found{'; ' + hint if hint else ''}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc


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
        from .hf import split_folder

        for name in split:
            split_folder(name)  # a name datasets' imagefolder would not see as a split: ExportError now
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} exists and is not an empty folder; choose a new --to folder")
    images = load_runs([runs] if isinstance(runs, (str, os.PathLike)) else runs, images_root)
    cats = CategoryMap(categories).fit(lbl for im in images for lbl in im.labels)
    summary = ExportSummary(dest=dest, format=format)
    summary.points = sum(len(im.points) for im in images)
    if format == "yolo":
        masks = any(has_mask(a) for im in images for a in im.annotations)
        format = "yolo-segment" if masks else "yolo-detect"
        summary.format = format
    where = assign_splits([im.file_name for im in images], split, seed)
    moved = train_never_empty(where, seed)
    if moved is not None:
        summary.notes.append(f"no image fell into train with --split {_split_text(split)}; {moved} was moved "
                             "there, so train is not empty")
    per_split = _copy_images(images, where, dest, format, summary, on_image)

    report: Counter = Counter()
    unmapped: Counter = Counter()
    splits = ["train"] + [s for s in split if s != "train"]
    summary.empty_splits = [s for s in splits[1:] if not per_split.get(s)]
    for part in summary.empty_splits:
        summary.notes.append(f"no image fell into {part} ({len(images)} images, --split "
                             f"{_split_text(split)}), so no {part} split was written"
                             + _EMPTY_SPLIT_NOTE.get(format, ""))
    for part in splits:
        members = per_split.get(part, [])
        summary.images[part] = len(members)
        if part in summary.empty_splits:
            continue
        counts: Counter = Counter()
        summary.annotations += _write_split(format, dest, part, members, cats, counts, polygons=polygons,
                                            polygon_holes=polygon_holes, categories=categories,
                                            images=images, summary=summary, ls_root=ls_root)
        for key, n in counts.items():
            if key.startswith("unmapped:"):
                unmapped[key.split(":", 1)[1]] += n
            elif key not in ("unmapped", "unmapped_labels", "unmapped_detections"):
                report[key] += n
    names = [c["name"] for c in cats.categories]
    if format.startswith("yolo"):
        from .yolo import data_yaml

        text = data_yaml(names, splits, summary.empty_splits).encode("utf-8")
        write_bytes_atomic(dest / "dataset.yaml", text)  # FiftyOne's YOLOv5 importer's default name
        write_bytes_atomic(dest / "data.yaml", text)     # the name Ultralytics' docs use
    elif format == "hf":
        from .hf import hf_readme

        write_bytes_atomic(dest / "README.md", hf_readme(names).encode("utf-8"))
    elif format == "label-studio":
        from .label_studio import write_config

        write_config(dest, names, polygons=polygons)
    summary.report = {k: v for k, v in sorted(report.items()) if v}
    summary.unmapped = dict(sorted(unmapped.items()))
    return summary


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


def _copy_images(images: list[RunImage], where: Mapping[str, str], dest: Path, format: str,
                 summary: ExportSummary, on_image: Callable[[str, str | None], None] | None
                 ) -> dict[str, list[RunImage]]:
    """Copy every image upright into its split's folder; failures go to ``summary.failures``."""
    names_out: dict[tuple[str, str], str] = {}
    per_split: dict[str, list[RunImage]] = {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {dest}: {exc}") from exc
    yolo = format.startswith("yolo")
    for im in sorted(images, key=lambda i: i.file_name):
        name, part = dest_name(im.file_name), where[im.file_name]
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
                target = safe_join(dest, f"{image_folder(format, part)}/{name}",
                                   file=im.run / "annotations.json", field="file_name")
                summary.reencoded += copy_upright(im.source, target, (im.width, im.height))
                names_out[key] = im.file_name
                per_split.setdefault(part, []).append(im)
            except VisionkitError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"cannot copy {im.source}: {exc}"
        if error is not None:
            summary.failures.append({"file": im.file_name, "run": str(im.run), "error": error})
        if on_image is not None:
            on_image(im.file_name, error)
    return per_split


def _write_split(format: str, dest: Path, part: str, members: list[RunImage], cats, report: Counter, *,
                 polygons: bool, polygon_holes: str, categories, images: list[RunImage],
                 summary: ExportSummary, ls_root=None) -> int:
    """Write one split's labels in ``format``; returns the instances written. Counts go to ``report``
    (``unmapped:<label>`` for labels outside the categories)."""
    items = ((dest_name(m.file_name), (m.width, m.height), m.detections) for m in members)
    if format == "coco":
        from ..media.atomic import write_json_atomic
        from .coco import CategoryMap, to_coco
        from .keypoints import keypoints_dataset

        ds = to_coco(items, cats.categories, polygons=polygons, polygon_holes=polygon_holes,
                     info={"description": f"visionkit export, split {part}"})
        write_json_atomic(dest / "annotations" / f"instances_{part}.json", ds)
        info = ds["info"]["visionkit"]
        report.update({k: v for k, v in info.items() if isinstance(v, int)})
        report.update({f"unmapped:{k}": n for k, n in info.get("unmapped_labels", {}).items()})
        if any(m.points for m in members):
            # point categories: one list for every split, so ids agree between the split files
            kp_cats = CategoryMap(categories).fit(p["label"] for im in images for p in im.points).categories
            kp = keypoints_dataset([(dest_name(m.file_name), m.width, m.height, m.points) for m in members],
                                   kp_cats)
            write_json_atomic(dest / "annotations" / f"keypoints_{part}.json", kp)
            summary.points_written += len(kp["annotations"])
            report.update({f"unmapped:{k}": n
                           for k, n in kp["info"]["visionkit"].get("unmapped_labels", {}).items()})
        return len(ds["annotations"])
    if format == "hf":
        from .hf import write_metadata

        return write_metadata(dest / part, items, cats, report)
    if format == "label-studio":
        from .label_studio import write_split_tasks

        return write_split_tasks(dest, part, items, cats, report, polygons=polygons,
                                 root=None if ls_root is None else Path(ls_root))
    from .yolo import write_labels

    return write_labels(dest / "labels" / part, items, cats, segment=format == "yolo-segment", report=report,
                        source=", ".join(sorted({str(m.run / "annotations.json") for m in members})))
