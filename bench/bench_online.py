"""Benchmark: the online ``visionkit label`` path's client CPU per image, against the offline replay of the
same answers (the floor: parse, masks, COCO and overlays are the same work in both).

Run: ``python bench/bench_online.py`` (prints numbers; exits 0). Options: ``--images N`` (default 200),
``--concurrency C`` (default 16; ``--serial`` adds a concurrency-1 run), ``--repeat R`` (median of R),
``--size WxH`` (default 1024x768), ``--masks M`` (default 10), ``--filtered-png`` (masks PNG-encoded by
OpenCV, with row filters; by default unfiltered, as every mask in the recorded Gemini answers is),
``--data DIR`` (the generated folder is kept there and reused), ``--profile FILE`` (a cProfile of the
first online run, every thread, timed in thread CPU time; read it with ``pstats``).

The images and answers are :func:`visionkit.testing.synthetic.write_labelled_folder`'s (JPEGs, PNG masks).
The server is a :class:`visionkit.testing.FakeGemini` handing out those answers in turn, in a process of
its own, so its CPU is not counted. Each ``label`` runs in a fresh process; its CPU is the user + system
time of that process during the ``label`` call (imports and start-up not counted; the online path uses
threads only). The replay floor is ``label(..., replay=OUT/responses, processes=False)`` at the same
concurrency: the same threads, no requests. ``online - replay`` is what the requests cost: preparing the
image, building and sending the request, reading the answer, saving it.

The machine is shared: the load average is printed with every line; compare runs made close together.
With ``VK_BENCH_DEBUG=1`` each run's user/system split and context switches are printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from visionkit.testing.synthetic import write_labelled_folder  # noqa: E402

# One label run in a fresh process: online (argv: images out base_url concurrency [profile]) or the
# threaded replay of a run's saved answers (argv: images out replay concurrency).
_CHILD = """
import resource, sys, time
from visionkit.run.pipeline import label
from visionkit.gemini import GeminiClient
import visionkit.draw.overlay, visionkit.formats.coco, visionkit.answers.parse  # before the clock


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


t0, c0 = time.perf_counter(), cpu()
mode, images, out, arg, conc = sys.argv[1:6]
conc = int(conc)
if mode == "replay":
    summary = label([images], out, replay=arg, concurrency=conc, processes=False)
else:
    prof = sys.argv[6] if len(sys.argv) > 6 else ""
    if prof:
        import cProfile, pstats, threading
        profilers = [cProfile.Profile(time.thread_time)]

        def _thread_profiler(*_):  # a profiler of its own for each new thread (cProfile is per thread)
            profilers.append(cProfile.Profile(time.thread_time))
            profilers[-1].enable()

        threading.setprofile(_thread_profiler)
        profilers[0].enable()
    with GeminiClient(api_key="bench-key", base_url=arg, pool_size=conc) as client:
        summary = label([images], out, client=client, concurrency=conc)
    if prof:
        profilers[0].disable()
        for p in profilers:
            p.disable()
            p.create_stats()
        pstats.Stats(*[p for p in profilers if p.stats]).dump_stats(prof)
assert summary.ok, summary.failures[:3]
_r = resource.getrusage(resource.RUSAGE_SELF)
sys.stderr.write(f"user {_r.ru_utime:.2f} sys {_r.ru_stime:.2f} vcsw {_r.ru_nvcsw} ivcsw {_r.ru_nivcsw}\\n")
print(time.perf_counter() - t0, cpu() - c0)
"""


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_child(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s: user + system) of the ``label`` call in a fresh process (start-up not counted)."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"label run failed:\n{proc.stdout}\n{proc.stderr}")
    if os.environ.get("VK_BENCH_DEBUG"):
        print(args[0], proc.stderr.strip().splitlines()[-1])
    wall, cpu = (float(v) for v in proc.stdout.split()[-2:])
    return wall, cpu


# The server: every generateContent request gets the next recorded answer in turn (the images all have one
# size, so ReplayResponder could not tell them apart; any answer fits any of them). Prints its base URL.
_SERVER = """
import itertools, sys, time
from pathlib import Path
from visionkit.testing import FakeGemini
from visionkit.testing.fake_responses import text_response
answers = itertools.cycle([text_response(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*.txt"))])
with FakeGemini(lambda request: next(answers)) as server:
    print(server.base_url, flush=True)
    while True:
        time.sleep(3600)
"""


def start_server(answers: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(answers)], cwd=REPO, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    url = server.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        server.kill()
        raise SystemExit(f"FakeGemini did not start: {url!r}")
    return server, url


def measure(images: Path, url: str, n: int, conc: int, repeat: int, profile: str = "") -> dict[str, float]:
    """Median CPU ms per image and wall s, online and replayed, over ``repeat`` pairs of runs."""
    rows: dict[str, list[float]] = {"online_cpu": [], "replay_cpu": [], "online_wall": [], "replay_wall": []}
    for i in range(repeat):
        scratch = Path(tempfile.mkdtemp(prefix="vk-bench-online-"))
        try:
            extra = [profile] if profile and i == 0 else []
            wall, cpu = run_child(["online", str(images), str(scratch / "online"), url, str(conc),
                                                 *extra])
            rows["online_cpu"].append(cpu / n * 1e3)
            rows["online_wall"].append(wall)
            wall, cpu = run_child(["replay", str(images), str(scratch / "replay"),
                                                 str(scratch / "online" / "responses"), str(conc)])
            rows["replay_cpu"].append(cpu / n * 1e3)
            rows["replay_wall"].append(wall)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {k: statistics.median(v) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serial", action="store_true", help="also measure at concurrency 1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "visionkit-bench-label")
    parser.add_argument("--size", default="1024x768", help="image size WxH (default 1024x768)")
    parser.add_argument("--masks", type=int, default=10, help="masks per answer (default 10)")
    parser.add_argument("--filtered-png", action="store_true",
                        help="masks as OpenCV writes PNGs (row filters) instead of as Gemini does (none)")
    parser.add_argument("--profile", default="", help="write a cProfile of the first online run here")
    args = parser.parse_args()
    n, wh = args.images, tuple(int(v) for v in args.size.split("x"))
    kind = "filtered" if args.filtered_png else "unfiltered"
    images, answers = write_labelled_folder(args.data / f"{n}x{wh[0]}x{wh[1]}m{args.masks}{kind}", n, wh,
                                            masks=args.masks, unfiltered=not args.filtered_png)
    print(f"{n} images {wh[0]}x{wh[1]}, {args.masks} {kind} PNG masks each; {os.cpu_count()} CPUs; "
          f"load {_load()}")
    server, url = start_server(answers)
    try:
        for conc in ([args.concurrency] + ([1] if args.serial else [])):
            r = measure(images, url, n, conc, args.repeat, args.profile if conc == args.concurrency else "")
            print(f"concurrency {conc:2d}: online CPU {r['online_cpu']:6.2f} ms/image "
                  f"(wall {r['online_wall']:5.2f} s), replay CPU {r['replay_cpu']:6.2f} ms/image "
                  f"(wall {r['replay_wall']:5.2f} s), online - replay "
                  f"{r['online_cpu'] - r['replay_cpu']:6.2f} ms/image; load {_load()}", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
