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

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..core.detections import Detections
from ..errors import ExportError, InputError, VisionkitError
from ..media.atomic import SyncBatch, write_bytes_atomic
from .coco_read import has_mask, image_detections, index_coco

__all__ = ["FORMATS", "ExportSummary", "RunImage", "load_runs", "parse_split", "assign_splits",
           "copy_upright", "export_dataset"]

#: ``format`` values of :func:`export_dataset`.
FORMATS = ("coco", "yolo", "yolo-detect", "yolo-segment")
_COPY_AS_IS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SAVE = {".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}), ".png": ("PNG", {}),
         ".bmp": ("BMP", {}), ".webp": ("WEBP", {"lossless": True})}


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
        for img in entries:
            name = img["file_name"]
            if name in seen:
                raise ExportError(f"{name} is in two runs ({seen[name]} and {run}); export them separately "
                                  "or label the image once")
            seen[name] = run
            source = (Path(images_root) / name if images_root is not None
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
        An :class:`ExportSummary`. An image that cannot be copied is listed in ``failures`` and left out
        (with its annotations); the others are exported.

    Raises:
        ExportError: bad options, a non-empty ``dest``, or runs that cannot be read.
    """
    from ..media.atomic import write_json_atomic
    from .coco import CategoryMap, check_polygon_holes, to_coco
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
    images = load_runs([runs] if isinstance(runs, (str, os.PathLike)) else runs, images_root)
    cats = CategoryMap(categories).fit(lbl for im in images for lbl in im.labels)
    summary = ExportSummary(dest=dest, format=format)
    summary.points = sum(len(im.points) for im in images)
    # point categories: one list for every split, so ids agree between the split files
    kp_cats = CategoryMap(categories).fit(p["label"] for im in images for p in im.points).categories
    if format == "yolo":
        masks = any(has_mask(a) for im in images for a in im.annotations)
        format = "yolo-segment" if masks else "yolo-detect"
        summary.format = format
    where = assign_splits([im.file_name for im in images], split, seed)
    names_out: dict[tuple[str, str], str] = {}
    per_split: dict[str, list[RunImage]] = {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {dest}: {exc}") from exc
    for im in sorted(images, key=lambda i: i.file_name):
        name, part = dest_name(im.file_name), where[im.file_name]
        error = None
        # YOLO pairs images/<split>/a.jpg with labels/<split>/a.txt, so a.jpg and a.png would share (and
        # merge into) one label file: for YOLO the taken name is the stem, for COCO the whole file name.
        key = (part, (Path(name).with_suffix("").as_posix() if format != "coco" else name).casefold())
        if key in names_out:
            taken = (f"its label file labels/{part}/{Path(name).with_suffix('.txt').as_posix()}"
                     if format != "coco" else f"its dataset name {name}")
            error = f"{taken} is taken by {names_out[key]}; rename one of the two images"
        else:
            try:
                summary.reencoded += copy_upright(im.source, dest / "images" / part / name,
                                                  (im.width, im.height))
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

    report: Counter = Counter()
    unmapped: Counter = Counter()
    labels = SyncBatch()  # the label files are fsynced together at the end, not one by one
    splits = ["train"] + [s for s in split if s != "train"]
    for part in splits:
        members = per_split.get(part, [])
        summary.images[part] = len(members)
        if format == "coco":
            ds = to_coco(((dest_name(m.file_name), (m.width, m.height), m.detections) for m in members),
                         cats.categories, polygons=polygons, polygon_holes=polygon_holes,
                         info={"description": f"visionkit export, split {part}"})
            write_json_atomic(dest / "annotations" / f"instances_{part}.json", ds)
            summary.annotations += len(ds["annotations"])
            report.update(ds["info"]["visionkit"])
            unmapped.update(ds["info"]["visionkit"].get("unmapped_labels", {}))
            kp_entries = [(dest_name(m.file_name), m.width, m.height, m.points) for m in members]
            if any(m.points for m in members):
                kp = keypoints_dataset(kp_entries, kp_cats)
                write_json_atomic(dest / "annotations" / f"keypoints_{part}.json", kp)
                summary.points_written += len(kp["annotations"])
                unmapped.update(kp["info"]["visionkit"].get("unmapped_labels", {}))
        else:
            class_of = {}
            for m in members:
                for lbl in set(m.labels):
                    cat = cats.lookup(lbl)
                    if cat is not None:
                        class_of[lbl] = [c["id"] for c in cats.categories].index(cat)
                counts: Counter = Counter()
                dets = m.detections
                lines = yolo_lines(dets, class_of, segment=format == "yolo-segment", report=counts)
                stem = Path(dest_name(m.file_name)).with_suffix(".txt")
                labels.write_bytes(dest / "labels" / part / stem, ("\n".join(lines) + "\n" if lines else "")
                                   .encode("utf-8"))
                summary.annotations += len(lines)
                for key, n in counts.items():
                    if key.startswith("unmapped:"):
                        unmapped[key.split(":", 1)[1]] += n
                    elif key != "unmapped":
                        report[key] += n
            (dest / "images" / part).mkdir(parents=True, exist_ok=True)
            (dest / "labels" / part).mkdir(parents=True, exist_ok=True)
    labels.sync()
    if format != "coco":
        write_bytes_atomic(dest / "data.yaml", data_yaml([c["name"] for c in cats.categories], splits)
                           .encode("utf-8"))
    report.pop("unmapped_labels", None)
    report.pop("unmapped_detections", None)
    summary.report = {k: v for k, v in sorted(report.items()) if v}
    summary.unmapped = dict(sorted(unmapped.items()))
    return summary
