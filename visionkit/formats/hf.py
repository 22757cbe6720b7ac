"""Hugging Face ``datasets`` ``imagefolder``: ``<split>/<file_name>`` + ``<split>/metadata.jsonl``.

``datasets.load_dataset("imagefolder", data_dir=DEST)`` gives one row per image with the columns
``image``, ``image_id``, ``width``, ``height`` and ``objects``, a dict of lists with one entry per
instance (the layout of the Hub's object-detection datasets, e.g. ``cppe-5``):

* ``id``: the instance id (unique in the split);
* ``bbox``: ``[x, y, width, height]`` in pixels (COCO xywh), the box snapped outward to whole pixels as
  in the COCO export (:mod:`visionkit.formats.instances`);
* ``category``: the class index, ``0 .. n-1`` in the order of ``DEST/README.md`` (the same order as the
  YOLO ``names``). ``imagefolder`` reads it as a plain integer; to get names, cast it to a ``ClassLabel``
  (the README written beside the data shows how);
* ``area``: the mask's pixel count, or the box area for a box-only detection;
* ``segmentation``: the mask as COCO compressed RLE, ``{"size": [height, width], "counts": str}``
  (``pycocotools.mask.decode`` after ``counts.encode()``); a box-only detection's mask is its box, as
  in the COCO export. RLE keeps holes and every part, and gives every row the same Arrow type.

Split folders: ``datasets`` recognises only the names ``train``, ``validation`` (``val``, ``valid``,
``dev``) and ``test`` (``eval``, ...) (``datasets.data_files.SPLIT_KEYWORDS``); a folder with another
name would be skipped without a word, so other split names are refused.
See https://huggingface.co/docs/datasets/image_dataset#object-detection for the metadata layout.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core.detections import Detections
from ..errors import ExportError
from ..media.atomic import AtomicFile, StreamWriter

__all__ = ["SPLIT_NAMES", "check_split_names", "split_folder", "dataset_name", "MetadataRows",
           "MetadataWriter", "metadata_rows", "write_metadata", "hf_readme"]

#: Split folder names ``datasets`` maps to a split (``datasets.data_files.SPLIT_KEYWORDS``).
SPLIT_NAMES = ("train", "training", "validation", "valid", "dev", "val", "test", "testing", "eval",
               "evaluation")


#: Which split ``datasets`` loads each folder name as (``datasets.data_files.SPLIT_KEYWORDS``).
_SPLIT_OF = {**dict.fromkeys(("train", "training"), "train"),
             **dict.fromkeys(("validation", "valid", "dev", "val"), "validation"),
             **dict.fromkeys(("test", "testing", "eval", "evaluation"), "test")}

#: A folder name ``datasets`` takes for a split: a keyword alone or set off by one of
#: ``datasets.data_files.NON_WORDS_CHARS`` (``-._ 0-9``), as in its ``KEYWORDS_IN_DIR_NAME_BASE_PATTERNS``.
_SPLIT_LIKE = re.compile(r"(?:.*[-._ 0-9])?(?:" + "|".join(_SPLIT_OF) + r")(?:[-._ 0-9].*)?")


def check_split_names(names: Iterable[str]) -> None:
    """Raise ExportError for a split name ``datasets`` would skip, or for two names it loads as one split
    (``val`` and ``dev`` both become ``validation``: their images would be merged without a word)."""
    seen: dict[str, str] = {}
    for name in names:
        split_folder(name)
        other = seen.setdefault(_SPLIT_OF[name], name)
        if other != name:
            raise ExportError(f"splits {other!r} and {name!r}: datasets loads both as its "
                              f"{_SPLIT_OF[name]!r} split, so the hf format cannot keep them apart; "
                              "use one of the two names")


def dataset_name(name: str) -> str:
    """Where image ``name`` goes under its split folder: ``name``, except that from the first folder
    ``datasets`` would take for a split name on, the path is flattened with ``__`` (``test/a.jpg`` ->
    ``test__a.jpg``): ``train/test/a.jpg`` would match two splits' patterns and fail to load."""
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if _SPLIT_LIKE.fullmatch(part):
            return "/".join([*parts[:i], "__".join(parts[i:])])
    return name


