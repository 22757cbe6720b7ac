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
  and ``data.yaml`` (see :mod:`visionkit.formats.yolo`); ``yolo`` picks segment when the run has masks.

Images are copied UPRIGHT: a file with an EXIF orientation other than 1 is re-encoded with the rotation
applied and the orientation tag removed (JPEG at quality 95, other formats lossless), because
torchvision's ``CocoDetection`` and datumaro decode files without applying it, so the pixels would
disagree with the upright width and height of the annotations. Other files are copied byte for byte.
HEIC/HEIF files become ``.jpg`` (trainers cannot read HEIC).

Split: every image goes to ``train`` unless ``split`` asks for more, e.g. ``{"val": 0.2}``: each image's
split comes from a hash of ``(seed, file_name)`` alone (see :func:`assign_splits`), so the same image + the
same seed = the same split, whatever else is in the runs: a run that grows never moves an image between
splits. The split sizes are the fractions on average, not exactly.

Category ids are the same in every split file, and fixed across runs with ``categories`` (see
:func:`visionkit.formats.coco.load_categories`); labels outside it are dropped and reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..core.detections import Detections
from ..errors import ExportError, InputError, VisionkitError
from ..media.atomic import write_bytes_atomic, write_json_atomic
from ..media.paths import safe_join
from .export_runs import open_runs

__all__ = ["FORMATS", "ExportSummary", "parse_split", "assign_splits", "copy_upright", "export_dataset"]

#: ``format`` values of :func:`export_dataset`.
FORMATS = ("coco", "yolo", "yolo-detect", "yolo-segment")
_COPY_AS_IS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SAVE = {".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}), ".png": ("PNG", {}),
         ".bmp": ("BMP", {}), ".webp": ("WEBP", {"lossless": True})}


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

    @property
    def ok(self) -> bool:
        return not self.failures


