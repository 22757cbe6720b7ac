"""Benchmark: the whole offline ``visionkit label`` path against the per-stage floor, supervision and the
published recipe, on a generated folder (default 200 images, 1024x768, 10 masks each).

Run: ``python bench/bench_label.py`` (prints numbers; exits 0). Options: ``--images N``, ``--repeat R``,
``--data DIR`` (the generated folder is kept there and reused).

1. Per-stage floor, measured in this process, serially (CPU time), median over the images: JPEG decode
   (cv2), answer JSON + base64 + mask PNG decode, crop resize/threshold + RLE, overlay draw, overlay JPEG
   encode. Their sum is the serial floor per image: the work that no implementation can skip.
2. The whole CLI path, ``python -m visionkit label DIR --replay ANSWERS --out OUT -q``, in a fresh process,
   median of ``--repeat`` runs: wall ms/image (start-up included), CPU ms/image (user + sys of the
   process and its workers), and the largest process's peak RSS. Also with PNG overlays, without
   overlays, and with the thread pool instead of processes (``label(processes=False)``).
   Target: wall ms/image <= 1.5x the serial floor with JPEG overlays, on 2 cores.
3. Peak memory flat in the image count: the same run on a quarter of the images.
4. The same per-image work done with supervision (``Detections.from_vlm``, full-image masks, pycocotools
   RLE, Mask+Box+Label annotators, JPEG) and with the published recipe (``visionkit.testing.recipe``:
   Pillow decode, a full canvas per mask, pycocotools RLE; drawn with supervision's annotators when
   installed), serial ms/image on a sample of the images.

The machine is shared: print ``os.getloadavg()`` with the numbers, and compare runs made close together.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from visionkit.testing.synthetic import write_labelled_folder  # noqa: E402

WH = (1024, 768)


def _median_ms(fn, items, repeat: int = 1) -> float:
    """Median over ``items`` of the best of ``repeat`` CPU timings of ``fn(item)``, in ms."""
    times = []
    for item in items:
        best = None
        for _ in range(repeat):
            t = time.process_time()  # CPU time: on a shared machine wall time counts others' slices
            fn(item)
            dt = time.process_time() - t
            best = dt if best is None else min(best, dt)
        times.append(best)
    return statistics.median(times) * 1e3


def stage_floor(images: list[Path], answers: list[Path]) -> dict[str, float]:
    """Per-stage serial ms per image (medians)."""
    from visionkit import parse_response
    from visionkit.core.boxes import gemini_to_pixel_box
    from visionkit.core.masks import probability_to_crop
    from visionkit.core.rle import crop_to_rle
    from visionkit.draw.overlay import draw_overlay

    blobs = [np.fromfile(p, np.uint8) for p in images]
    texts = [a.read_text() for a in answers]
    rgbs = [cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for b in blobs[:20]]
    dets = [parse_response(t, WH) for t in texts[:20]]
    draw_overlay(rgbs[0], dets[0])  # warm the tag cache, as a run does after its first image

    def masks_of(text: str):
        body = text.split("```json", 1)[1].split("```", 1)[0]
        return [(item["box_2d"], cv2.imdecode(np.frombuffer(base64.b64decode(item["mask"].split(",", 1)[1]),
                                                            np.uint8), cv2.IMREAD_UNCHANGED))
                for item in json.loads(body)]

    decoded = [masks_of(t) for t in texts[:20]]

    def crops_and_rle(items):
        for box, prob in items:
            pixel_box = gemini_to_pixel_box(np.asarray([box], float), WH)[0]
            crop_to_rle(probability_to_crop(prob, pixel_box), WH)

    def encode(rgb):
        cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])

    drawn = [draw_overlay(r, d) for r, d in zip(rgbs, dets)]
    return {
        "JPEG decode (cv2)": _median_ms(lambda b: cv2.imdecode(b, cv2.IMREAD_COLOR), blobs[:40], 3),
        "answer JSON + base64 + mask PNG decode": _median_ms(masks_of, texts[:40], 3),
        "crop resize/threshold + RLE": _median_ms(crops_and_rle, decoded, 3),
        "overlay draw (visionkit)": _median_ms(lambda i: draw_overlay(rgbs[i], dets[i]), range(len(rgbs)), 3),
        "overlay encode: JPEG q90 (cv2)": _median_ms(encode, drawn, 3),
    }


def _become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    The label CLI's pool forks its workers from a forkserver process when the CLI runs native threads
    (``visionkit.run.procpool.start_method``): they are the server's children, not the CLI's, and the server
    outlives the CLI by a moment, so without this their CPU time never reaches ``RUSAGE_CHILDREN``."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans(limit: float = 10.0) -> None:
    """Wait for every descendant left to this (subreaper) process, up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _sample_tree_peak(proc: subprocess.Popen, peak_kb: list[int]) -> None:
    """Keep ``peak_kb[0]`` at the largest high-water mark among ``proc``'s descendants until it exits."""
    while proc.poll() is None:
        for child in _descendants(proc.pid):
            peak_kb[0] = max(peak_kb[0], _hwm_kb(child))
        time.sleep(0.02)


