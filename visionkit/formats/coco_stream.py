"""The one reader of runs and COCO files: every record checked, then streamed one image at a time.

``export``, ``eval``, ``consensus``, ``report`` and ``redraw`` read ``annotations.json`` (a run folder's
or any COCO instances file) through :class:`CocoFile`. A source is a run folder (its
``annotations.json``), a COCO file, or an already loaded dict.

**Checked.** Before a command uses a file, every image, category and annotation is checked: types,
required fields, sizes, ids, the RLE's shape. A damaged or hand-edited file is an :class:`InputError`
naming the file, the index and the field, e.g. ``run/annotations.json: annotations[12].bbox: expected [x,
y, w, h], 4 finite numbers with w, h >= 0; got '1,2,3,4'``, before anything is written. What the check
cannot see without decoding (compressed RLE counts that add up to the wrong size) is an InputError when
that image is decoded, naming the same three things.

**Streamed: ijson over the file itself.** The file is parsed with ijson's C backend (yajl2_c,
https://github.com/ICRAR/ijson), never loaded whole. Considered instead: per-image JSON lines written by
``label`` beside ``annotations.json``. ijson won because

* it reads *any* COCO file the same way: a truth file from CVAT or Roboflow, COCO's own
  ``instances_val2017.json``, a file edited by hand, not only runs that visionkit wrote;
* ``annotations.json`` stays the one record of a run: no second copy that can disagree with it, go stale
  after an edit, or be missing from runs made before it existed;
* it is fast enough: yajl2_c builds each annotation in C, so one pass over a 20,000-image run (96 MB, 10
  RLE masks per image) takes 3.6 s where ``json.load`` takes 4.7 s and holds the whole file.

The cost is that a file is parsed twice: once to check it and once to read it.

Passes over a file:

1. *head*: the ``images`` and ``categories`` lists; ijson stops reading right after each list, so in a
   file that puts them before ``annotations`` (visionkit's runs, COCO's own files) this reads the head only;
2. *check*: every annotation is streamed and checked, and dropped; what stays is a compact index
   (:class:`ImageEntry` per image, category counts), about 300 bytes per image;
3. *read*: :meth:`CocoFile.records` streams the annotations again and yields each image with its own
   annotations, in the order of ``images``. This holds one image's annotations at a time when the file
   lists annotations in the order of their images (visionkit writes them so); otherwise (COCO's val2017
   lists them in no image order) the annotations asked for are grouped in memory first.

Limits: an image side is 1 to 2^16 pixels and ``width * height`` at most 2^28 (16384 x 16384), and
polygon points lie within an image's size of the image, so no record can make a decode allocate more
than an image's worth of pixels. A ``file_name`` must be a relative path inside its folder
(:func:`visionkit.media.paths.check_name`), since export and report turn it into a path.
"""

from __future__ import annotations

import codecs
import copy
import json
import os
from collections import Counter
from collections.abc import Container, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import ijson

from ..core.detections import Detections
from ..errors import InputError
from ..media.filekind import open_regular
from .coco_checks import MAX_PIXELS, MAX_SIDE, Checker, ImageEntry
from .coco_read import has_mask, image_detections

__all__ = ["CocoFile", "ImageEntry", "ImageRecord", "MAX_PIXELS", "MAX_SIDE", "dataset_path"]

class ImageRecord(NamedTuple):
    """An image with its annotations (dicts as in the file) and their indices in ``annotations``."""

    image: ImageEntry
    annotations: list
    indices: list


def dataset_path(source: str | os.PathLike) -> Path:
    """``DIR/annotations.json`` for a run folder, the path itself for a file."""
    path = Path(source)
    return path / "annotations.json" if path.is_dir() else path


