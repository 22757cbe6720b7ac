"""``visionkit report DIR``: a static, self-contained review page for a run folder.

Writes ``DIR/report/index.html`` and ``DIR/report/thumbs/<key>.jpg``. The page needs no server and no
network (no CDN; it works from ``file://``), and shows:

* per-class object counts and mask-area histograms (log2 bins);
* the images that failed and why (``failures.json``), and every image's warnings (``warnings.json``);
* a gallery of overlays with filters by class and by "has warnings", drawn a chunk at a time as the reader
  scrolls, with lazy-loaded thumbnails written at a bounded size (``thumb_size``, default 256 px on the
  longest side), so a folder of 10,000 images stays usable;
* with ``DIR/eval.json`` (``visionkit eval``): the COCOeval summary, the per-class AP table, the label
  confusions, and the gallery ordered worst image (lowest F1) first.

Overlays are found by globbing ``DIR/overlays/<key>.*`` (any format), keys from ``DIR/keys.json`` (else the
file stem). Thumbnails are rebuilt only when missing or older than their overlay.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import json
import math
import os
import re
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, InputError
from ..formats.coco_stream import CocoFile
from ..media.atomic import atomic_open, write_bytes_atomic
from ..media.filekind import read_regular_text
from ..run.keys import load_key_map
from ..run.warnings import WARNINGS_FILE
from ._report_gallery import Gallery, script_json
from ._report_page import PAGE

__all__ = ["DEFAULT_THUMB_SIZE", "ReportSummary", "build_report", "make_thumbnail"]

DEFAULT_THUMB_SIZE = 256
_MAX_WARNING_ROWS = 2000


@dataclass
class ReportSummary:
    """What :func:`build_report` wrote."""

    path: Path
    images: int = 0
    annotations: int = 0
    thumbnails: int = 0
    thumbnails_reused: int = 0
    failed: int = 0
    with_warnings: int = 0
    problems: list[str] = field(default_factory=list)  # overlays that could not be read, bad side files


def make_thumbnail(src: Path, dst: Path, size: int) -> tuple[int, int]:
    """Write a JPEG of ``src`` whose longest side is at most ``size``; returns its ``(width, height)``."""
    with Image.open(src) as im:
        scale = min(1.0, size / max(im.size))
        # JPEG: decode at the smallest 1/2, 1/4 or 1/8 scale that still covers the thumbnail's size;
        # far cheaper than a full-size decode (the request is the thumbnail's own size, not a square).
        im.draft("RGB", (max(1, math.ceil(im.size[0] * scale)), max(1, math.ceil(im.size[1] * scale))))
        im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80, optimize=False)
    write_bytes_atomic(dst, buf.getvalue())
    return im.size


def _read_json(path: Path, default: Any, problems: list[str], kind: type) -> Any:
    if not path.exists():
        return default
    try:
        value = json.loads(read_regular_text(path, expected="a JSON file written by visionkit label"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, InputError) as exc:
        problems.append(f"{path.name} could not be read ({exc}); left out")
        return default
    if not isinstance(value, kind):
        problems.append(f"{path.name}: expected a JSON {'object' if kind is dict else 'list'}; left out")
        return default
    return value


def _overlays(folder: Path) -> dict[str, str]:
    """``{key: file name}`` for every file in ``overlays/`` (any extension; the newest one wins). Names, not
    paths: a str costs a fifth of a Path, per image."""
    found: list[tuple[float, str]] = []
    if folder.is_dir():
        with os.scandir(folder) as entries:
            found = [(e.stat().st_mtime, e.name) for e in entries
                     if e.is_file() and not e.name.startswith(".")]
    found.sort()
    return {os.path.splitext(name)[0]: name for _, name in found}


def _hist_svg(areas: np.ndarray, lo: int, hi: int) -> str:
    """A small inline SVG bar chart of ``areas`` in log2 bins ``[2^k, 2^(k+1))`` for k in [lo, hi]."""
    areas = areas[areas > 0]
    bins = Counter(np.clip(np.floor(np.log2(areas)).astype(np.int64), lo, hi).tolist())
    n = hi - lo + 1
    width, height, bar = 8 * n, 36, 8
    top = max(bins.values(), default=1)
    rects = "".join(
        f'<rect x="{(k - lo) * bar}" y="{height - height * c / top:.1f}" width="{bar - 1}" '
        f'height="{height * c / top:.1f}"><title>{c} with area in [2^{k}, 2^{k + 1}) px</title></rect>'
        for k, c in sorted(bins.items()))
    return (f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="mask area histogram">{rects}</svg>')


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "&ndash;" if value is None or value < 0 else f"{value:.3f}"


def _class_section(cats: dict[int, str], counts: Counter, images_with: Counter, areas: dict[int, array]
                   ) -> str:
    """Per class: objects, images, masks, the median mask area and a histogram of mask areas."""
    values = {c: np.frombuffer(a, dtype=np.float64) for c, a in areas.items()}
    positive = [v[v > 0] for v in values.values()]
    every = [v for v in positive if v.size]
    lo = int(math.log2(min(float(v.min()) for v in every))) if every else 0
    hi = max(int(math.log2(max(float(v.max()) for v in every))) if every else 0, lo)
    rows = []
    for cat_id, name in sorted(cats.items(), key=lambda kv: (-counts[kv[0]], kv[1])):
        vals = values.get(cat_id, np.zeros(0))
        median = float(np.sort(vals)[len(vals) // 2]) if vals.size else None
        rows.append(f'<tr data-class="{_esc(name)}"><td>{_esc(name)}</td><td class="num count">'
                    f'{counts[cat_id]}</td><td class="num">{images_with[cat_id]}</td>'
                    f'<td class="num">{len(vals)}</td><td class="num">'
                    f'{"&ndash;" if median is None else f"{median:.0f}"}</td>'
                    f'<td>{_hist_svg(vals, lo, hi) if vals.size else ""}</td></tr>')
    axis = f"log2 bins from 2^{lo} to 2^{hi + 1} px" if every else "no masks"
    return ('<h2>Classes</h2><table id="class-table"><thead><tr><th>class</th><th class="num">objects</th>'
            '<th class="num">images</th><th class="num">masks</th><th class="num">median mask area</th>'
            f'<th>mask area ({axis})</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _failure_section(failures: list[dict]) -> str:
    if not failures:
        return '<h2>Failed images</h2><p id="failures-none">None.</p>'
    rows = "".join(f'<tr class="failure"><td>{_esc(f.get("file", ""))}</td><td>{_esc(f.get("stage", ""))}'
                   f'</td><td>{_esc(f.get("error", ""))}</td><td>{_esc(f.get("reason", ""))}</td></tr>'
                   for f in failures)
    return (f'<h2>Failed images (<span id="failure-count">{len(failures)}</span>)</h2>'
            '<table id="failure-table"><thead><tr><th>file</th><th>stage</th><th>error</th><th>reason</th>'
            f'</tr></thead><tbody>{rows}</tbody></table>')


def _warning_section(warned: list[dict]) -> str:
    total = sum(len(w["warnings"]) for w in warned)
    if not warned:
        return '<h2>Warnings</h2><p id="warnings-none">None.</p>'
    rows, shown = [], 0
    for entry in warned:
        for w in entry["warnings"]:
            if shown >= _MAX_WARNING_ROWS:
                break
            where = "answer" if w.get("index") is None else f"item {w['index']}"
            if w.get("field"):
                where += f" '{w['field']}'"
            rows.append(f'<tr class="warning"><td>{_esc(entry["file"])}</td><td>{_esc(where)}</td>'
                        f'<td>{_esc(w.get("reason", ""))}</td></tr>')
            shown += 1
    more = (f'<p class="muted">{total - shown} more in warnings.json</p>' if shown < total else "")
    return (f'<h2>Warnings (<span id="warning-count">{total}</span> in {len(warned)} images)</h2>'
            f'<details open><summary>per image</summary><table id="warning-table"><thead><tr><th>file</th>'
            f'<th>where</th><th>warning</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{more}'
            '</details>')


def _eval_section(ev: dict) -> str:
    summary = ev.get("summary", {})
    stats = "".join(f'<div><b>{_fmt(summary.get(k))}</b>{k}</div>' for k in ("AP", "AP50", "AP75", "AR100"))
    per_class = sorted(ev.get("per_class", []), key=lambda c: (c.get("AP") is None, c.get("AP") or 0))
    rows = "".join(f'<tr data-class="{_esc(c["name"])}"><td>{_esc(c["name"])}</td><td class="num">'
                   f'{c.get("truth", "")}</td><td class="num">{c.get("predicted", "")}</td>'
                   f'<td class="num ap">{_fmt(c.get("AP"))}</td><td class="num">{_fmt(c.get("AP50"))}'
                   '</td></tr>' for c in per_class)
    conf = "".join(f'<tr><td>{_esc(c["truth"])}</td><td>{_esc(c["predicted"])}</td><td class="num">'
                   f'{c["count"]}</td></tr>' for c in ev.get("confusions", []))
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in ev.get("notes", []))
    return (f'<h2>Evaluation ({_esc(ev.get("iou_type", ""))}, {_esc(ev.get("backend", ""))})</h2>'
            f'<div class="stats" id="eval-stats">{stats}</div>{notes}'
            '<table id="ap-table"><thead><tr><th>class</th><th class="num">truth</th>'
            '<th class="num">predicted</th><th class="num">AP</th><th class="num">AP50</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>'
            + (f'<h2>Label confusions</h2><table id="confusion-table"><thead><tr><th>truth</th><th>predicted'
               f'</th><th class="num">count</th></tr></thead><tbody>{conf}</tbody></table>' if conf else "")
            + (f'<details><summary>COCOeval summary</summary><pre>{_esc(ev.get("summary_text", ""))}</pre>'
               '</details>' if ev.get("summary_text") else ""))


def _cards(coco: CocoFile, cats: dict[int, str], keys: dict, warnings_by_file: dict, f1: dict,
           overlays: dict[str, str], folder: Path, out: Path) -> Iterator[tuple[dict, Path | None, Any]]:
    """``(card, overlay or None, mask areas by class)`` per image, streamed from the run."""
    class_index = {cat_id: pos for pos, cat_id in enumerate(sorted(cats))}
    for record in coco.records():
        name = record.image.file_name
        key = keys.get(name) or warnings_by_file.get(name, {}).get("key") or PurePosixPath(name).stem
        overlay = folder / overlays[key] if key in overlays else None
        classes = {int(a["category_id"]) for a in record.annotations}
        areas = [(int(a["category_id"]), float(a.get("area", 0))) for a in record.annotations
                 if a.get("segmentation")]  # masks only: a box's area is not a mask area
        card = {"f": name, "k": key, "n": len(record.annotations),
                "c": sorted(class_index[c] for c in classes if c in class_index),
                "w": [w.get("reason", "") for w in warnings_by_file.get(name, {}).get("warnings", [])],
                "e": f1.get(name, f1.get(PurePosixPath(name).name)), "t": None, "o": None}
        if overlay is not None:
            card["o"] = os.path.relpath(overlay, out).replace(os.sep, "/")
        yield card, overlay, (classes, areas)


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map`` keeping at most ``window`` items in flight (``Executor.map`` takes them all at once)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def build_report(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 thumb_size: int = DEFAULT_THUMB_SIZE, workers: int = 4,
                 on_progress: Callable[[int, int], None] | None = None) -> ReportSummary:
    """Write the review page of ``run_dir`` (see the module docstring); returns a :class:`ReportSummary`.

    The run's ``annotations.json`` is streamed through :class:`~visionkit.formats.coco_stream.CocoFile`
    (checked first); per image only its card's JSON text stays in memory until the pages are written.

    Args:
        run_dir: a run folder with ``annotations.json``.
        out: the report folder (default ``run_dir/report``).
        thumb_size: longest side of the thumbnails in pixels (16-2048).
        workers: threads making thumbnails.
        on_progress: called with ``(thumbnails done, total)`` as they are made.

    Raises:
        InputError: no run folder, or no readable or a malformed ``annotations.json`` (naming the file, the
            index and the field).
        ConfigError: ``thumb_size`` or ``workers`` out of range.
    """
    if not 16 <= thumb_size <= 2048:
        raise ConfigError(f"thumb_size must be 16-2048 pixels, got {thumb_size}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder {run} does not exist")
    coco = CocoFile(run, what="run")
    out = Path(out) if out is not None else run / "report"
    thumbs = out / "thumbs"
    summary = ReportSummary(path=out / "index.html")
    problems = summary.problems
    failures = [f for f in _read_json(run / "failures.json", [], problems, list) if isinstance(f, dict)]
    warned = _read_json(run / WARNINGS_FILE, {}, problems, dict).get("images", [])
    warned = [w for w in (warned if isinstance(warned, list) else [])
              if isinstance(w, dict) and isinstance(w.get("file"), str)
              and isinstance(w.get("warnings"), list) and all(isinstance(x, dict) for x in w["warnings"])]
    ev = _read_json(run / "eval.json", None, problems, dict)
    if ev is not None:
        try:
            eval_html = _eval_section(ev)
            f1 = {r["file_name"]: float(r["f1"]) if r.get("f1") is not None else None
                  for r in ev.get("images", [])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"eval.json is not what visionkit eval writes ({exc!r}); left out")
            ev = None
    if ev is None:
        eval_html, f1 = "", {}
    keys = load_key_map(run) or {}
    overlays = _overlays(run / "overlays")
    cats = coco.names
    warnings_by_file = {w["file"]: w for w in warned}
    # eval.json names the truth's files; a run's file joined by its base name is found the same way
    by_base = Counter(PurePosixPath(name).name for name in f1)
    f1.update({PurePosixPath(name).name: v for name, v in list(f1.items())
               if by_base[PurePosixPath(name).name] == 1 and PurePosixPath(name).name not in f1})
    total = sum((keys.get(im.file_name) or warnings_by_file.get(im.file_name, {}).get("key")
                 or PurePosixPath(im.file_name).stem) in overlays for im in coco.images)
    thumbs.mkdir(parents=True, exist_ok=True)

    def _fit(src: Path) -> tuple[int, int]:
        with Image.open(src) as im:
            w, h = im.size
        scale = min(1.0, thumb_size / max(w, h))
        return max(1, round(w * scale)), max(1, round(h * scale))

    def thumb(job: tuple[dict, Path | None, Any]) -> tuple[dict, Any, tuple[int, int] | None, bool, str]:
        card, src, extra = job
        if src is None:
            return card, extra, None, False, ""
        dst = thumbs / f"{card['k']}.jpg"
        try:
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                with Image.open(dst) as im:
                    if max(im.size) <= thumb_size and (max(im.size) == thumb_size or im.size == _fit(src)):
                        return card, extra, im.size, True, ""
            return card, extra, make_thumbnail(src, dst, thumb_size), False, ""
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return card, extra, None, False, f"overlay {src.name} could not be read ({exc}); no thumbnail"

    gallery = Gallery()
    images_with: Counter = Counter()
    areas: dict[int, array] = {}
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        cards = _cards(coco, cats, keys, warnings_by_file, f1, overlays, run / "overlays", out)
        results = _bounded_map(pool, thumb, cards, 8 * workers)
        for card, (classes, card_areas), size, reused, problem in results:
            images_with.update(classes)
            for cat_id, area in card_areas:
                areas.setdefault(cat_id, array("d")).append(area)
            if card["o"] is not None:
                done += 1
                if size is not None:
                    card["t"] = f"thumbs/{card['k']}.jpg"
                    card["tw"], card["th"] = size
                    summary.thumbnails += 1
                    summary.thumbnails_reused += reused
                else:
                    problems.append(problem)
                if on_progress is not None:
                    on_progress(done, total)
            gallery.add(card)

    worst_first = bool(ev and ev.get("images"))
    order = "worst F1 first, from eval.json" if worst_first else "in dataset order"
    classes = [cats[c] for c in sorted(cats)]
    summary.images, summary.annotations = len(gallery), coco.annotations
    summary.failed, summary.with_warnings = len(failures), len(warned)
    date = _dt.datetime.now(_dt.timezone.utc)
    meta = gallery.write(out, worst_first=worst_first, build=date.strftime("%Y%m%dT%H%M%S%f"))
    body = (
        '<div class="stats" id="totals">'
        f'<div><b id="image-count">{len(gallery)}</b>images</div>'
        f'<div><b id="annotation-count">{coco.annotations}</b>objects</div>'
        f'<div><b id="class-count">{len(cats)}</b>classes</div>'
        f'<div><b id="failed-count">{len(failures)}</b>failed images</div>'
        f'<div><b id="warned-count">{len(warned)}</b>images with warnings</div></div>'
        + "".join(f'<p class="note">{_esc(p)}</p>' for p in problems)
        + eval_html
        + _class_section(cats, coco.counts, images_with, areas)
        + _failure_section(failures) + _warning_section(warned))
    payload = script_json({"classes": classes, "order": order, **meta})
    values = {"BODY": body, "DATA": payload, "CARD": str(max(thumb_size, 160)), "THUMB": str(thumb_size),
              "DATE": date.strftime("%Y-%m-%d %H:%M UTC"), "TITLE": _esc(run.resolve().name)}
    # One pass over the template: text put in (file names, labels) is never scanned for placeholders.
    page = re.sub(r"__(BODY|DATA|CARD|THUMB|DATE|TITLE)__", lambda m: values[m.group(1)], PAGE)
    with atomic_open(summary.path) as fh:
        fh.write(page)
    return summary
