"""Benchmark: peak memory and time per image of every command, at 1k and 10k images (50k with ``--big``).

Run: ``python bench/bench_scale.py`` (prints a table; exits 0). Options: ``--sizes 2000,20000`` (any
sizes), ``--big`` (adds 50,000), ``--only export-coco,eval`` (a subset of the commands), ``--code DIR``
(the visionkit source tree to measure, default this one: e.g. an older checkout, for a before/after
table), ``--work DIR`` (where the synthetic runs are kept between invocations, default
``/tmp/visionkit-bench-scale``).

Workload: offline replay runs of synthetic answers (:mod:`visionkit.testing.synthetic`): 320x240 JPEGs,
5-15 objects per image with 256x256 PNG probability masks, as Gemini 2.5 returns them. A second run
(answers of every other image redrawn) is the second input of ``consensus``; the truth of ``eval`` is the
second run's annotations of every tenth image.

Every command runs as its own subprocess (``python -m visionkit ...``); its peak RSS is the child's
``ru_maxrss`` from ``os.wait4`` (the largest resident set of that process, or of a child it waited
for: ``label``'s worker processes are counted only when larger than the main process). Sizes that are
missing are made first, in a process of their own, and not timed; ``label`` is timed on a fresh
folder, ``rerun`` on the finished one.
The table gives, per command and size, the peak RSS, the wall and CPU time per image (the command's own
CPU, worker processes it waited for included), and the growth of the peak RSS per image between the
smallest and the largest size (what the flat-memory targets of issue 18 bound).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("label", "rerun", "export-coco", "export-yolo-segment", "eval", "consensus", "report")


def _answers(root: Path, count: int, variant: int) -> tuple[Path, Path]:
    """``root/images`` (shared) and ``root/replay<variant>``: 5-15 objects per answer."""
    sys.path.insert(0, str(REPO))
    from visionkit.testing.synthetic import segment_answer, write_labelled_folder

    images, _ = write_labelled_folder(root, count, (320, 240), masks=0)
    replay = root / f"replay{variant}"
    replay.mkdir(exist_ok=True)
    for i in range(count):
        path = replay / f"img{i:05d}.txt"
        if not path.exists():
            seed = i if variant == 0 or i % 2 == 0 else 10**6 + i
            path.write_text(segment_answer(5 + seed % 11, seed=seed), encoding="utf-8")
    return images, replay


def _run(cmd: list[str], code: Path) -> tuple[float, float, float]:
    """Run one command; returns (seconds, peak RSS in MB, CPU seconds: the command's own, user + system,
    which a loaded machine disturbs less than the wall time)."""
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    # cwd=code: ``python -m`` puts the working folder first on sys.path, before PYTHONPATH
    proc = subprocess.Popen([sys.executable, "-m", "visionkit", *cmd], env=env, cwd=code,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_chunks = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr_chunks.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _prepare(work: Path, n: int, code: Path) -> Path:
    """Inputs and the two finished runs for size ``n`` (made once, kept in ``work``)."""
    root = work / str(n)
    root.mkdir(parents=True, exist_ok=True)
    images, replay0 = _answers(root, n, 0)
    _, replay1 = _answers(root, n, 1)
    for k, replay in enumerate((replay0, replay1)):
        run = root / f"run{k}"
        if not (run / "annotations.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            _run(["label", str(images), "--out", str(run), "--task", "segment", "--replay", str(replay),
                  "--no-overlays" if k else "--overlay-format=jpg"], code)
    truth = root / "truth10.json"
    if not truth.exists():
        data = json.loads((root / "run1" / "annotations.json").read_text(encoding="utf-8"))
        keep = {img["id"] for k, img in enumerate(data["images"]) if k % 10 == 0}
        data["images"] = [i for i in data["images"] if i["id"] in keep]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
        truth.write_text(json.dumps(data), encoding="utf-8")
    return root


def _prepare_apart(work: Path, n: int, code: Path) -> Path:
    """:func:`_prepare` in a fresh process, so that this one stays small: on Linux a child's ``ru_maxrss``
    starts at its parent's peak RSS (the high-water mark is carried across fork and exec), so making the
    inputs here (numpy, OpenCV, a whole ``annotations.json`` for the truth) would raise every peak that
    :func:`_run` measures afterwards."""
    proc = multiprocessing.get_context("spawn").Process(target=_prepare, args=(work, n, code))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"preparing the {n:,}-image runs failed (exit {proc.exitcode})")
    return work / str(n)


def _command(name: str, root: Path, scratch: Path) -> list[str]:
    run = root / "run0"
    if name in ("label", "rerun"):
        out = scratch / "label" if name == "label" else run
        return ["label", str(root / "images"), "--out", str(out), "--task", "segment", "--replay",
                str(root / "replay0"), "--overlay-format=jpg"]
    if name.startswith("export-"):
        return ["export", str(run), "--to", str(scratch / name), "--format", name.split("-", 1)[1]]
    if name == "eval":
        return ["eval", str(run), "--truth", str(root / "truth10.json"), "--out", str(scratch / "eval.json")]
    if name == "consensus":
        return ["consensus", str(run), str(root / "run1"), "--out", str(scratch / "consensus")]
    return ["report", str(run), "--out", str(scratch / "report")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--big", action="store_true", help="also 50,000 images")
    ap.add_argument("--only", default=",".join(COMMANDS), help="commands, comma-separated")
    ap.add_argument("--code", type=Path, default=REPO, help="the visionkit source tree to measure")
    ap.add_argument("--work", type=Path, default=Path("/tmp/visionkit-bench-scale"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([50000] if args.big else [])
    commands = [c for c in args.only.split(",") if c]
    unknown = set(commands) - set(COMMANDS)
    if unknown:
        ap.error(f"unknown commands {sorted(unknown)}; choose from {', '.join(COMMANDS)}")
    print(f"code: {args.code}  load average: {os.getloadavg()[0]:.2f}  cpus: {os.cpu_count()}")
    table: dict[str, dict[int, tuple[float, float]]] = {c: {} for c in commands}
    for n in sizes:
        root = _prepare_apart(args.work, n, REPO)
        for name in commands:
            scratch = args.work / f"scratch-{n}-{os.getpid()}"  # two benches may share --work
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            seconds, mb, cpu = _run(_command(name, root, scratch), args.code)
            table[name][n] = (seconds, mb)
            print(f"{name:20s} {n:>7,d} images: peak RSS {mb:8.1f} MB, {1000 * seconds / n:7.2f} ms/image "
                  f"wall, {1000 * cpu / n:7.2f} ms/image CPU (load {os.getloadavg()[0]:.2f})", flush=True)
            shutil.rmtree(scratch, ignore_errors=True)
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print("\n| command | " + " | ".join(f"{n:,} images" for n in sizes)
              + f" | RSS growth {lo:,} -> {hi:,} |")
        print("|---" * (len(sizes) + 2) + "|")
        for name in commands:
            cells = [f"{table[name][n][1]:.0f} MB, {1000 * table[name][n][0] / n:.2f} ms/img" for n in sizes]
            growth = (table[name][hi][1] - table[name][lo][1]) * 1024 / (hi - lo)
            print(f"| {name} | " + " | ".join(cells) + f" | {growth:.2f} KB/image |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
