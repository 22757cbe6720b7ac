"""Benchmark: parse_response + to_coco against the floor, the naive recipe and supervision.

Run: ``python bench/bench_core.py`` (prints numbers; exits 0). Two workloads:

1. The real 15-mask cupcakes answer (../shared/gemini-real/cookbook-cupcakes/segment.txt) at 1024x1024.
   Floor = json.loads + base64 decode + PNG decode (cv2.imdecode) of the 15 masks: the work nobody can
   skip. Target: visionkit <= 2x the floor (one thread: masks are decoded serially; the pipeline runs
   images in parallel instead). Also printed: the inflate-only floor (zlib on each mask's IDAT, no PNG
   decoder at all) and visionkit's own stages. The cases are timed in turns, so machine load moves both
   sides of each ratio.
2. 100 synthetic masks on a 4000x3000 image. Target: >= 10x faster than the naive recipe, and peak memory
   < 300 MB above the import baseline (each case runs in a fresh process; peak RSS is the
   process's own ``VmHWM``, :mod:`_peak`).

The naive recipe is Google's published one (PIL decode and resize, a full-image canvas per mask,
pycocotools.encode of each full mask): ``visionkit.testing.recipe``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from _peak import own_peak_kb  # bench/ is the script's folder, first on sys.path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = Path(os.environ.get("VISIONKIT_SHARED", REPO.parent / "shared")) / "gemini-real"
CUPCAKES = REAL / "cookbook-cupcakes" / "segment.txt"


def timeit(fn, repeat: int) -> float:
    """Median CPU seconds of ``repeat`` calls (after one warm-up).

    CPU time (``time.process_time``), not wall time: the work is single-threaded, and on a shared machine
    wall time also counts the slices other processes get, which inflates the longer call far more than
    the sub-millisecond floor and makes the ratio meaningless (measured: 10-16x wall vs 3.9x CPU at a
    load average of 10 on 2 cores)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def floor_fn(text: str):
    """json.loads + base64 + cv2.imdecode of every mask: the published floor (the issue's definition)."""
    def run():
        body = text.split("```json", 1)[1].split("```", 1)[0] if "```" in text else text
        for item in json.loads(body):
            raw = base64.b64decode(item["mask"].split(",", 1)[1])
            cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    return run


def inflate_floor_fn(text: str):
    """json.loads + base64 + raw inflate of every mask's IDAT: below what any PNG decoder can do, shown
    because visionkit inflates plain grayscale masks itself (``visionkit.core.maskpng``)."""
    import struct
    import zlib

    def idat(raw: bytes) -> bytes:
        pos, out = 8, []
        while pos + 8 <= len(raw):
            (n,) = struct.unpack_from(">I", raw, pos)
            if raw[pos + 4:pos + 8] == b"IDAT":
                out.append(raw[pos + 8:pos + 8 + n])
            pos += 12 + n
        return b"".join(out)

    def run():
        body = text.split("```json", 1)[1].split("```", 1)[0] if "```" in text else text
        for item in json.loads(body):
            # raw deflate (no zlib header, no Adler-32), as visionkit inflates it: the chunk CRCs vouch
            zlib.decompress(idat(base64.b64decode(item["mask"].split(",", 1)[1]))[2:-4], -15)
    return run


def interleaved(fns: dict, repeat: int) -> dict:
    """Median CPU seconds of each function, timed in turns (a, b, c, a, b, c, ...) so that a slower or
    busier stretch of the machine affects every ratio's numerator and denominator alike."""
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def stage_fns(text: str, wh):
    """visionkit's own stages on the same answer, for the breakdown."""
    from visionkit import parse_response
    from visionkit.core.maskpng import probability_view
    from visionkit.core.masks import probability_to_crop
    from visionkit.core.rle import crop_to_rle

    body = text.split("```json", 1)[1].split("```", 1)[0]
    values = [item["mask"] for item in json.loads(body)]
    crops = list(parse_response(text, wh).masks)
    probs = [probability_view(v) for v in values]
    boxes = [np.array(c.xyxy) for c in crops]
    return {
        "mask decode incl. base64 (maskpng)": lambda: [probability_view(v) for v in values],
        "resize + threshold": lambda: [probability_to_crop(p, b) for p, b in zip(probs, boxes)],
        "crop -> COCO RLE": lambda: [crop_to_rle(c, wh) for c in crops],
    }


def ours_fn(text: str, wh):
    from visionkit import parse_response, to_coco

    def run():
        d = parse_response(text, wh)
        return to_coco([("image.png", wh, d)])
    return run


def naive_fn(text: str, wh):
    from visionkit.testing.recipe import recipe_coco_rles, recipe_parse

    def run():
        return recipe_coco_rles(recipe_parse(text, wh))
    return run


def supervision_fn(text: str, wh):
    try:
        import supervision as sv
        from pycocotools import mask as mask_utils
    except ImportError:
        return None, None

    def parse_only():
        return sv.Detections.from_vlm(sv.VLM.GOOGLE_GEMINI_2_5, text, resolution_wh=wh)

    def with_rle():
        det = parse_only()
        return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in det.mask]
    return parse_only, with_rle


