"""A slow, obvious implementation of Google's published segmentation recipe, used as a test oracle and as
the naive baseline in ``bench/``. Pillow decode and resize, a full-image canvas per mask, pycocotools
encode of the full mask. Deliberately not shared with visionkit's own code path.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ["recipe_parse", "recipe_coco_rles"]


def _strip_fence(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "```json":
            text = "\n".join(lines[i + 1:])
            return text.split("```")[0]
    return text


def recipe_parse(text: str, image_wh: tuple[int, int], threshold: int = 127
                 ) -> list[tuple[str, tuple[int, int, int, int], np.ndarray | None]]:
    """``[(label, (x0, y0, x1, y1) int box, full (H, W) bool mask or None), ...]`` the published way."""
    width, height = image_wh
    items = json.loads(_strip_fence(text))
    if isinstance(items, dict):
        items = [items]
    out = []
    for item in items:
        box = item["box_2d"]
        y0 = int(box[0] / 1000 * height)
        x0 = int(box[1] / 1000 * width)
        y1 = int(box[2] / 1000 * height)
        x1 = int(box[3] / 1000 * width)
        if y0 >= y1 or x0 >= x1:
            continue
        full = None
        if "mask" in item:
            png = item["mask"]
            if png.startswith("data:image/png;base64,"):
                png = png[len("data:image/png;base64,"):]
            mask = Image.open(io.BytesIO(base64.b64decode(png)))
            mask = mask.resize((x1 - x0, y1 - y0), resample=Image.Resampling.BILINEAR)
            canvas = np.zeros((height, width), dtype=np.uint8)
            canvas[y0:y1, x0:x1] = np.array(mask.convert("L"))
            full = canvas > threshold
        out.append((item.get("label", ""), (x0, y0, x1, y1), full))
    return out


def recipe_coco_rles(parsed) -> list[dict]:
    """pycocotools.encode of every full mask (counts decoded to str)."""
    rles = []
    for _, _, full in parsed:
        if full is None:
            continue
        rle = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        rles.append(rle)
    return rles
