"""A COCO dataset dict -> visionkit :class:`~visionkit.detections.Detections`, one image at a time.

Used by ``visionkit export`` to turn a run's ``annotations.json`` into other formats, and useful on its
own to load any COCO instances file. Per annotation:

* the box is ``bbox`` (``[x, y, w, h]``) clipped to the image;
* the mask is decoded from RLE (compressed or not) or polygons, one annotation at a time, and kept as a
  :class:`~visionkit.detections.MaskCrop` of the box snapped outward to whole pixels (never ``N x H x W``);
* a box-only annotation, whose segmentation is the box itself as one 4-point polygon (what
  :func:`visionkit.coco.to_coco` writes for a detection without a mask) or ``[]``, gets no mask;
* ``score`` becomes ``scores`` when every annotation of the file has one;
* keypoint-only annotations (``keypoints`` without a segmentation) are left out: see
  :mod:`visionkit.formats.keypoints`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping

import numpy as np

from ..detections import Detections, MaskCrop
from ..errors import ExportError
from .instances import box_polygon, snap_box

__all__ = ["index_coco", "iter_coco_images", "image_detections", "has_mask"]


def index_coco(dataset: Mapping) -> tuple[list[dict], dict[int, list[Mapping]], dict[int, str], bool]:
    """Check and index a COCO dataset: ``(images, annotations by image id, category names, with_score)``.

    Nothing is decoded. ``with_score`` is True when every annotation has a ``score``.

    Raises:
        ExportError: naming the annotation, when an image or category it refers to is missing.
    """
    try:
        names = {int(c["id"]): str(c["name"]) for c in dataset.get("categories", [])}
        images = [dict(img) for img in dataset["images"]]
        anns = list(dataset.get("annotations", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"not a COCO dataset: {exc!r}") from exc
    by_image: dict[int, list[Mapping]] = {}
    known = {int(img["id"]) for img in images}
    with_score = bool(anns) and all("score" in a for a in anns)
    for ann in anns:
        if "keypoints" in ann and not ann.get("segmentation"):
            continue
        image_id = int(ann.get("image_id", -1))
        if image_id not in known:
            raise ExportError(f"annotation {ann.get('id')}: image_id {image_id} is not in 'images'")
        if int(ann.get("category_id", -1)) not in names:
            raise ExportError(f"annotation {ann.get('id')}: category_id {ann.get('category_id')} is not in "
                              "'categories'")
        by_image.setdefault(image_id, []).append(ann)
    return images, by_image, names, with_score


def iter_coco_images(dataset: Mapping) -> Iterator[tuple[dict, Detections]]:
    """Yield ``(image entry, Detections)`` for every image of a COCO dataset, in file order, decoding one
    image's masks at a time.

    Labels are the category names. Raises :class:`ExportError` naming the annotation when an entry is
    malformed (unknown image or category, bad bbox).
    """
    images, by_image, names, with_score = index_coco(dataset)
    for img in images:
        yield img, image_detections(img, by_image.get(int(img["id"]), []), names, with_score)


def has_mask(ann: Mapping) -> bool:
    """True when an annotation's segmentation is a mask, not empty or its own box (no decoding)."""
    seg = ann.get("segmentation")
    if not seg:
        return False
    if isinstance(seg, list) and len(seg) == 1:
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            return not _same_ring([float(v) for v in seg[0]], box_polygon(
                snap_box([x, y, x + w, y + h], (10**9, 10**9))))
        except (KeyError, TypeError, ValueError):
            return True
    return True


def image_detections(img: Mapping, anns: list[Mapping], names: dict[int, str], with_score: bool
                     ) -> Detections:
    """The Detections of one image from its annotations (see :func:`index_coco`)."""
    width, height = int(img["width"]), int(img["height"])
    xyxy, labels, scores, masks = [], [], [], []
    for ann in anns:
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"annotation {ann.get('id')}: bbox must be [x, y, w, h] numbers") from exc
        box = np.clip([x, y, x + w, y + h], 0, [width, height, width, height])
        if not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
            raise ExportError(f"annotation {ann.get('id')}: bbox {ann['bbox']} is not a box in the image")
        xyxy.append(box)
        labels.append(names[int(ann["category_id"])])
        scores.append(float(ann["score"]) if with_score else np.nan)
        masks.append(_crop(ann, box, (width, height)))
    return Detections(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), labels, (width, height),
                      scores=np.asarray(scores) if with_score else None,
                      masks=tuple(masks) if any(m is not None for m in masks) else None)


def _crop(ann: Mapping, box: np.ndarray, image_wh: tuple[int, int]) -> MaskCrop | None:
    from pycocotools import mask as mask_utils

    width, height = image_wh
    seg = ann.get("segmentation")
    snapped = snap_box(box, image_wh)
    if not seg:
        return None
    if isinstance(seg, list):
        polys = [list(map(float, p)) for p in seg]
        if len(polys) == 1 and _same_ring(polys[0], box_polygon(snapped)):
            return None  # the box itself: a box-only annotation
        polys = [p for p in polys if len(p) >= 6]
        if not polys:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, Mapping):
        rle = dict(seg)
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ExportError(f"annotation {ann.get('id')}: segmentation must be RLE or polygons")
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2 warns on every decode; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        full = mask_utils.decode(rle).astype(bool)
    # The crop is the snapped box grown to the mask's own bounds, so no pixel is lost on reading.
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    x0, y0, x1, y1 = snapped
    if rows.size:
        x0, y0 = min(x0, int(cols[0])), min(y0, int(rows[0]))
        x1, y1 = max(x1, int(cols[-1]) + 1), max(y1, int(rows[-1]) + 1)
    return MaskCrop(np.ascontiguousarray(full[y0:y1, x0:x1]), x0, y0)


def _same_ring(a: list[float], b: list[float]) -> bool:
    """True when flat polygon ``a`` is the 4-point ring ``b`` (same corners, any start, either direction)."""
    if len(a) != 8:
        return False
    return ({(round(a[i], 4), round(a[i + 1], 4)) for i in range(0, 8, 2)}
            == {(round(b[i], 4), round(b[i + 1], 4)) for i in range(0, 8, 2)})
