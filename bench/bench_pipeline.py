"""Benchmark: the online pipeline's throughput and memory against a local FakeGemini server.

Run: ``python bench/bench_pipeline.py`` (prints numbers; exits 0).

1. Throughput. 200 images, concurrency 16, the server answering after 300 ms. Ideal = 16 / 0.3 s = 53.3
   images/s. Only the time beyond the same run with ``--replay`` counts (decode, parse, overlays and COCO
   are the same work in both), so ``achieved = N / (t_online - t_replay)``. Target: >= 80% of ideal.
2. Memory. Peak RSS above the import baseline for 200 and 2000 images (fresh process each, short
   latency). Target: flat, i.e. results are streamed to disk, not held.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _peak import own_peak_kb  # bench/ is the script's folder, first on sys.path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_images(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (320, 240), ((i * 37) % 256, (i * 11) % 256, 120)).save(folder / f"img{i:05d}.png")
    return folder


def run(n: int, latency: float, concurrency: int, tmp: Path) -> tuple[float, float, int]:
    """(seconds online, seconds replaying the saved responses, requests sent)."""
    from visionkit import label
    from visionkit.gemini import GeminiClient
    from visionkit.testing.fake_gemini import FakeGemini

    images = make_images(tmp / f"images{n}", n)
    out = tmp / f"online{n}"
    with FakeGemini(latency=latency, api_key="bench-key") as server, \
            GeminiClient(api_key="bench-key", base_url=server.base_url, pool_size=concurrency) as client:
        t = time.perf_counter()
        summary = label([images], out, client=client, concurrency=concurrency)
        online = time.perf_counter() - t
        sent = len(server.generate_requests)
    assert summary.ok, summary.failures[:3]
    t = time.perf_counter()
    label([images], tmp / f"replay{n}", replay=out / "responses", concurrency=concurrency)
    return online, time.perf_counter() - t, sent


def child_memory(n: int) -> None:
    import visionkit  # noqa: F401
    import visionkit.draw.overlay  # noqa: F401
    import visionkit.gemini  # noqa: F401
    import visionkit.run.pipeline  # noqa: F401

    baseline = own_peak_kb() / 1024
    with tempfile.TemporaryDirectory() as tmp:
        online, _, _ = run(n, latency=0.005, concurrency=16, tmp=Path(tmp))
        peak = own_peak_kb() / 1024
    print(f"{online:.3f} {peak - baseline:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory)
        return

    n, lat, conc = args.images, args.latency, args.concurrency
    print(f"== 1. throughput: {n} images, concurrency {conc}, server latency {lat * 1000:.0f} ms ==")
    with tempfile.TemporaryDirectory() as tmp:
        online, replay, sent = run(n, lat, conc, Path(tmp))
    ideal = conc / lat
    achieved = n / (online - replay)
    print(f"online {online:.2f} s ({sent} requests), replay {replay:.2f} s, "
          f"beyond replay {online - replay:.2f} s")
    print(f"achieved {achieved:.1f} images/s, ideal {ideal:.1f} images/s = {achieved / ideal:.0%} of ideal "
          f"[target >= 80%: {'PASS' if achieved >= 0.8 * ideal else 'FAIL'}]")

    print("\n== 2. peak memory above the import baseline (fresh process each, 5 ms latency) ==")
    peaks = {}
    for count in (200, 2000):
        proc = subprocess.run([sys.executable, __file__, "--child-memory", str(count)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        seconds, mb = (float(v) for v in proc.stdout.split())
        peaks[count] = mb
        print(f"{count:5d} images: {seconds:6.2f} s, peak +{mb:6.1f} MB")
    growth = peaks[2000] - peaks[200]
    print(f"growth from 200 to 2000 images: {growth:+.1f} MB "
          f"[target flat (< 50 MB for 10x the images): {'PASS' if growth < 50 else 'FAIL'}]")


if __name__ == "__main__":
    main()
