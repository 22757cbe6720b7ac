"""The record checks of :mod:`visionkit.formats.coco_stream`: types, required fields, sizes, ids and the
RLE's shape of every image, category and annotation, each failure an InputError naming the file, the index
and the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import InputError
from ..media.paths import check_name

__all__ = ["MAX_PIXELS", "MAX_SIDE", "Checker", "ImageEntry"]

#: An image side, and an image's pixels: what a mask of the image may cost to decode (a 2^28-pixel
#: image is 16384 x 16384; pycocotools keeps run lengths as 32-bit integers).
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
_RLE_CHARS = re.compile(r"[^0-o]")  # compressed RLE counts: characters 48..111 only
_SHOWN = 60


class ImageEntry(NamedTuple):
    """One image of a file, as checked: its ``id``, ``file_name``, ``width``, ``height`` and position."""

    id: int
    file_name: str
    width: int
    height: int
    pos: int


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Checker:
    """The record checks, shared by streamed files and loaded dicts."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, where: str, expected: str, got: Any = ...) -> InputError:
        shown = "" if got is ... else f"; got {_show(got)}"
        return InputError(f"{self.name}: {where}: expected {expected}{shown}")

    def image(self, img: Any, pos: int) -> ImageEntry:
        where = f"images[{pos}]"
        if not isinstance(img, Mapping):
            raise self.fail(where, "an object with id, file_name, width and height", img)
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise self.fail(f"{where}.{key}", "a value; the field is missing")
        if not _is_int(img["id"]):
            raise self.fail(f"{where}.id", "an integer", img["id"])
        check_name(img["file_name"], file=self.name, field=f"{where}.file_name")  # a path under a folder
        size = []
        for key in ("width", "height"):
            v = img[key]
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not _is_int(v) or not 1 <= v <= MAX_SIDE:
                raise self.fail(f"{where}.{key}", f"a whole number of pixels, 1 to {MAX_SIDE}", img[key])
            size.append(v)
        if size[0] * size[1] > MAX_PIXELS:
            raise self.fail(where, "width * height at most 2^28 pixels", f"{size[0]}x{size[1]}")
        return ImageEntry(img["id"], img["file_name"], size[0], size[1], pos)

    def category(self, cat: Any, pos: int) -> tuple[int, str]:
        where = f"categories[{pos}]"
        if not isinstance(cat, Mapping):
            raise self.fail(where, "an object with id and name", cat)
        if not _is_int(cat.get("id")):
            raise self.fail(f"{where}.id", "an integer", cat.get("id", "nothing"))
        if not isinstance(cat.get("name"), str):
            raise self.fail(f"{where}.name", "a string", cat.get("name", "nothing"))
        return cat["id"], cat["name"]

    def annotation(self, ann: Any, pos: int, images: Mapping[int, ImageEntry], names: Mapping[int, str]
                   ) -> tuple[ImageEntry, bool]:
        """The annotation's image, and whether it is keypoints only (no instance: left out of records)."""
        where = f"annotations[{pos}]"
        if not isinstance(ann, Mapping):
            raise self.fail(where, "an object with image_id, category_id and bbox", ann)
        image = images.get(ann.get("image_id")) if _is_int(ann.get("image_id")) else None
        if image is None:
            raise self.fail(f"{where}.image_id", "the id of an image in 'images'",
                            ann.get("image_id", "nothing"))
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in names:
            raise self.fail(f"{where}.category_id", "the id of a category in 'categories'",
                            ann.get("category_id", "nothing"))
        for key in ("id",):
            if key in ann and not _is_int(ann[key]):
                raise self.fail(f"{where}.{key}", "an integer", ann[key])
        for key in ("score", "area"):
            if key in ann and not _is_num(ann[key]):
                raise self.fail(f"{where}.{key}", "a finite number", ann[key])
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            raise self.fail(f"{where}.iscrowd", "0 or 1", ann["iscrowd"])
        seg = ann.get("segmentation")
        if "keypoints" in ann and not seg:
            kp = ann["keypoints"]
            if not isinstance(kp, list) or len(kp) % 3 or not all(_is_num(v) for v in kp):
                raise self.fail(f"{where}.keypoints", "a list of finite numbers x, y, v, ...", kp)
            return image, True
        box = ann.get("bbox")
        if (not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_num(v) for v in box)
                or box[2] < 0 or box[3] < 0):
            raise self.fail(f"{where}.bbox", "[x, y, w, h], 4 finite numbers with w, h >= 0",
                            box if "bbox" in ann else "nothing")
        if seg or ("segmentation" in ann and not isinstance(seg, list)):
            self.segmentation(seg, f"{where}.segmentation", image)
        return image, False

    def segmentation(self, seg: Any, where: str, image: ImageEntry) -> None:
        if isinstance(seg, list):
            for k, poly in enumerate(seg):
                if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                        or not all(_is_num(v) for v in poly)):
                    raise self.fail(f"{where}[{k}]", "a polygon: x0, y0, x1, y1, ... (3 or more points, "
                                    "finite numbers)", poly)
                # rasterising costs memory along the outline: keep points within an image's size of it
                w, h = image.width, image.height
                if not (all(-w <= x <= 2 * w for x in poly[0::2])
                        and all(-h <= y <= 2 * h for y in poly[1::2])):
                    raise self.fail(f"{where}[{k}]", f"points within an image's size of the {w}x{h} image",
                                    poly)
            return
        if not isinstance(seg, Mapping):
            raise self.fail(where, "RLE {size, counts} or a list of polygons", seg)
        size, counts = seg.get("size"), seg.get("counts")
        if size != [image.height, image.width]:
            raise self.fail(f"{where}.size", f"the image's [height, width] {[image.height, image.width]}",
                            size if "size" in seg else "nothing")
        if isinstance(counts, bytes):
            try:
                counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise self.fail(f"{where}.counts", "compressed RLE (characters '0' to 'o')", counts) from None
        if isinstance(counts, str):
            if _RLE_CHARS.search(counts) or (counts and (ord(counts[-1]) - 48) & 0x20):
                raise self.fail(f"{where}.counts", "compressed RLE (characters '0' to 'o', the last value "
                                "complete)", counts)
        elif isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != image.height * image.width:
                raise self.fail(f"{where}.counts", "uncompressed RLE: whole numbers >= 0 adding up to "
                                f"height * width = {image.height * image.width}", counts)
        else:
            raise self.fail(f"{where}.counts", "compressed RLE (a string) or a list of run lengths",
                            counts if "counts" in seg else "nothing")
