"""Benchmark: ``visionkit report`` on a run folder of 1,000 images (thumbnails + page).

Run: ``python bench/bench_report.py`` (prints numbers; exits 0). Options: ``--images N`` (default 1000),
``--size WxH`` of the overlays (default 1024x768, JPEG q90 as ``visionkit label`` writes them), ``--workers``.

It builds a synthetic run folder (overlays, ``annotations.json`` with 10 masked objects per image,
``warnings.json``) outside the timer, then times:

* **cold**: ``build_report`` with no thumbnails yet (decode every overlay, shrink, write a JPEG; write the
  page);
* **warm**: the same again, when every thumbnail is reused (the page alone);
* **floor**: only decoding every overlay at the reduced JPEG scale the thumbnails need (PIL ``draft``),
  what any thumbnailer must pay;
* **naive**: full-size decode + ``Image.thumbnail`` + save per image, serial (what a simple script does).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from visionkit import Detections, MaskCrop, to_coco, write_json_atomic  # noqa: E402
from visionkit.quality.report import DEFAULT_THUMB_SIZE, build_report  # noqa: E402


def make_run(root: Path, n: int, wh: tuple[int, int]) -> None:
    width, height = wh
    (root / "overlays").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    items, warned = [], []
    for k in range(n):
        img = base.copy()
        boxes, crops = [], []
        for _ in range(10):
            w, h = int(rng.integers(40, 300)), int(rng.integers(40, 300))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            color = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, color, -1)
            cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
            m = np.zeros((h, w), np.uint8)
            cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1, -1)
            boxes.append([x, y, x + w, y + h])
            crops.append(MaskCrop(m.astype(bool), x, y))
        cv2.imwrite(str(root / "overlays" / f"img{k:05d}.jpg"), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels = [str(rng.choice(["cup", "plate", "spoon", "napkin"])) for _ in boxes]
        dets = Detections(np.array(boxes, float), labels, wh, masks=tuple(crops))
        items.append((f"img{k:05d}.jpg", wh, dets))
        if k % 7 == 0:
            warned.append({"file": f"img{k:05d}.jpg", "key": f"img{k:05d}",
                           "warnings": [{"index": 3, "field": "mask", "reason": "undecodable mask"}]})
    write_json_atomic(root / "annotations.json", to_coco(items))
    write_json_atomic(root / "warnings.json", {"version": 1, "images": warned})
    write_json_atomic(root / "failures.json", [])


def floor(root: Path, size: int) -> float:
    start = time.perf_counter()
    for path in sorted((root / "overlays").iterdir()):
        with Image.open(path) as im:
            scale = size / max(im.size)
            im.draft("RGB", (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
            im.load()
    return time.perf_counter() - start


def naive(root: Path, size: int, out: Path) -> float:
    out.mkdir()
    start = time.perf_counter()
    for path in sorted((root / "overlays").iterdir()):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            im.save(out / path.name, "JPEG", quality=80)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--thumb-size", type=int, default=DEFAULT_THUMB_SIZE)
    args = parser.parse_args()
    wh = tuple(int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="vk-bench-report-"))
    try:
        run = tmp / "run"
        t0 = time.perf_counter()
        make_run(run, args.images, wh)
        print(f"setup: {args.images} overlays {wh[0]}x{wh[1]} JPEG q90, 10 masks each "
              f"({time.perf_counter() - t0:.1f}s, not timed)")
        t0 = time.perf_counter()
        cold = build_report(run, thumb_size=args.thumb_size, workers=args.workers)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = build_report(run, thumb_size=args.thumb_size, workers=args.workers)
        t_warm = time.perf_counter() - t0
        t_floor = floor(run, args.thumb_size)
        t_naive = naive(run, args.thumb_size, tmp / "naive")
        page = cold.path.stat().st_size
        thumbs = sum(p.stat().st_size for p in (run / "report" / "thumbs").iterdir())
        n = args.images
        print(f"visionkit report, cold (thumbnails + page, {args.workers} workers): {t_cold:.2f} s "
              f"= {t_cold / n * 1000:.2f} ms/image ({cold.thumbnails} thumbnails)")
        print(f"visionkit report, warm (page only, {warm.thumbnails_reused} thumbnails reused): "
              f"{t_warm:.2f} s")
        print(f"thumbnails alone (cold - warm): {t_cold - t_warm:.2f} s")
        print(f"floor (reduced-scale JPEG decode only, serial): {t_floor:.2f} s; "
              f"cold report = {t_cold / t_floor:.2f}x the floor")
        print(f"naive (full decode + PIL thumbnail + save, serial): {t_naive:.2f} s; "
              f"visionkit is {t_naive / t_cold:.1f}x faster")
        print(f"page: {page / 1e6:.2f} MB; thumbnails: {thumbs / 1e6:.1f} MB "
              f"({thumbs / n / 1e3:.1f} kB each, longest side {args.thumb_size} px)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