def split_folder(name: str) -> str:
    """The folder of split ``name``; raises ExportError for a name ``datasets`` would not load."""
    if name not in SPLIT_NAMES:
        raise ExportError(f"split {name!r}: the hf format's split names are {', '.join(SPLIT_NAMES)} "
                          "(datasets' imagefolder skips other folders), e.g. --split val=0.2")
    return name


class MetadataRows:
    """Builds ``metadata.jsonl`` rows one image at a time (image ids from 1, instance ids unique in the
    split). ``cats`` is a :class:`~visionkit.formats.coco.CategoryMap`; detections whose label it lacks
    are left out and counted in ``report`` (``unmapped:<label>``), like the other exports."""

    def __init__(self, cats, report: Counter | None = None) -> None:
        self.cats = cats
        self.report = Counter() if report is None else report
        self._index = {c["id"]: i for i, c in enumerate(cats.categories)}
        self._image_id, self._next_id = 0, 1

    def row(self, name: str, image_wh: tuple[int, int], dets: Detections) -> dict:
        """The row of one image."""
        from .coco import image_annotations
        from .coco_read import segmentation_rle

        width, height = image_wh
        objects: dict[str, list] = {"id": [], "bbox": [], "category": [], "area": [], "segmentation": []}
        for ann in image_annotations(dets, report=self.report):
            cat = self.cats.lookup(ann["label"])
            if cat is None:
                self.report[f"unmapped:{ann['label']}"] += 1
                continue
            rle = segmentation_rle(ann, height, width)  # the box-only polygon too: one type for Arrow
            objects["id"].append(self._next_id)
            objects["bbox"].append(ann["bbox"])
            objects["category"].append(self._index[cat])
            objects["area"].append(ann["area"])
            objects["segmentation"].append({"size": [int(v) for v in rle["size"]],
                                            "counts": rle["counts"].decode("ascii")})
            self._next_id += 1
        self._image_id += 1
        return {"file_name": Path(name).as_posix(), "image_id": self._image_id, "width": int(width),
                "height": int(height), "objects": objects}


def metadata_rows(items: Iterable[tuple[str, tuple[int, int], Detections]], cats,
                  report: Counter | None = None) -> list[dict]:
    """One ``metadata.jsonl`` row per ``(file_name, (width, height), Detections)`` item (see
    :class:`MetadataRows`)."""
    rows = MetadataRows(cats, report)
    return [rows.row(name, wh, dets) for name, wh, dets in items]


class MetadataWriter(StreamWriter):
    """``folder/metadata.jsonl`` written one line per image as the images come, so memory stays flat; the
    file is put in place atomically by :meth:`close` (:meth:`discard` drops it)."""

    def __init__(self, folder: Path, cats, report: Counter) -> None:
        self._rows = MetadataRows(cats, report)
        self._file = AtomicFile(Path(folder) / "metadata.jsonl")
        self.instances = 0

    def add(self, name: str, image_wh: tuple[int, int], dets: Detections) -> int:
        """Write one image's row; returns its instances."""
        row = self._rows.row(name, image_wh, dets)
        try:
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ExportError(f"cannot write {self._file.path} ({name}): {exc}") from exc
        self._file.write(line)
        self.instances += len(row["objects"]["id"])
        return len(row["objects"]["id"])

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.discard()


def write_metadata(folder: Path, items: Iterable[tuple[str, tuple[int, int], Detections]], cats,
                   report: Counter) -> int:
    """Write ``folder/metadata.jsonl`` from ``items``, streamed; returns the instances written."""
    with MetadataWriter(folder, cats, report) as writer:
        for name, wh, dets in items:
            writer.add(name, wh, dets)
    return writer.instances


def hf_readme(names: Sequence[str]) -> str:
    """The dataset card: the class names in index order and how to load them as a ``ClassLabel``."""
    listing = "\n".join(f"- {i}: {name}" for i, name in enumerate(names))
    return f"""# visionkit export (Hugging Face imagefolder)

Load it with

```python
import datasets
ds = datasets.load_dataset("imagefolder", data_dir="path/to/this/folder")
names = {json.dumps(list(names), ensure_ascii=False)}
features = ds["train"].features.copy()
features["objects"]["category"] = datasets.List(datasets.ClassLabel(names=names))
ds = ds.cast(features)  # objects.category now carries the class names
```

`objects.bbox` is COCO `[x, y, width, height]` in pixels; `objects.segmentation` is COCO compressed RLE.

## Classes (objects.category)

{listing}
"""