def parse_split(text: str | None) -> dict[str, float]:
    """``"val=0.2"`` or ``"val=0.1,test=0.1"`` -> ``{"val": 0.2, ...}``; None or ``""`` -> ``{}``."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or not name or not 0 < frac < 1:
            raise ExportError(f"split {part.strip()!r}: expected NAME=FRACTION with 0 < FRACTION < 1, "
                              "e.g. val=0.2")
        if name == "train" or name in out or not name.replace("-", "").replace("_", "").isalnum():
            raise ExportError(f"split {part.strip()!r}: the name must be a new word other than 'train' "
                              "(train takes the images left over)")
        out[name] = frac
    if sum(out.values()) >= 1:
        raise ExportError(f"split fractions {out} add up to 1 or more; train would be empty")
    return out


def assign_splits(names: Sequence[str], split: Mapping[str, float], seed: int = 0) -> dict[str, str]:
    """``name -> split`` for every name, each image on its own: same name + same seed = same split.

    An image's place is ``u``, the first 8 bytes of ``sha256(f"{seed}:{name}")`` as a fraction in
    ``[0, 1)``; the named splits take consecutive ranges of ``u`` in the order given (``val=0.2`` is
    ``u < 0.2``) and ``train`` takes the rest. So adding or removing images never moves the others (a run
    that grows keeps its val images in val), raising a fraction only moves images from ``train`` into that
    split, and the input order does not matter. The sizes are ``n * fraction`` on average, not exactly
    (for 100 images at 0.2 the val split holds 20 +- 4, one standard deviation).
    """
    out = {}
    for name in names:
        digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogatepass")).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
        edge, where = 0.0, "train"
        for split_name, frac in split.items():
            edge += frac
            if u < edge:
                where = split_name
                break
        out[name] = where
    return out


def dest_name(file_name: str) -> str:
    """Where an image goes under ``images/<split>/``: its file name, HEIC/HEIF as ``.jpg``."""
    path = Path(file_name)
    return path.with_suffix(".jpg").as_posix() if path.suffix.lower() not in _COPY_AS_IS else path.as_posix()


def copy_upright(source: Path, dest: Path, expected_wh: tuple[int, int]) -> bool:
    """Copy an image so its pixels are upright (EXIF applied, orientation removed). Returns True when it
    was re-encoded, False when copied byte for byte.

    Raises:
        InputError: the source cannot be read, or its upright size differs from ``expected_wh`` (the
            image changed since it was labelled).
    """
    from ..media import imageio

    size = imageio.image_size(source)
    if size != tuple(expected_wh):
        raise InputError(f"{source}: upright size {size[0]}x{size[1]} differs from the annotations' "
                         f"{expected_wh[0]}x{expected_wh[1]}; the image changed since it was labelled")
    suffix = source.suffix.lower()
    with Image.open(source) as im:
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: exif_transpose cannot use it either
            orientation = 1
    if suffix in _COPY_AS_IS and orientation in (1, None):
        write_bytes_atomic(dest, source.read_bytes())
        return False
    upright = imageio.open_upright(source)  # exif_transpose: pixels turned, orientation tag dropped
    fmt, options = _SAVE.get(dest.suffix.lower(), _SAVE[".jpg"])
    if fmt == "JPEG" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    exif = upright.getexif()
    exif.pop(0x0112, None)
    buf = io.BytesIO()
    upright.save(buf, format=fmt, exif=exif.tobytes(), **options)
    write_bytes_atomic(dest, buf.getvalue())
    return True


def export_dataset(runs: Sequence[str | os.PathLike] | str | os.PathLike, dest: str | os.PathLike, *,
                   format: str = "coco", split: Mapping[str, float] | str | None = None, seed: int = 0,
                   categories: Sequence[str | Mapping] | None = None,
                   images_root: str | os.PathLike | None = None, polygons: bool = False,
                   polygon_holes: str = "rle",
                   on_image: Callable[[str, str | None], None] | None = None) -> ExportSummary:
    """Export labelled runs to a dataset folder (see the module docstring for layouts and rules).

    The runs are read through :mod:`visionkit.formats.coco_stream`: checked first (a malformed file is
    an InputError before anything is written), then streamed one image at a time, images in the runs'
    order; the COCO files are written by :class:`~visionkit.formats.coco_write.CocoWriter`. Memory holds
    a few hundred bytes per image, not its annotations.

    Args:
        runs: one run folder or several (``visionkit label --out`` folders).
        dest: the dataset folder; must be empty or absent.
        format: one of :data:`FORMATS`.
        split: e.g. ``{"val": 0.2}`` or ``"val=0.2"``; None puts every image in ``train``.
        seed: the split's random seed.
        categories: fixed categories (names or ``{id, name}`` dicts); default: the runs' labels, sorted.
        images_root: where the input images are, when the runs have no (or outdated) ``sources.json``.
        polygons, polygon_holes: COCO segmentation choice, as in :func:`visionkit.formats.coco.to_coco`.
        on_image: called with ``(file_name, error or None)`` after each image.

    Returns:
        An :class:`ExportSummary`. An image that cannot be copied or decoded is listed in ``failures`` and
        left out (with its annotations); the others are exported.

    Raises:
        ExportError: bad options, a non-empty ``dest``, or runs that cannot be read.
        InputError: a malformed run file (the message names the file, the index and the field).
    """
    from .coco import CategoryMap, check_polygon_holes
    from .coco_write import CocoWriter
    from .keypoints import keypoints_dataset
    from .yolo import data_yaml, yolo_lines

    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    check_polygon_holes(polygon_holes)
    split = parse_split(split) if isinstance(split, str) or split is None else dict(split)
    parse_split(",".join(f"{k}={v}" for k, v in split.items()))  # the same checks for a dict
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} exists and is not an empty folder; choose a new --to folder")
    opened = open_runs([runs] if isinstance(runs, (str, os.PathLike)) else runs, images_root)
    labels: Counter = Counter()
    for run in opened:
        labels.update(run.labels())
    cats = CategoryMap(categories).fit(labels.elements())
    summary = ExportSummary(dest=dest, format=format)
    summary.points = sum(len(rows) for run in opened for rows in run.points.values())
    # point categories: one list for every split, so ids agree between the split files
    kp_cats = CategoryMap(categories).fit(p["label"] for run in opened for rows in run.points.values()
                                          for p in rows).categories
    if format == "yolo":
        format = "yolo-segment" if any(run.coco.has_masks for run in opened) else "yolo-detect"
        summary.format = format
    where = assign_splits([im.file_name for run in opened for im in run.coco.images], split, seed)
    splits = ["train"] + [s for s in split if s != "train"]
    class_of = {c["id"]: k for k, c in enumerate(cats.categories)}
    # YOLO pairs images/<split>/a.jpg with labels/<split>/a.txt, so a.jpg and a.png would share (and merge
    # into) one label file: for YOLO the taken name is the stem, for COCO the whole file name. Of the images
    # that want one name, the first in file-name order gets it, whatever the order of the runs.
    owner: dict[tuple[str, str], str] = {}
    for run in opened:
        for im in run.coco.images:
            key = _name_key(im.file_name, where[im.file_name], format)
            if key not in owner or im.file_name < owner[key]:
                owner[key] = im.file_name
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for part in splits:
            (dest / "images" / part).mkdir(parents=True, exist_ok=True)
            (dest / ("annotations" if format == "coco" else "labels" / Path(part))).mkdir(parents=True,
                                                                                          exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {dest}: {exc}") from exc
    report: Counter = Counter()
    unmapped: Counter = Counter()
    points: dict[str, list] = {}
    with contextlib.ExitStack() as stack:
        writers = {part: stack.enter_context(CocoWriter(
            dest / "annotations" / f"instances_{part}.json", cats, polygons=polygons,
            polygon_holes=polygon_holes, info={"description": f"visionkit export, split {part}"}))
            for part in splits} if format == "coco" else {}
        for run in opened:
            for record in run.records():
                im = record.image
                name, part = dest_name(im.file_name), where[im.file_name]
                first = owner[_name_key(im.file_name, part, format)]
                error = None
                if first != im.file_name:
                    taken = (f"its label file labels/{part}/{Path(name).with_suffix('.txt').as_posix()}"
                             if format != "coco" else f"its dataset name {name}")
                    error = f"{taken} is taken by {first}; rename one of the two images"
                else:
                    try:
                        dets = run.coco.detections(record)
                        field = f"images[{im.pos}].file_name"
                        target = safe_join(dest, f"images/{part}/{name}", file=run.coco.name, field=field)
                        summary.reencoded += copy_upright(run.source(im), target, (im.width, im.height))
                        summary.images[part] = summary.images.get(part, 0) + 1
                        if format == "coco":
                            summary.annotations += writers[part].add(name, (im.width, im.height), dets)
                            if run.points.get(im.file_name):
                                points.setdefault(part, []).append(
                                    (name, im.width, im.height, run.points[im.file_name]))
                        else:
                            stem = Path(name).with_suffix(".txt").as_posix()
                            summary.annotations += _write_yolo_labels(
                                safe_join(dest, f"labels/{part}/{stem}", file=run.coco.name, field=field),
                                dets, cats, class_of, format == "yolo-segment", report, unmapped, yolo_lines)
                    except VisionkitError as exc:
                        error = str(exc)
                    except OSError as exc:
                        error = f"cannot copy {run.source(im)}: {exc}"
                if error is not None:
                    summary.failures.append({"file": im.file_name, "run": str(run.folder), "error": error})
                if on_image is not None:
                    on_image(im.file_name, error)
        for writer in writers.values():
            info = writer.close()["visionkit"]
            report.update(info)
            unmapped.update(info.get("unmapped_labels", {}))
    for part in splits:
        summary.images.setdefault(part, 0)
        if points.get(part):
            kp = keypoints_dataset(points[part], kp_cats)
            write_json_atomic(dest / "annotations" / f"keypoints_{part}.json", kp)
            summary.points_written += len(kp["annotations"])
            unmapped.update(kp["info"]["visionkit"].get("unmapped_labels", {}))
    summary.images = {part: summary.images[part] for part in splits}
    if format != "coco":
        write_bytes_atomic(dest / "data.yaml", data_yaml([c["name"] for c in cats.categories], splits)
                           .encode("utf-8"))
    report.pop("unmapped_labels", None)
    report.pop("unmapped_detections", None)
    summary.report = {k: v for k, v in sorted(report.items()) if v}
    summary.unmapped = dict(sorted(unmapped.items()))
    return summary


def _name_key(file_name: str, part: str, format: str) -> tuple[str, str]:
    """The name an image takes in its split: its label file's stem for YOLO, its file name for COCO."""
    name = dest_name(file_name)
    return part, (Path(name).with_suffix("").as_posix() if format != "coco" else name).casefold()


def _write_yolo_labels(path: Path, dets: Detections, cats, class_of: dict, segment: bool, report: Counter,
                       unmapped: Counter, yolo_lines) -> int:
    """Write one image's YOLO label file; returns its lines."""
    classes = {}
    for lbl in set(dets.labels.tolist()):
        cat = cats.lookup(lbl)
        if cat is not None:
            classes[lbl] = class_of[cat]
    counts: Counter = Counter()
    lines = yolo_lines(dets, classes, segment=segment, report=counts)
    write_bytes_atomic(path, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    for key, n in counts.items():
        if key.startswith("unmapped:"):
            unmapped[key.split(":", 1)[1]] += n
        elif key != "unmapped":
            report[key] += n
    return len(lines)
