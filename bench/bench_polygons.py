"""Benchmark: mask outlines (``crops_to_polygons``, what a YOLO-segment or ``--polygons`` export spends its
own time on) against the all-shapely code it replaced (``tests/polygon_oracle.py``).

Run: ``python bench/bench_polygons.py [--images 300]`` (prints numbers; exits 0). Workload: the synthetic
answers of ``bench/bench_scale.py`` (5-15 blurred-ellipse masks per 320x240 image, as the export sees
them: cut to their snapped boxes). Both sides run in turns, 5 rounds; the median CPU time per image is
printed with the load average, and whether the outputs are identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from polygon_oracle import crop_to_polygons as oracle  # noqa: E402

from visionkit.answers.parse import parse_response  # noqa: E402
from visionkit.core.polygons import crops_to_polygons  # noqa: E402
from visionkit.formats.instances import clip_crop_to_box, snap_box  # noqa: E402
from visionkit.testing.synthetic import segment_answer  # noqa: E402


def _images(count: int) -> list[list]:
    out = []
    for seed in range(count):
        d = parse_response(segment_answer(5 + seed % 11, seed=seed), (320, 240))
        crops = [clip_crop_to_box(d.masks[i], snap_box(d.xyxy[i], d.image_wh))[0]
                 for i in range(len(d)) if d.has_mask(i)]
        out.append([c for c in crops if c.area()])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300)
    args = ap.parse_args(argv)
    images = _images(args.images)
    cases = {"one crop at a time, all shapely (before; COCO --polygons)":
             lambda crops: [oracle(c, report=Counter()) for c in crops],
             "crops_to_polygons (now)": lambda crops: crops_to_polygons(crops, report=Counter())}
    times: dict[str, list[float]] = {name: [] for name in cases}
    outputs = {}
    for _ in range(5):
        for name, run in cases.items():
            start = time.process_time()
            outputs[name] = [run(crops) for crops in images]
            times[name].append((time.process_time() - start) / len(images) * 1000)
    masks = sum(map(len, images))
    print(f"{len(images)} images, {masks} masks; load average {os.getloadavg()[0]:.2f}")
    for name, ms in times.items():
        print(f"{name:58s} {statistics.median(ms):6.2f} ms CPU per image (median of 5)")
    first, second = outputs.values()
    print("outputs identical:", first == second)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
