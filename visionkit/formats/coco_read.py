"""A COCO dataset dict -> visionkit :class:`~visionkit.core.detections.Detections`, one image at a time.

Used by ``visionkit export`` to turn a run's ``annotations.json`` into other formats, and useful on its
own to load any COCO instances file. Per annotation:

* the box is ``bbox`` (``[x, y, w, h]``) clipped to the image;
* the mask (RLE, compressed or not, or polygons) is decoded straight into a
  :class:`~visionkit.core.maskcrop.MaskCrop` of the box snapped outward to whole pixels, grown to the mask's
  own bounds (:func:`rle_to_crop`: the RLE runs are cut into the crop, never an ``H x W`` image, so memory
  grows with box area); :func:`segmentation_rle` is the one reader of COCO segmentations, used by the
  COCO results export and the quality tools too;
* a box-only annotation, whose segmentation is the box itself as one 4-point polygon (what
  :func:`visionkit.formats.coco.to_coco` writes for a detection without a mask) or ``[]``, gets no mask;
* ``score`` becomes ``scores`` when every annotation of the file has one;
* keypoint-only annotations (``keypoints`` without a segmentation) are left out: see
  :mod:`visionkit.formats.keypoints`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from ..core.detections import Detections
from ..core.maskcrop import MaskCrop
from ..errors import ExportError, VisionkitError
from .instances import box_polygon, snap_box

__all__ = ["index_coco", "iter_coco_images", "image_detections", "has_mask", "segmentation_rle", "rle_counts",
           "rle_to_crop", "rle_total"]


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


def image_detections(img: Mapping, anns: list[Mapping], names: dict[int, str], with_score: bool, *,
                     whats: Sequence[str] | None = None, error: type[VisionkitError] = ExportError
                     ) -> Detections:
    """The Detections of one image from its annotations (see :func:`index_coco`).

    Errors are ``error``, naming each annotation as ``whats[k]`` (default ``annotation <id>``).
    """
    width, height = int(img["width"]), int(img["height"])
    xyxy, labels, scores, masks = [], [], [], []
    for k, ann in enumerate(anns):
        what = whats[k] if whats is not None else f"annotation {ann.get('id')}"
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise error(f"{what}: bbox must be [x, y, w, h] numbers") from exc
        box = np.clip([x, y, x + w, y + h], 0, [width, height, width, height])
        if not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
            raise error(f"{what}: bbox {ann['bbox']} is not a box in the image")
        xyxy.append(box)
        labels.append(names[int(ann["category_id"])])
        scores.append(float(ann["score"]) if with_score else np.nan)
        masks.append(_crop(ann, box, (width, height), what, error))
    return Detections(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), labels, (width, height),
                      scores=np.asarray(scores) if with_score else None,
                      masks=tuple(masks) if any(m is not None for m in masks) else None)


def _crop(ann: Mapping, box: np.ndarray, image_wh: tuple[int, int], what: str,
          error: type[VisionkitError]) -> MaskCrop | None:
    width, height = image_wh
    seg = ann.get("segmentation")
    snapped = snap_box(box, image_wh)
    rle = segmentation_rle(ann, height, width, error=error, what=what)  # checks the segmentation first
    if rle is None:
        return None
    if isinstance(seg, list) and len(seg) == 1 and _same_ring(list(map(float, seg[0])), box_polygon(snapped)):
        return None  # the box itself: a box-only annotation
    # The crop is the snapped box grown to the mask's own bounds, so no pixel is lost on reading.
    return rle_to_crop(rle, grow=snapped, what=what, error=error)


def segmentation_rle(ann: Mapping, height: int, width: int, *, error: type[VisionkitError] = ExportError,
                     what: str | None = None) -> dict | None:
    """An annotation's segmentation as compressed RLE ``{"size": [h, w], "counts": bytes}`` (what
    pycocotools takes), or None when it has none (empty, or no polygon with 3 points).

    Accepts compressed RLE (str or bytes counts), uncompressed RLE (counts as a list) and polygons
    (several polygons are one mask, their union). Nothing is drawn at image size: pycocotools turns
    polygons and uncompressed counts into runs directly.

    Raises:
        ``error`` (ExportError by default), naming the annotation: a segmentation that is neither RLE nor
        polygons, an RLE whose size is not the image's ``[height, width]``, or uncompressed counts that do
        not add up to ``height * width``.
    """
    from pycocotools import mask as mask_utils

    what = what or f"annotation {ann.get('id', '?')}"
    seg = ann.get("segmentation")
    if not seg:
        return None
    try:
        if isinstance(seg, Mapping):
            size, counts = [int(v) for v in seg["size"]], seg["counts"]
            if size != [height, width]:
                raise error(f"{what}: RLE size {size} is not the image's [height, width] {[height, width]}")
            if isinstance(counts, list):
                runs = np.asarray(counts, dtype=np.int64)
                if runs.ndim != 1 or (runs < 0).any() or int(runs.sum()) != height * width:
                    raise error(f"{what}: uncompressed RLE counts must be >= 0 and add up to "
                                f"{height} * {width} = {height * width}")
                return mask_utils.frPyObjects({"size": size, "counts": [int(v) for v in runs]}, height, width)
            return {"size": size,
                    "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}
        if not isinstance(seg, list):
            raise TypeError(f"got {type(seg).__name__}")
        polys = [[float(v) for v in p] for p in seg]
        polys = [p for p in polys if len(p) >= 6]
        if not polys:
            return None
        if not np.isfinite(np.concatenate(polys)).all():
            raise ValueError("polygon coordinates must be finite")
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    except VisionkitError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeEncodeError) as exc:
        raise error(f"{what}: segmentation must be RLE or polygons ({exc})") from exc


def rle_counts(counts: bytes | str) -> np.ndarray:
    """The run lengths of compressed COCO RLE counts (pycocotools' ``rleFrString``, vectorised).

    Each value is 5-bit groups (char - 48, bit 0x20 = more follows, bit 0x10 of the last = negative);
    from the fourth value on, each is a difference to the value two before it.

    Raises:
        ValueError: characters outside the RLE alphabet, a value cut off, or a negative run.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if not c.size:
        return np.zeros(0, dtype=np.int64)
    if ((c < 0) | (c > 63)).any():
        raise ValueError("RLE counts hold characters outside '0'..'o'")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts end in the middle of a value")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    k = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # position of each char in its value
    if k.max() > 11:
        raise ValueError("RLE counts hold a value too large")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (k[ends][negative] + 1))
    out = x.copy()
    out[1::2] = np.cumsum(x[1::2])
    out[2::2] = np.cumsum(x[2::2])
    if (out < 0).any():
        raise ValueError("RLE counts decode to a negative run")
    return out


