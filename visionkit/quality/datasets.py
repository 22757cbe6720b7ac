"""Reading COCO datasets and run folders for the quality tools (IO at the edge).

A *run folder* is what ``visionkit label`` (online, batch or replay) writes: ``DIR/annotations.json`` plus
``failures.json``, ``warnings.json`` and ``overlays/``. Anywhere a dataset is expected, a run folder, a COCO
file or an already loaded dict works.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.maskcrop import MaskCrop
from ..errors import InputError
from ..formats.coco_read import rle_to_crop, segmentation_rle

__all__ = ["DatasetSource", "ann_rle", "ann_to_crop", "category_names", "dataset_path", "images_by_id",
           "load_dataset"]

DatasetSource = str | os.PathLike | Mapping


def dataset_path(source: str | os.PathLike) -> Path:
    """``DIR/annotations.json`` for a run folder, the path itself for a file."""
    path = Path(source)
    return path / "annotations.json" if path.is_dir() else path


def load_dataset(source: DatasetSource, *, what: str = "dataset") -> dict:
    """A COCO dataset dict from a run folder, a COCO file or a dict; checked for the fields used here.

    Raises:
        InputError: the file is missing or not JSON, or lacks ``images``/``annotations``/``categories``.
    """
    if isinstance(source, Mapping):
        data, name = copy.deepcopy(dict(source)), f"the {what} dict"  # COCOeval writes into it
    else:
        path = dataset_path(source)
        name = str(path)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError as exc:
            hint = " (a run folder needs annotations.json)" if Path(source).is_dir() else ""
            raise InputError(f"{what} {path} does not exist{hint}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{what} {path} is not a readable JSON file: {exc}") from exc
    if isinstance(data, list):
        raise InputError(f"{name} is a COCO results list; a {what} needs 'images' (with file names), "
                         "'categories' and 'annotations'")
    if not isinstance(data, dict):
        raise InputError(f"{name} must be a COCO dataset object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{name} has no '{key}' list (expected a COCO dataset)")
    for pos, image in enumerate(data["images"]):
        for key in ("id", "file_name", "width", "height"):
            if key not in image:
                raise InputError(f"{name}: images[{pos}] has no '{key}'")
    for pos, ann in enumerate(data["annotations"]):
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise InputError(f"{name}: annotations[{pos}] has no '{key}'")
    for pos, cat in enumerate(data["categories"]):
        if "id" not in cat or "name" not in cat:
            raise InputError(f"{name}: categories[{pos}] needs 'id' and 'name'")
    return data


def ann_rle(ann: Mapping, width: int, height: int) -> dict | None:
    """The annotation's mask as compressed RLE (bytes counts, for pycocotools), or None when it has none.

    Accepts compressed RLE (str or bytes counts), uncompressed RLE (counts as a list) and polygons; see
    :func:`visionkit.formats.coco_read.segmentation_rle`. Raises InputError naming the annotation.
    """
    return segmentation_rle(ann, height, width, error=InputError)


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
