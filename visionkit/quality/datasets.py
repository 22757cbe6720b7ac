"""Reading COCO datasets and run folders for the quality tools (IO at the edge), through the one reader
:mod:`visionkit.formats.coco_stream`.

A *run folder* is what ``visionkit label`` (online, batch or replay) writes: ``DIR/annotations.json`` plus
``failures.json``, ``warnings.json`` and ``overlays/``. Anywhere a dataset is expected, a run folder, a COCO
file or an already loaded dict works.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..core.maskcrop import MaskCrop
from ..errors import InputError
from ..formats.coco_read import rle_to_crop, rle_total, segmentation_rle
from ..formats.coco_stream import CocoFile, dataset_path

__all__ = ["DatasetSource", "ann_rle", "ann_to_crop", "category_names", "dataset_path", "images_by_id",
           "load_dataset"]

DatasetSource = str | os.PathLike | Mapping


def load_dataset(source: DatasetSource, *, what: str = "dataset") -> dict:
    """A COCO dataset dict from a run folder, a COCO file or a dict, checked record by record by the one
    reader (:class:`visionkit.formats.coco_stream.CocoFile`); a dict is copied (COCOeval writes into it).

    Raises:
        InputError: the file is missing or not JSON, or a record is malformed (naming the file, the index
            and the field).
    """
    return CocoFile(source, what=what).load()


def ann_rle(ann: Mapping, width: int, height: int, *, what: str | None = None) -> dict | None:
    """The annotation's mask as compressed RLE (bytes counts, for pycocotools), or None when it has none.

    Accepts compressed RLE (str or bytes counts), uncompressed RLE (counts as a list) and polygons; see
    :func:`visionkit.formats.coco_read.segmentation_rle`. Compressed counts are decoded once to check that
    they cover the image exactly (pycocotools trusts them). Raises InputError naming the annotation
    (``what``, default ``annotation <id>``).
    """
    what = what or f"annotation {ann.get('id', '?')}"
    rle = segmentation_rle(ann, height, width, error=InputError, what=what)
    if rle is not None and isinstance(ann.get("segmentation"), Mapping):
        try:
            covered = rle_total(rle["counts"])
        except (ValueError, UnicodeEncodeError) as exc:
            raise InputError(f"{what}: {exc}") from exc
        if covered != height * width:
            raise InputError(f"{what}: RLE runs cover {covered} pixels, not {height} * {width}")
    return rle


def ann_to_crop(ann: Mapping, width: int, height: int) -> MaskCrop | None:
    """The annotation's mask as a :class:`MaskCrop` trimmed to its pixels, or None (no mask or empty).

    Decoded straight into the crop (:func:`visionkit.formats.coco_read.rle_to_crop`): memory grows with
    the mask's bounds, never with the image.
    """
    rle = ann_rle(ann, width, height)
    if rle is None:
        return None
    return rle_to_crop(rle, what=f"annotation {ann.get('id', '?')}", error=InputError)


def category_names(data: Mapping) -> dict[int, str]:
    """``{category id: name}`` of a dataset."""
    return {int(c["id"]): str(c["name"]) for c in data["categories"]}


def images_by_id(data: Mapping) -> dict[int, dict[str, Any]]:
    """``{image id: image}`` of a dataset."""
    return {int(i["id"]): i for i in data["images"]}