class CocoFile:
    """A COCO dataset, checked on opening (see the module docstring), then read one image at a time.

    Attributes:
        name: how errors name it: the file's path, or ``the <what> dict``.
        images: an :class:`ImageEntry` per image, in file order.
        categories: the ``categories`` entries; ``names``: ``{id: name}``.
        counts: ``Counter`` of category id -> annotations (keypoint-only ones left out).
        annotations: how many annotations the file has (instances; keypoint-only ones left out).
        with_score: every annotation has a ``score``; ``has_masks``: some annotation has a mask that is
            not its own box.

    Raises:
        InputError: the source is missing or not JSON, or a record is malformed (the message names the
            file, the index and the field).
    """

    def __init__(self, source: str | os.PathLike | Mapping, *, what: str = "dataset"):
        self.path: Path | None = None
        self._data: Mapping | None = None
        if isinstance(source, Mapping):
            self._data, self.name = source, f"the {what} dict"
        else:
            self.path = dataset_path(source)
            self._expected = f"a COCO {what} (a JSON file)"
            self.name = str(self.path)
            if not os.path.lexists(self.path):
                hint = " (a run folder needs annotations.json)" if Path(source).is_dir() else ""
                raise InputError(f"{what} {self.path} does not exist{hint}")
        self._check = Checker(self.name)
        self._read_head(what)
        self._check_annotations()

    # -- reading --------------------------------------------------------------------------------------

    def _top(self, key: str) -> Any:
        """A top-level value (``...`` when absent); in a file, ijson stops right after it."""
        if self._data is not None:
            return self._data.get(key, ...)
        with self._open() as fh:
            try:
                return next(iter(ijson.items(fh, key, use_float=True)), ...)
            except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"{self.name} is not valid JSON: {exc}") from exc

    def _open(self):
        """The file, past a UTF-8 byte order mark (Windows editors add one; ijson would stop at it)."""
        try:
            fh = open_regular(self.path, "rb", expected=self._expected)  # a FIFO: InputError, not a hang
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc}") from exc
        try:
            if fh.read(3) != codecs.BOM_UTF8:
                fh.seek(0)
        except OSError as exc:
            fh.close()
            raise InputError(f"cannot read {self.name}: {exc}") from exc
        return fh

    def _annotation_stream(self) -> Iterator[Any]:
        if self._data is not None:
            yield from self._data.get("annotations", [])
            return
        with self._open() as fh:
            try:
                yield from ijson.items(fh, "annotations.item", use_float=True)
            except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"{self.name} is not valid JSON: {exc}") from exc

    def _read_head(self, what: str) -> None:
        if self._data is None:
            with self._open() as fh:
                try:
                    first = next(iter(ijson.basic_parse(fh)), (None, None))[0]
                except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
                    raise InputError(f"{what} {self.name} is not a readable JSON file: {exc}") from exc
            if first == "start_array":
                raise InputError(f"{self.name} is a COCO results list; a {what} needs 'images' (with file "
                                 "names), 'categories' and 'annotations'")
            if first != "start_map":
                raise InputError(f"{self.name}: expected a COCO dataset object, got JSON "
                                 f"{first or 'nothing'}")
        images = self._top("images")
        if not isinstance(images, list):
            raise self._check.fail("images", "a list of images (a COCO dataset)",
                                   "nothing" if images is ... else images)
        self.images = [self._check.image(img, pos) for pos, img in enumerate(images)]
        del images
        self._by_id: dict[int, ImageEntry] = {}
        files: dict[str, int] = {}
        for entry in self.images:
            if self._by_id.setdefault(entry.id, entry) is not entry:
                raise self._check.fail(f"images[{entry.pos}].id", f"an id no other image has (images"
                                       f"[{self._by_id[entry.id].pos}] has {entry.id})")
            if files.setdefault(entry.file_name, entry.pos) != entry.pos:
                first = files[entry.file_name]
                raise self._check.fail(f"images[{entry.pos}].file_name", f"a name no other image has; "
                                       f"{entry.file_name!r} is listed twice (images[{first}] and "
                                       f"images[{entry.pos}])")
        cats = self._top("categories")
        cats = [] if cats is ... else cats
        if not isinstance(cats, list):
            raise self._check.fail("categories", "a list of categories", cats)
        self.names: dict[int, str] = {}
        for pos, cat in enumerate(cats):
            cat_id, name = self._check.category(cat, pos)
            if cat_id in self.names:
                raise self._check.fail(f"categories[{pos}].id", f"an id no other category has ({cat_id} is "
                                       f"{self.names[cat_id]!r} too)")
            self.names[cat_id] = name
        self.categories = [dict(c) for c in cats]

    def _check_annotations(self) -> None:
        self.counts: Counter = Counter()
        self.annotations = 0
        self.with_score, self.has_masks, self._ordered = True, False, True
        last = -1
        check = self._check
        for pos, ann in enumerate(self._annotation_stream()):
            image, keypoints_only = check.annotation(ann, pos, self._by_id, self.names)
            self._ordered = self._ordered and image.pos >= last
            last = image.pos
            if keypoints_only:
                continue
            self.annotations += 1
            self.counts[ann["category_id"]] += 1
            self.with_score = self.with_score and "score" in ann
            if not self.has_masks and has_mask(ann):
                self.has_masks = True
        self.with_score = self.with_score and self.annotations > 0
        if self.annotations == 0:
            anns = self._top("annotations")
            if anns is not ... and not isinstance(anns, list):
                raise check.fail("annotations", "a list of annotations", anns)

    def records(self, only: Container[int] | None = None, *, keypoints: bool = False
                ) -> Iterator[ImageRecord]:
        """Each image (or each whose position is in ``only``) with its annotations, in file order.

        Keypoint-only annotations (see :mod:`visionkit.formats.keypoints`) are left out, unless
        ``keypoints``.
        """
        groups = self._groups(only, keypoints)
        nxt = next(groups, None)
        for image in self.images:
            if nxt is not None and nxt[0] == image.pos:
                anns, idx = nxt[1], nxt[2]
                nxt = next(groups, None)
            else:
                anns, idx = [], []
            if only is None or image.pos in only:
                yield ImageRecord(image, anns, idx)

    def _groups(self, only: Container[int] | None, keypoints: bool) -> Iterator[tuple[int, list, list]]:
        """``(image position, annotations, indices)`` per image that has any, by increasing position."""
        by_pos: dict[int, tuple[list, list]] = {}
        current = None
        try:
            for k, ann in enumerate(self._annotation_stream()):
                if not keypoints and "keypoints" in ann and not ann.get("segmentation"):
                    continue
                pos = self._by_id[ann["image_id"]].pos
                if only is not None and pos not in only:
                    continue
                if self._ordered and pos != current:
                    if current is not None and current in by_pos:
                        yield (current, *by_pos.pop(current))
                    current = pos
                anns, idx = by_pos.setdefault(pos, ([], []))
                anns.append(ann)
                idx.append(k)
        except (KeyError, TypeError) as exc:
            raise InputError(f"{self.name} changed while it was being read ({exc!r}); run again") from exc
        for pos in sorted(by_pos):
            yield (pos, *by_pos[pos])

    def detections(self, record: ImageRecord) -> Detections:
        """One image's :class:`Detections` (labels are category names, masks decoded into crops).

        Raises:
            InputError: a mask that does not decode, naming the file, the annotation's index and field.
        """
        whats = [f"{self.name}: annotations[{k}].segmentation" for k in record.indices]
        return image_detections(record.image._asdict(), record.annotations, self.names, self.with_score,
                                whats=whats, error=InputError)

    def load(self) -> dict:
        """The whole dataset as a dict (for COCOeval), after the checks; a dict source is copied."""
        if self._data is not None:
            return copy.deepcopy(dict(self._data))
        try:
            with open_regular(self.path, "r", expected=self._expected, encoding="utf-8-sig") as fh:  # a BOM
                return json.load(fh)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InputError(f"cannot read {self.name}: {exc}") from exc