def synthetic_answer(n: int = 100, seed: int = 0) -> str:
    """An answer in Gemini 2.5's wire format: n items with 256x256 PNG probability masks."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        h, w = rng.integers(80, 300, 2)
        y0, x0 = rng.integers(0, 1000 - h), rng.integers(0, 1000 - w)
        prob = np.zeros((256, 256), np.uint8)
        cv2.ellipse(prob, (128, 128), (int(rng.integers(60, 127)), int(rng.integers(60, 127))),
                    float(rng.integers(0, 180)), 0, 360, 255, -1)
        prob = cv2.GaussianBlur(prob, (9, 9), 3)
        png = base64.b64encode(cv2.imencode(".png", prob)[1].tobytes()).decode()
        items.append({"box_2d": [int(y0), int(x0), int(y0 + h), int(x0 + w)],
                      "mask": "data:image/png;base64," + png, "label": f"object {i % 7}"})
    return "```json\n" + json.dumps(items) + "\n```"


def child(case: str) -> None:
    """Run one many-mask case in this (fresh) process and print ``seconds peak_mb_above_baseline``."""
    import visionkit  # noqa: F401  (the import baseline includes the library)
    import visionkit.testing.recipe  # noqa: F401

    text = synthetic_answer()
    wh = (4000, 3000)
    fns = {"ours": ours_fn(text, wh), "naive": naive_fn(text, wh)}
    sv_parse, sv_rle = supervision_fn(text, wh)
    if sv_parse is not None:
        import supervision  # noqa: F401
        fns["supervision"] = sv_parse
    baseline = own_peak_kb() / 1024
    seconds = timeit(fns[case], repeat=3)
    peak = own_peak_kb() / 1024
    print(f"{seconds:.6f} {peak - baseline:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs; "
          "CPU-time medians")
    print("== 1. real cupcakes answer, 15 masks, 1024x1024 ==")
    if not CUPCAKES.is_file():
        print(f"skipped: {CUPCAKES} not found (../shared is absent)")
    else:
        text = CUPCAKES.read_text()
        wh = (1024, 1024)
        t = interleaved({"floor": floor_fn(text), "inflate": inflate_floor_fn(text),
                         "ours": ours_fn(text, wh)}, args.repeat)
        floor, inflate, ours = t["floor"], t["inflate"], t["ours"]
        naive = timeit(naive_fn(text, wh), max(args.repeat // 4, 10))
        print(f"floor (json + b64 + PNG decode) {floor * 1e3:8.3f} ms")
        print(f"inflate-only floor (raw deflate) {inflate * 1e3:8.3f} ms  = {inflate / floor:5.2f}x floor")
        print(f"visionkit parse + to_coco        {ours * 1e3:8.3f} ms  = {ours / floor:5.2f}x floor  "
              f"[target <= 2x: {'PASS' if ours <= 2 * floor else 'FAIL'}]  = {ours / inflate:5.2f}x inflate")
        stages = interleaved(stage_fns(text, wh), args.repeat)
        print("  of which: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in stages.items()))
        print(f"naive recipe (PIL, full canvas)  {naive * 1e3:8.3f} ms  = {naive / floor:5.2f}x floor  "
              f"({naive / ours:.1f}x slower than visionkit)")
        sv_parse, sv_rle = supervision_fn(text, wh)
        if sv_parse is None:
            print("supervision not installed: pip install supervision to compare")
        else:
            t1 = timeit(sv_parse, max(args.repeat // 4, 10))
            t2 = timeit(sv_rle, max(args.repeat // 4, 10))
            print(f"supervision from_vlm             {t1 * 1e3:8.3f} ms  = {t1 / floor:5.2f}x floor  "
                  f"({t1 / ours:.1f}x slower than visionkit)")
            print(f"supervision from_vlm + RLE       {t2 * 1e3:8.3f} ms  = {t2 / floor:5.2f}x floor")

    print("\n== 2. 100 synthetic masks, 4000x3000 (each case in a fresh process) ==")
    results = {}
    for case in ("ours", "naive", "supervision"):
        proc = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True)
        if proc.returncode != 0:
            if case == "supervision":
                print("supervision: not run (" + (proc.stderr.strip().splitlines() or ["?"])[-1] + ")")
                continue
            raise SystemExit(proc.stderr)
        seconds, mb = (float(v) for v in proc.stdout.split())
        results[case] = (seconds, mb)
        print(f"{case:12s} {seconds * 1e3:9.1f} ms   peak +{mb:7.1f} MB above import baseline")
    ours_s, ours_mb = results["ours"]
    naive_s = results["naive"][0]
    print(f"speed-up vs naive: {naive_s / ours_s:.1f}x  [target >= 10x: "
          f"{'PASS' if naive_s / ours_s >= 10 else 'FAIL'}]; memory [target < 300 MB: "
          f"{'PASS' if ours_mb < 300 else 'FAIL'}]")


if __name__ == "__main__":
    main()