def rle_total(counts: bytes | str) -> int:
    """How many pixels compressed RLE counts cover (the sum of :func:`rle_counts`), 4x faster than it on
    the short strings of typical masks (a plain loop; numpy's per-call cost dominates below ~1,000 chars).

    Raises:
        ValueError: as :func:`rle_counts`.
    """
    if len(counts) > 1000:
        return int(rle_counts(counts).sum())
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    total = n = x = k = 0
    last = second = 0  # the previous two values: from the fourth on, each is a difference to second
    for ch in data:
        c = ch - 48
        if not 0 <= c <= 63:
            raise ValueError("RLE counts hold characters outside '0'..'o'")
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if k > 12:
            raise ValueError("RLE counts hold a value too large")
        if c & 0x20:
            continue
        if c & 0x10:
            x |= -1 << (5 * k)
        if n > 2:
            x += second
        if x < 0:
            raise ValueError("RLE counts decode to a negative run")
        total += x
        second, last = last, x
        n += 1
        x = k = 0
    if k:
        raise ValueError("RLE counts end in the middle of a value")
    return total


def rle_to_crop(rle: Mapping, grow: tuple[int, int, int, int] | None = None, *, what: str = "RLE",
                error: type[VisionkitError] = ExportError) -> MaskCrop | None:
    """Decode compressed RLE straight into a :class:`MaskCrop`, never into a full ``H x W`` image.

    The crop is the mask's own pixel bounds, grown to hold the box ``grow`` (``x0, y0, x1, y1``) when
    given. Without ``grow``, an empty mask is None. Memory is the crop's area plus the runs.

    Raises:
        ``error`` (ExportError by default), naming ``what``: counts that are broken or do not cover
        ``size`` exactly.
    """
    height, width = (int(v) for v in rle["size"])
    try:
        counts = rle_counts(rle["counts"])
    except ValueError as exc:
        raise error(f"{what}: {exc}") from exc
    if int(counts.sum()) != height * width:
        raise error(f"{what}: RLE runs cover {int(counts.sum())} pixels, not {height} * {width}")
    col, r0, r1 = _run_segments(counts, height)
    if col.size:
        bounds = (int(col.min()), int(r0.min()), int(col.max()) + 1, int(r1.max()))
        if grow is not None:
            bounds = (min(bounds[0], grow[0]), min(bounds[1], grow[1]),
                      max(bounds[2], grow[2]), max(bounds[3], grow[3]))
    elif grow is not None:
        bounds = tuple(int(v) for v in grow)
    else:
        return None
    x0, y0, x1, y1 = bounds
    w, h = x1 - x0, y1 - y0
    # a difference array over the crop in column-major order (as RLE runs): +1 where a run's piece of a
    # column starts, -1 where it ends; the pieces never overlap, so the running sum is the mask
    diff = np.zeros(w * h + 1, dtype=np.int8)
    base = (col - x0) * h - y0
    diff[base + r0] += 1
    diff[base + r1] -= 1
    data = np.cumsum(diff[:-1], dtype=np.int8).view(np.bool_).reshape(w, h).T
    return MaskCrop(np.ascontiguousarray(data), x0, y0)


def _run_segments(counts: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The foreground runs of column-major RLE cut at column ends: ``(column, row start, row end)``.

    Runs alternate background/foreground starting with background; a run may span several columns, so
    there are at most (foreground runs + image width) pieces.
    """
    ends = np.cumsum(counts)
    s, e = (ends - counts)[1::2], ends[1::2]
    keep = e > s
    s, e = s[keep], e[keep]
    first, last = s // height, (e - 1) // height
    n = last - first + 1
    run = np.repeat(np.arange(s.size), n)
    col = first[run] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    r0 = np.maximum(s[run] - col * height, 0)
    r1 = np.minimum(e[run] - col * height, height)
    return col, r0, r1


def _same_ring(a: list[float], b: list[float]) -> bool:
    """True when flat polygon ``a`` is the 4-point ring ``b`` (same corners, any start, either direction)."""
    if len(a) != 8:
        return False
    return ({(round(a[i], 4), round(a[i + 1], 4)) for i in range(0, 8, 2)}
            == {(round(b[i], 4), round(b[i + 1], 4)) for i in range(0, 8, 2)})