def run_cli(args: list[str], repeat: int) -> tuple[float, float, float]:
    """Median (wall s, CPU s of the process tree, peak RSS MB of its largest process) over ``repeat`` runs,
    each in a fresh process. The CPU time includes forkserver workers (this process is their subreaper);
    the peak is the CLI's own high-water mark and its descendants', read every 20 ms while it runs."""
    walls, cpus, peaks = [], [], []
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(prefix="vk-bench-label-"))
        try:
            _reap_orphans(0)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, *args, "--out", str(out / "o")], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=REPO)
            tree_peak = [0]
            sampler = threading.Thread(target=_sample_tree_peak, args=(proc, tree_peak), daemon=True)
            sampler.start()
            stdout, stderr = proc.communicate()
            walls.append(time.perf_counter() - t)
            sampler.join()
            _reap_orphans()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(args)} failed:\n{stdout}\n{stderr}")
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            peaks.append(max(_peak_mb(stderr), tree_peak[0] / 1024))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return statistics.median(walls), statistics.median(cpus), statistics.median(peaks)


# The child prints the peak RSS of its largest process last on stderr: its own VmHWM (ru_maxrss would
# carry over the benchmark's own peak across exec) and its workers' ru_maxrss (they fork from it).
_PEAK = """
def _peak_kb():
    import resource
    with open("/proc/self/status") as fh:
        own = next((int(l.split()[1]) for l in fh if l.startswith("VmHWM:")), 0)
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

_CHILD = _PEAK + """
import sys
sys.argv = ["visionkit"] + sys.argv[1:]
from visionkit.cli import main
code = main()
sys.stderr.write(f"\\nPEAK_KB {_peak_kb()}\\n")
sys.exit(code)
"""

_CHILD_THREADS = _PEAK + """
import sys
from visionkit.run.pipeline import label
a = sys.argv[1:]
label([a[0]], a[a.index("--out") + 1], replay=a[a.index("--replay") + 1], processes=False)
sys.stderr.write(f"\\nPEAK_KB {_peak_kb()}\\n")
"""


def _peak_mb(stderr: str) -> float:
    for line in reversed(stderr.splitlines()):
        if line.startswith("PEAK_KB "):
            return int(line.split()[1]) / 1024
    return float("nan")


def supervision_per_image(images: list[Path], answers: list[Path]) -> float | None:
    try:
        import supervision as sv
        from pycocotools import mask as mask_utils
    except ImportError:
        return None
    annotators = (sv.MaskAnnotator(), sv.BoxAnnotator(), sv.LabelAnnotator())

    def one(pair):
        image, answer = pair
        bgr = cv2.imread(str(image))
        det = sv.Detections.from_vlm(sv.VLM.GOOGLE_GEMINI_2_5, answer.read_text(),
                                     resolution_wh=(bgr.shape[1], bgr.shape[0]))
        for m in det.mask:
            mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        scene = bgr.copy()
        for a in annotators:
            scene = a.annotate(scene, det)
        cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 90])

    return _median_ms(one, list(zip(images, answers)))


def recipe_per_image(images: list[Path], answers: list[Path]) -> float:
    from PIL import Image

    from visionkit.testing.recipe import recipe_coco_rles, recipe_parse

    try:
        import supervision as sv
    except ImportError:
        sv = None

    def one(pair):
        image, answer = pair
        rgb = np.array(Image.open(image).convert("RGB"))
        parsed = recipe_parse(answer.read_text(), (rgb.shape[1], rgb.shape[0]))
        recipe_coco_rles(parsed)
        if sv is not None:  # the recipe draws with supervision's annotators too
            det = sv.Detections(xyxy=np.array([b for _, b, _ in parsed], float).reshape(-1, 4),
                                mask=np.array([m for _, _, m in parsed]), class_id=np.arange(len(parsed)))
            scene = rgb[:, :, ::-1].copy()
            for a in (sv.MaskAnnotator(), sv.BoxAnnotator()):
                scene = a.annotate(scene, det)
            cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 90])

    return _median_ms(one, list(zip(images, answers)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "visionkit-bench-label")
    parser.add_argument("--sample", type=int, default=20, help="images for the supervision/recipe runs")
    args = parser.parse_args()
    if not _become_subreaper():
        print("note: not Linux (no PR_SET_CHILD_SUBREAPER): forkserver workers' CPU time is not counted")
    n = args.images
    data = args.data / f"{n}x{WH[0]}x{WH[1]}"
    images_dir, replay = write_labelled_folder(data, n, WH, masks=10)
    images = sorted(images_dir.glob("*.jpg"))
    answers = [replay / f"{p.stem}.txt" for p in images]
    print(f"{n} images {WH[0]}x{WH[1]}, 10 masks each; {os.cpu_count()} CPUs; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at start")

    print("\n== 1. per-stage floor (serial, median per image) ==")
    stages = stage_floor(images, answers)
    for name, ms in stages.items():
        print(f"  {name:40s} {ms:7.2f} ms")
    floor = sum(stages.values())
    print(f"  {'floor (sum)':40s} {floor:7.2f} ms")

    print(f"\n== 2. whole CLI path, median of {args.repeat} runs (fresh process each) ==")
    base = ["-c", _CHILD, "label", str(images_dir), "--replay", str(replay), "-q"]
    cases = {
        "label, JPEG overlays (default)": base,
        "label, PNG overlays": base + ["--overlay-format", "png"],
        "label, no overlays": base + ["--no-overlays"],
        "label, JPEG overlays, threads": ["-c", _CHILD_THREADS, str(images_dir), "--replay", str(replay)],
    }
    results = {}
    for name, cli in cases.items():
        wall, cpu, peak = run_cli(cli, args.repeat)
        results[name] = (wall, cpu, peak)
        print(f"  {name:34s} wall {wall / n * 1e3:6.2f} ms/image = {wall / n * 1e3 / floor:4.2f}x floor | "
              f"CPU {cpu / n * 1e3:6.2f} ms/image | peak {peak:6.0f} MB")
    wall = results["label, JPEG overlays (default)"][0] / n * 1e3
    print(f"  target: wall <= 1.5x the floor with JPEG overlays: {wall / floor:.2f}x "
          f"[{'PASS' if wall <= 1.5 * floor else 'FAIL'}]")

    print("\n== 3. peak memory against the image count ==")
    quarter = max(n // 4, 16)
    q_data = args.data / f"{quarter}x{WH[0]}x{WH[1]}"
    q_images, q_replay = write_labelled_folder(q_data, quarter, WH, masks=10)
    _, _, q_peak = run_cli(["-c", _CHILD, "label", str(q_images), "--replay", str(q_replay), "-q"], 1)
    peak = results["label, JPEG overlays (default)"][2]
    print(f"  {quarter} images: peak {q_peak:.0f} MB; {n} images: peak {peak:.0f} MB "
          f"[{'flat' if peak <= q_peak * 1.15 + 5 else 'GROWS'}]")

    print(f"\n== 4. the same work elsewhere (serial, median per image over {args.sample} images) ==")
    sample_i, sample_a = images[:args.sample], answers[:args.sample]
    sv_ms = supervision_per_image(sample_i, sample_a)
    recipe_ms = recipe_per_image(sample_i, sample_a)
    cpu = results["label, JPEG overlays (default)"][1] / n * 1e3
    print(f"  visionkit CLI (CPU per image)    {cpu:7.2f} ms; wall {wall:.2f} ms")
    if sv_ms is None:
        print("  supervision not installed: pip install supervision to compare")
    else:
        print(f"  supervision                      {sv_ms:7.2f} ms = {sv_ms / cpu:4.1f}x visionkit's CPU")
    print(f"  published recipe                 {recipe_ms:7.2f} ms = {recipe_ms / cpu:4.1f}x visionkit's CPU")
    print(f"\nload average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
