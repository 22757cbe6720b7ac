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
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, InputError
from ..media.atomic import atomic_open, write_bytes_atomic
from ..run.keys import load_key_map
from ..run.warnings import WARNINGS_FILE
from ._report_page import PAGE
from .datasets import category_names, load_dataset

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


def _read_json(path: Path, default: Any, problems: list[str]) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} could not be read ({exc}); left out")
        return default


def _overlays(folder: Path) -> dict[str, Path]:
    """``{key: overlay path}`` for every file in ``overlays/`` (any extension; the newest one wins)."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime):
            if path.is_file() and not path.name.startswith("."):
                found[path.stem] = path
    return found


def _hist_svg(areas: list[float], lo: int, hi: int) -> str:
    """A small inline SVG bar chart of ``areas`` in log2 bins ``[2^k, 2^(k+1))`` for k in [lo, hi]."""
    bins = Counter(min(max(int(math.log2(a)), lo), hi) for a in areas if a > 0)
    n = hi - lo + 1
    width, height, bar = 8 * n, 36, 8
    top = max(bins.values(), default=1)
    rects = "".join(
        f'<rect x="{(k - lo) * bar}" y="{height - height * c / top:.1f}" width="{bar - 1}" '
        f'height="{height * c / top:.1f}"><title>{c} with area in [2^{k}, 2^{k + 1}) px</title></rect>'
        for k, c in sorted(bins.items()))
    return (f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="mask area histogram">{rects}</svg>')


#: What data embedded in a ``<script>`` element must not hold as itself: ``<`` (``</script>`` ends the
#: element, ``<!--<script>`` makes the parser swallow the rest of the page), ``>`` and ``&`` (for good
#: measure, as Django's json_script and Go's html/template do), and U+2028/U+2029 (line terminators to
#: JavaScript before ES2019). JSON's ``\uXXXX`` escapes read back as the same characters.
#: https://html.spec.whatwg.org/multipage/scripting.html#restrictions-for-contents-of-script-elements
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                 "\u2029": "\\u2029"})


def _script_json(value: Any) -> str:
    """``value`` as JSON safe to put inside ``<script type="application/json">``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "&ndash;" if value is None or value < 0 else f"{value:.3f}"


