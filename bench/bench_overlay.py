"""Benchmark: draw_overlay against supervision's annotators and a naive PIL overlay.

Run: ``python bench/bench_overlay.py`` (prints numbers; exits 0). Options: ``--repeat N`` (default 50),
``--no-large`` to skip the 4000x3000 case, ``--save PATH`` to write the cupcakes overlay as PNG.

1. The real 15-mask cupcakes answer (../shared/gemini-real/cookbook-cupcakes/segment.txt) on its image
   resized from 620x620 to 1024x1024. Median of ``--repeat`` runs each, in this one process:

   * visionkit: ``draw_overlay(image, detections)`` with masks, boxes and labels (tags cached after the
     first call, as in any batch; the cold, uncached time is printed too);
   * supervision: ``MaskAnnotator`` + ``BoxAnnotator`` + ``LabelAnnotator`` on ``sv.Detections`` with a full
     ``N x H x W`` bool mask; only the three ``annotate`` calls are timed, on a fresh ``image.copy()``
     made outside the timer (supervision draws into its input);
   * naive PIL: a full-image blend and composite per mask (``Image.blend`` + ``Image.composite``), then
     ``ImageDraw`` rectangles and text. Full masks are built outside the timer for both baselines.

   Target: visionkit >= 2x faster than supervision's three annotators.
2. 100 random elliptic masks on a 4000x3000 image, visionkit vs supervision (fewer repeats).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = Path(os.environ.get("VISIONKIT_SHARED", REPO.parent / "shared")) / "gemini-real"
CUPCAKES = REAL / "cookbook-cupcakes"
TARGET = 2.0


def timeit(fn, repeat: int, setup=None) -> float:
    """Median seconds of ``fn(setup())`` over ``repeat`` calls after one warm-up; setup is not timed."""
    setup = setup or (lambda: None)
    fn(setup())
    times = []
    for _ in range(repeat):
        arg = setup()
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- detections ----------------------------------------------------------------------------------------

def load_detections(text: str, wh: tuple[int, int]):
    """parse_response when visionkit.answers.parse exists; otherwise the cookbook decode, done here."""
    if (REPO / "visionkit" / "parse.py").is_file():
        from visionkit.answers.parse import parse_response

        return parse_response(text, image_size=wh)
    return decode_locally(text, wh)


def decode_locally(text: str, wh: tuple[int, int]):
    import base64
    import json

    from visionkit import Detections, MaskCrop

    body = text.split("```json", 1)[1].split("```", 1)[0] if "```json" in text else text
    width, height = wh
    xyxy, labels, masks = [], [], []
    for item in json.loads(body):
        ymin, xmin, ymax, xmax = item["box_2d"]
        x0, y0 = int(xmin / 1000 * width), int(ymin / 1000 * height)
        x1, y1 = int(xmax / 1000 * width), int(ymax / 1000 * height)
        if x1 <= x0 or y1 <= y0:
            continue
        png = base64.b64decode(item["mask"].split("data:image/png;base64,", 1)[1])
        prob = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        prob = cv2.resize(prob, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        xyxy.append([x0, y0, x1, y1])
        labels.append(item.get("label", "object"))
        masks.append(MaskCrop(prob > 127, x0, y0))
    return Detections(np.array(xyxy, float).reshape(-1, 4), labels, wh, masks=tuple(masks))


def random_detections(wh: tuple[int, int], n: int, seed: int = 0):
    from visionkit import Detections, MaskCrop

    rng = np.random.default_rng(seed)
    width, height = wh
    xyxy, masks = [], []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(60, 900, 2))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), float(rng.integers(0, 180)), 0, 360, 1, -1)
        xyxy.append([x0, y0, x0 + w, y0 + h])
        masks.append(MaskCrop(m.astype(bool), x0, y0))
    labels = [f"object {i % 12}" for i in range(n)]
    return Detections(np.array(xyxy, float), labels, wh, scores=rng.uniform(0.3, 1.0, n), masks=tuple(masks))


# -- the three contenders ------------------------------------------------------------------------------

def visionkit_fn(image, det):
    from visionkit.draw.overlay import draw_overlay

    return lambda _: draw_overlay(image, det)


def visionkit_cold_fn(image, det):
    from visionkit.draw import overlay

    def run(_):
        overlay._render_tag.cache_clear()
        overlay.draw_overlay(image, det)
    return run


def supervision_fns(image, det):
    try:
        import supervision as sv
    except ImportError:
        return None
    labels = [str(s) for s in det.labels]
    names = sorted(set(labels))
    full = np.stack([det.mask(i) for i in range(len(det))]) if len(det) else None
    svd = sv.Detections(xyxy=np.array(det.xyxy, dtype=np.float32), mask=full,
                        class_id=np.array([names.index(s) for s in labels]),
                        data={"class_name": np.array(labels)})
    mask_ann, box_ann, label_ann = sv.MaskAnnotator(), sv.BoxAnnotator(), sv.LabelAnnotator()

    def run(scene):
        scene = mask_ann.annotate(scene, svd)
        scene = box_ann.annotate(scene, svd)
        return label_ann.annotate(scene, svd)
    return run, (lambda: image.copy())


def naive_fn(image, det, alpha=0.45):
    from PIL import Image, ImageDraw

    from visionkit.draw.fonts import load_font
    from visionkit.draw.overlay import label_color

    size = max(10, round(min(image.shape[:2]) * 0.022))
    font = load_font(size)
    full = [Image.fromarray(det.mask(i).astype(np.uint8) * 255, "L") for i in range(len(det))]
    colors = [label_color(s) for s in det.labels]

    def run(_):
        base = Image.fromarray(image)
        for mask, color in zip(full, colors):
            tinted = Image.blend(base, Image.new("RGB", base.size, color), alpha)
            base = Image.composite(tinted, base, mask)
        draw = ImageDraw.Draw(base)
        for (x0, y0, x1, y1), label, color in zip(det.xyxy, det.labels, colors):
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=2)
            left, top, right, bottom = draw.textbbox((x0, y0), label, font=font, anchor="lb")
            draw.rectangle([left, top, right, bottom], fill=color)
            draw.text((x0, y0), label, font=font, fill=(255, 255, 255), anchor="lb")
        return np.asarray(base)
    return run


# -- report --------------------------------------------------------------------------------------------

def compare(title: str, image, det, repeat: int, naive: bool) -> None:
    print(f"== {title} ==")
    ours = timeit(visionkit_fn(image, det), repeat)
    cold = timeit(visionkit_cold_fn(image, det), max(repeat // 5, 3))
    print(f"visionkit draw_overlay           {ours * 1e3:9.2f} ms   (cold tag cache: {cold * 1e3:.2f} ms)")
    sv = supervision_fns(image, det)
    if sv is None:
        print("supervision not installed: pip install supervision to compare")
    else:
        t_sv = timeit(sv[0], repeat, setup=sv[1])
        ratio = t_sv / ours
        print(f"supervision Mask+Box+Label       {t_sv * 1e3:9.2f} ms   = {ratio:5.2f}x visionkit  "
              f"[target >= {TARGET:g}x: {'PASS' if ratio >= TARGET else 'FAIL'}]")
    if naive:
        t_naive = timeit(naive_fn(image, det), max(repeat // 5, 3))
        print(f"naive PIL (full canvas per mask) {t_naive * 1e3:9.2f} ms   "
              f"= {t_naive / ours:5.2f}x visionkit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--no-large", action="store_true", help="skip the 4000x3000, 100-mask case")
    parser.add_argument("--save", help="write the cupcakes overlay to this PNG")
    args = parser.parse_args()

    wh = (1024, 1024)
    if not (CUPCAKES / "segment.txt").is_file():
        print(f"skipped: {CUPCAKES / 'segment.txt'} not found (../shared is absent)")
        return
    bgr = cv2.imread(str(CUPCAKES / "image.png"), cv2.IMREAD_COLOR)
    image = cv2.cvtColor(cv2.resize(bgr, wh, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    det = load_detections((CUPCAKES / "segment.txt").read_text(), wh)
    compare(f"real cupcakes answer: {len(det)} masks, {wh[0]}x{wh[1]}, median of {args.repeat}",
            image, det, args.repeat, naive=True)
    if args.save:
        from visionkit.draw.overlay import draw_overlay

        out = draw_overlay(image, det)
        cv2.imwrite(args.save, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        print(f"saved {args.save}")

    if not args.no_large:
        big_wh = (4000, 3000)
        big = np.random.default_rng(1).integers(0, 256, (big_wh[1], big_wh[0], 3), dtype=np.uint8)
        print()
        compare(f"100 random masks, {big_wh[0]}x{big_wh[1]}, median of 5", big,
                random_detections(big_wh, 100), 5, naive=False)


if __name__ == "__main__":
    main()
