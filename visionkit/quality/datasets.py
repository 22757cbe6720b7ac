"""Reading COCO datasets and run folders for the quality tools (IO at the edge).

A *run folder* is what ``visionkit label`` (online, batch or replay) writes: ``DIR/annotations.json`` plus
``failures.json``, ``warnings.json`` and ``overlays/``. Anywhere a dataset is expected, a run folder, a COCO
file or an already loaded dict works.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..detections import MaskCrop
from ..errors import InputError

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

    Accepts compressed RLE (str or bytes counts), uncompressed RLE (counts as a list) and polygons.
    """
    seg = ann.get("segmentation")
    if not seg:
        return None
    try:
        if isinstance(seg, Mapping):
            counts = seg["counts"]
            if isinstance(counts, list):
                return mask_utils.frPyObjects(dict(seg), height, width)
            return {"size": list(seg["size"]),
                    "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"annotation {ann.get('id', '?')}: segmentation is neither RLE nor polygons "
                         f"({exc})") from exc


def ann_to_crop(ann: Mapping, width: int, height: int) -> MaskCrop | None:
    """The annotation's mask as a :class:`MaskCrop` trimmed to its pixels, or None (no mask or empty).

    The RLE is decoded once at full size and cropped at once: one image-sized buffer at a time, never
    one per object.
    """
    rle = ann_rle(ann, width, height)
    if rle is None:
        return None
    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
    if w <= 0 or h <= 0:
        return None
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2 warns about __array__; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        full = mask_utils.decode(rle)
    return MaskCrop(np.ascontiguousarray(full[y:y + h, x:x + w].astype(bool)), x, y)


def category_names(data: Mapping) -> dict[int, str]:
    """``{category id: name}`` of a dataset."""
    return {int(c["id"]): str(c["name"]) for c in data["categories"]}


def images_by_id(data: Mapping) -> dict[int, dict[str, Any]]:
    """``{image id: image}`` of a dataset."""
    return {int(i["id"]): i for i in data["images"]}