def _class_section(cats: dict[int, str], anns: list[dict], image_classes: dict[int, set]) -> str:
    counts = Counter(int(a["category_id"]) for a in anns)
    images_with = Counter(c for classes in image_classes.values() for c in classes)
    areas: dict[int, list[float]] = {}
    for a in anns:
        if a.get("segmentation"):  # masks only: a box's area is not a mask area
            areas.setdefault(int(a["category_id"]), []).append(float(a.get("area", 0)))
    every = [v for vs in areas.values() for v in vs if v > 0]
    lo = int(math.log2(min(every))) if every else 0
    hi = max(int(math.log2(max(every))) if every else 0, lo)
    rows = []
    for cat_id, name in sorted(cats.items(), key=lambda kv: (-counts[kv[0]], kv[1])):
        vals = areas.get(cat_id, [])
        median = sorted(vals)[len(vals) // 2] if vals else None
        rows.append(f'<tr data-class="{_esc(name)}"><td>{_esc(name)}</td><td class="num count">'
                    f'{counts[cat_id]}</td><td class="num">{images_with[cat_id]}</td>'
                    f'<td class="num">{len(vals)}</td><td class="num">'
                    f'{"&ndash;" if median is None else f"{median:.0f}"}</td>'
                    f'<td>{_hist_svg(vals, lo, hi) if vals else ""}</td></tr>')
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


def build_report(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 thumb_size: int = DEFAULT_THUMB_SIZE, workers: int = 4,
                 on_progress: Callable[[int, int], None] | None = None) -> ReportSummary:
    """Write the review page of ``run_dir`` (see the module docstring); returns a :class:`ReportSummary`.

    Args:
        run_dir: a run folder with ``annotations.json``.
        out: the report folder (default ``run_dir/report``).
        thumb_size: longest side of the thumbnails in pixels (16-2048).
        workers: threads making thumbnails.
        on_progress: called with ``(thumbnails done, total)`` as they are made.

    Raises:
        InputError: no run folder or no readable ``annotations.json``.
        ConfigError: ``thumb_size`` or ``workers`` out of range.
    """
    if not 16 <= thumb_size <= 2048:
        raise ConfigError(f"thumb_size must be 16-2048 pixels, got {thumb_size}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder {run} does not exist")
    data = load_dataset(run, what="run")
    out = Path(out) if out is not None else run / "report"
    thumbs = out / "thumbs"
    summary = ReportSummary(path=out / "index.html")
    problems = summary.problems
    failures = _read_json(run / "failures.json", [], problems)
    warned = _read_json(run / WARNINGS_FILE, {}, problems).get("images", [])
    ev = _read_json(run / "eval.json", None, problems)
    keys = load_key_map(run) or {}
    overlays = _overlays(run / "overlays")
    cats = category_names(data)
    class_index = {cat_id: pos for pos, cat_id in enumerate(sorted(cats))}
    image_classes: dict[int, set] = {}
    counts: Counter = Counter()
    for ann in data["annotations"]:
        image_classes.setdefault(int(ann["image_id"]), set()).add(int(ann["category_id"]))
        counts[int(ann["image_id"])] += 1
    warnings_by_file = {w["file"]: w for w in warned}
    f1 = {r["file_name"]: r.get("f1") for r in (ev or {}).get("images", [])}
    # eval.json names the truth's files; a run's file joined by its base name is found the same way
    by_base = Counter(PurePosixPath(name).name for name in f1)
    f1.update({PurePosixPath(name).name: v for name, v in list(f1.items())
               if by_base[PurePosixPath(name).name] == 1 and PurePosixPath(name).name not in f1})

    jobs, entries = [], []
    for image in data["images"]:
        name = str(image["file_name"])
        key = keys.get(name) or warnings_by_file.get(name, {}).get("key") or PurePosixPath(name).stem
        overlay = overlays.get(key)
        entry = {"f": name, "k": key, "n": counts[int(image["id"])],
                 "c": sorted(class_index[c] for c in image_classes.get(int(image["id"]), ())
                             if c in class_index),
                 "w": [w.get("reason", "") for w in warnings_by_file.get(name, {}).get("warnings", [])],
                 "e": f1.get(name, f1.get(PurePosixPath(name).name)), "t": None, "o": None}
        if overlay is not None:
            entry["o"] = os.path.relpath(overlay, out).replace(os.sep, "/")
            jobs.append((entry, overlay, thumbs / f"{key}.jpg"))
        entries.append(entry)

    thumbs.mkdir(parents=True, exist_ok=True)

    def thumb(job: tuple[dict, Path, Path]) -> tuple[dict, tuple[int, int] | None, bool, str]:
        entry, src, dst = job
        try:
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                with Image.open(dst) as im:
                    if max(im.size) <= thumb_size and (max(im.size) == thumb_size or im.size == _fit(src)):
                        return entry, im.size, True, ""
            return entry, make_thumbnail(src, dst, thumb_size), False, ""
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return entry, None, False, f"overlay {src.name} could not be read ({exc}); no thumbnail"

    def _fit(src: Path) -> tuple[int, int]:
        with Image.open(src) as im:
            w, h = im.size
        scale = min(1.0, thumb_size / max(w, h))
        return max(1, round(w * scale)), max(1, round(h * scale))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (entry, size, reused, problem) in enumerate(pool.map(thumb, jobs), start=1):
            if size is not None:
                entry["t"] = f"thumbs/{entry['k']}.jpg"
                entry["tw"], entry["th"] = size
                summary.thumbnails += 1
                summary.thumbnails_reused += reused
            else:
                problems.append(problem)
            if on_progress is not None:
                on_progress(done, len(jobs))

    if ev and ev.get("images"):
        order = "worst F1 first, from eval.json"
        entries.sort(key=lambda e: (e["e"] is None, e["e"] if e["e"] is not None else 0, e["f"]))
    else:
        order = "in dataset order"
    classes = [cats[c] for c in sorted(cats)]
    summary.images, summary.annotations = len(entries), len(data["annotations"])
    summary.failed, summary.with_warnings = len(failures), len(warned)
    body = (
        '<div class="stats" id="totals">'
        f'<div><b id="image-count">{len(entries)}</b>images</div>'
        f'<div><b id="annotation-count">{len(data["annotations"])}</b>objects</div>'
        f'<div><b id="class-count">{len(cats)}</b>classes</div>'
        f'<div><b id="failed-count">{len(failures)}</b>failed images</div>'
        f'<div><b id="warned-count">{len(warned)}</b>images with warnings</div></div>'
        + "".join(f'<p class="note">{_esc(p)}</p>' for p in problems)
        + (_eval_section(ev) if ev else "")
        + _class_section(cats, data["annotations"], image_classes)
        + _failure_section(failures) + _warning_section(warned))
    payload = _script_json({"classes": classes, "images": entries, "order": order})
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    values = {"BODY": body, "DATA": payload, "CARD": str(max(thumb_size, 160)), "THUMB": str(thumb_size),
              "DATE": date, "TITLE": _esc(run.resolve().name)}
    # One pass over the template: text put in (file names, labels) is never scanned for placeholders.
    page = re.sub(r"__(BODY|DATA|CARD|THUMB|DATE|TITLE)__", lambda m: values[m.group(1)], PAGE)
    with atomic_open(summary.path) as fh:
        fh.write(page)
    return summary
