"""Generated workloads for benchmarks and tests: answers in Gemini 2.5's segmentation wire format, and
folders of images with a recorded answer each (``images/<stem>.jpg`` + ``replay/<stem>.txt``).

Everything is deterministic in ``seed``. The images are smooth noise (so JPEG sizes and decode times are
like a photo's, not a flat colour's) and the masks are blurred ellipses, 256x256 probability maps like
the ones Gemini returns.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["segment_answer", "write_labelled_folder"]


def segment_answer(n: int = 10, seed: int = 0, labels: tuple[str, ...] = ("cup", "plate", "spoon"), *,
                   unfiltered: bool = False) -> str:
    """A fenced JSON answer with ``n`` items, each with a ``box_2d`` and a base64 PNG ``mask``.
    ``unfiltered``: the PNG rows use no filter (filter type 0), as every mask in the recorded Gemini
    answers does; by default OpenCV picks its filters (the masks then take libpng's slower decode)."""
    params = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE] if unfiltered else []
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(80, 300, 2))
        y0, x0 = int(rng.integers(0, 1000 - h)), int(rng.integers(0, 1000 - w))
        prob = np.zeros((256, 256), np.uint8)
        cv2.ellipse(prob, (128, 128), (int(rng.integers(60, 127)), int(rng.integers(60, 127))),
                    float(rng.integers(0, 180)), 0, 360, 255, -1)
        prob = cv2.GaussianBlur(prob, (9, 9), 3)
        png = base64.b64encode(cv2.imencode(".png", prob, params)[1].tobytes()).decode("ascii")
        items.append({"box_2d": [y0, x0, y0 + h, x0 + w], "mask": "data:image/png;base64," + png,
                      "label": labels[i % len(labels)]})
    return "```json\n" + json.dumps(items) + "\n```"


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A BGR uint8 image of smooth coloured noise plus some fine grain."""
    small = rng.integers(0, 256, (max(height // 32, 2), max(width // 32, 2), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def write_labelled_folder(root: str | os.PathLike, count: int, size_wh: tuple[int, int] = (1024, 768), *,
                          masks: int = 10, seed: int = 0, quality: int = 90, unfiltered: bool = False
                          ) -> tuple[Path, Path]:
    """Write ``count`` JPEGs to ``root/images`` and one answer each to ``root/replay`` (``unfiltered``: as
    :func:`segment_answer`).

    Returns ``(images_dir, replay_dir)``. Files that already exist are kept (rerunning is cheap).
    """
    root = Path(root)
    images, replay = root / "images", root / "replay"
    images.mkdir(parents=True, exist_ok=True)
    replay.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = _photo(rng, *size_wh)
    for i in range(count):
        img_path, ans_path = images / f"img{i:05d}.jpg", replay / f"img{i:05d}.txt"
        if not img_path.exists():
            img = np.roll(base, shift=(i * 37) % size_wh[0], axis=1)  # distinct files, same statistics
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            img_path.write_bytes(buf.tobytes())
        if not ans_path.exists():
            ans_path.write_text(segment_answer(masks, seed=seed + i, unfiltered=unfiltered), encoding="utf-8")
    return images, replay
