"""Benchmark: building and uploading the Batch API JSONL for 1,000 and 10,000 images, streaming.

Run: ``python bench/bench_batch.py`` (prints numbers; exits 0). ``--sizes 1000 10000`` picks the counts.

For each count, a fresh child process runs :func:`visionkit.run.batching.submit` against a FakeGemini server
running in this (parent) process, with the job forced into one uploaded JSONL file (``max_inline_bytes=0``)
and left PENDING (nothing is answered), preparing images on one thread per CPU. It reports:

* the wall time of build + upload + create, and images per second;
* the floor: the same images through ``GeminiClient.prepare`` alone (decode, EXIF, resize, JPEG), the work no
  JSONL writer can skip; the rest is base64 + JSON + disk + upload;
* peak memory above the process's baseline after imports, in a second fresh process: growth of its peak RSS
  and the tracemalloc peak of the submit call (tracemalloc slows the run, so the time comes from the first
  process). Target: flat from 1,000 to 10,000 images (the JSONL is written one line at a time and
  uploaded from disk, never held).

Images are small generated PNGs (96 x 72, noise) so the run fits a 2-core machine in about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _peak import own_peak_kb  # bench/ is the script's folder, first on sys.path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KEY = "bench-batch-key"


def make_images(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)
    for i in range(n):
        Image.fromarray(np.roll(tile, i, axis=1)).save(folder / f"img{i:05d}.png", compress_level=1)
    return folder


def child(images: str, out: str, base_url: str, mode: str) -> None:
    """One submit in a fresh process: ``mode`` "time" (plus the floor) or "memory" (tracemalloc on)."""
    import tracemalloc

    from visionkit.gemini import GeminiClient
    from visionkit.run import batching

    paths = sorted(Path(images).iterdir())
    with GeminiClient(api_key=KEY, base_url=base_url, upload_poll_interval=0, timeout=300) as client:
        client.prepare(paths[0])  # warm the imports the first image pulls in
        base = own_peak_kb()
        if mode == "memory":
            tracemalloc.start()
        t = time.perf_counter()
        st = batching.submit([images], out, client=client, task="detect", max_inline_bytes=0,
                             concurrency=os.cpu_count() or 1)
        took = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] if mode == "memory" else 0
        tracemalloc.stop()
        grew = own_peak_kb() - base
        floor = 0.0
        if mode == "time":
            t = time.perf_counter()
            for path in paths:
                client.prepare(path)
            floor = time.perf_counter() - t
    print(json.dumps({"seconds": took, "floor": floor, "rss_growth_kb": grew, "traced_peak": peak,
                      "jobs": len(st.jobs), "bytes": sum(j.bytes for j in st.jobs),
                      "steps": sorted({j.step for j in st.jobs})}))


def measure(n: int, tmp: Path) -> dict:
    from visionkit.testing.fake_gemini import FakeGemini

    images = make_images(tmp / f"images{n}", n)
    result: dict = {}
    for mode in ("time", "memory"):
        with FakeGemini(api_key=KEY) as server:
            server.batch.timeline = ("PENDING",)
            proc = subprocess.run([sys.executable, __file__, "--child", str(images), str(tmp / f"{mode}{n}"),
                                   server.base_url, mode], capture_output=True, text=True,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)))
            if proc.returncode:
                raise SystemExit(proc.stderr)
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            got["uploaded"] = sum(r.body_size for r in server.batch.calls("upload"))
            got["creates"] = len(server.batch.creates)
        assert got["uploaded"] == got["bytes"] and got["creates"] == got["jobs"], got
        assert got["steps"] == ["submitted"], got
        if mode == "time":
            result.update(got)
        else:
            result["traced_peak"], result["rss_growth_kb"] = got["traced_peak"], got["rss_growth_kb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child", nargs=4, metavar=("IMAGES", "OUT", "URL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    print(f"batch JSONL build + upload, {os.cpu_count()} CPUs, 96x72 PNG inputs, one uploaded file per job")
    print(f"{'images':>7} {'jobs':>4} {'JSONL MB':>9} {'seconds':>8} {'img/s':>7} {'floor s':>8} "
          f"{'RSS +MB':>8} {'traced peak MB':>15}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = measure(n, Path(tmp))
            rows.append((n, r))
            print(f"{n:>7} {r['jobs']:>4} {r['bytes'] / 1e6:>9.1f} {r['seconds']:>8.2f} "
                  f"{n / r['seconds']:>7.0f} {r['floor']:>8.2f} {r['rss_growth_kb'] / 1024:>8.1f} "
                  f"{r['traced_peak'] / 1e6:>15.2f}")
    if len(rows) > 1:
        (n0, a), (n1, b) = rows[0], rows[-1]
        print(f"memory from {n0} to {n1} images ({n1 / n0:.0f}x): traced peak "
              f"{b['traced_peak'] / max(a['traced_peak'], 1):.2f}x, RSS growth "
              f"{b['rss_growth_kb'] / 1024:.1f} MB vs {a['rss_growth_kb'] / 1024:.1f} MB")


if __name__ == "__main__":
    main()
