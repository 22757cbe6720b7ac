"""Benchmark: the JPEG damage check (issue 19 item 7) against the decodes a label run does anyway.

Run: ``python bench/bench_jpegcheck.py`` (prints numbers; exits 0). Options: ``--images N``, ``--data DIR``
(the folder bench_label.py generates: 1024x768 JPEGs, kept and reused).

Per image, CPU time, median, the cases timed in turns (a, b, c, a, b, c, ...) so load moves them alike:
the overlay read as it was before the check (OpenCV), with the separate check in front (as merged: a
simplejpeg strict decode that ``min_factor=8`` alone did not scale), the checked read that replaced both
(:func:`visionkit.media.fastread.read_jpeg_rgb`), and the separate check alone (what ``--no-overlays``
runs pay), before and now (really at 1/8).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_label import WH, write_labelled_folder  # noqa: E402

from visionkit.media.fastread import read_jpeg_rgb  # noqa: E402
from visionkit.media.jpegcheck import jpeg_damage  # noqa: E402


def opencv_read(path: Path) -> None:
    rgb = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB, dst=rgb)


def merged_check(path: Path) -> None:
    with contextlib.suppress(ValueError):
        simplejpeg.decode_jpeg(path.read_bytes(), colorspace="GRAY", min_factor=8, strict=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "visionkit-bench-label")
    args = parser.parse_args()
    data = args.data / f"{args.images}x{WH[0]}x{WH[1]}"
    images_dir, _ = write_labelled_folder(data, args.images, WH, masks=10)
    images = sorted(images_dir.glob("*.jpg"))
    cases = {
        "overlay read, no check (OpenCV)": opencv_read,
        "overlay read + separate check (merged)": lambda p: (merged_check(p), opencv_read(p)),
        "checked overlay read (now)": lambda p: read_jpeg_rgb(p, WH, 1, None, []),
        "separate check alone (merged)": merged_check,
        "separate check alone (now, 1/8)": jpeg_damage,
    }
    times: dict = {name: [] for name in cases}
    for _ in range(args.repeat):
        for path in images:
            for name, fn in cases.items():
                t = time.process_time()
                fn(path)
                times[name].append(time.process_time() - t)
    kb = sum(p.stat().st_size for p in images) / len(images) / 1024
    print(f"{len(images)} JPEGs {WH[0]}x{WH[1]} ({kb:.0f} KB each); load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; CPU ms per image, median")
    for name, values in times.items():
        print(f"  {name:42s} {statistics.median(values) * 1e3:6.2f}")


if __name__ == "__main__":
    main()
