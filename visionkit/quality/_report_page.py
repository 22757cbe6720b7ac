"""The static page of :mod:`visionkit.quality.report`: inline CSS and JavaScript, no CDN, no server.

The gallery is drawn by the script a chunk of cards at a time as the reader scrolls, from card pages
(``pages/NNNNN.js``, see :mod:`visionkit.quality._report_gallery`) loaded one by one as they are needed,
with ``loading="lazy"`` thumbnails. The page embeds only the class names and the filter counts. Everything
else is plain HTML rendered in Python.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>visionkit report: __TITLE__</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 16px 48px;
       color: #1d232a; }
h1 { font-size: 22px; margin: 20px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #66707a; } .note { background: #fff6d9; border-left: 3px solid #e0b000; padding: 6px 10px; }
table { border-collapse: collapse; margin: 4px 0; } th, td { padding: 3px 10px; text-align: left;
  border-bottom: 1px solid #e3e6e9; vertical-align: top; } th { background: #f3f5f7; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.stats { display: flex; gap: 24px; flex-wrap: wrap; } .stats div b { font-size: 20px; display: block; }
svg.hist rect { fill: #4a7fb5; } svg.hist { background: #f7f9fb; }
#controls { position: sticky; top: 0; background: #fff; padding: 8px 0; z-index: 2;
            border-bottom: 1px solid #e3e6e9; display: flex; gap: 16px; align-items: center;
            flex-wrap: wrap; }
#gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(__CARD__px, 1fr)); gap: 12px;
           margin-top: 12px; }
.card { border: 1px solid #e3e6e9; border-radius: 6px; overflow: hidden; background: #fafbfc; margin: 0; }
.card .thumb { display: flex; align-items: center; justify-content: center; height: __THUMB__px;
               background: #eef1f4; }
.card img { max-width: 100%; max-height: __THUMB__px; display: block; }
.card figcaption { padding: 6px 8px; font-size: 12px; word-break: break-all; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; margin: 1px 2px 1px 0;
         background: #e6edf5; } .badge.warn { background: #ffe2c2; } .badge.bad { background: #ffd0d0; }
details summary { cursor: pointer; }
</style>
</head>
<body>
<h1>visionkit report</h1>
<div class="muted">__TITLE__ &middot; built __DATE__</div>
__BODY__
<h2 id="gallery-title">Gallery</h2>
<div id="controls">
  <label>class <select id="class-filter"><option value="">all classes</option></select></label>
  <label><input type="checkbox" id="warn-filter"> only images with warnings</label>
  <span id="shown" class="muted">showing <b id="shown-count">0</b> of <b id="match-count">0</b> images
  (<span id="order"></span>)</span>
</div>
<div id="gallery"></div>
<div id="sentinel" style="height: 1px"></div>
<p id="gallery-end" class="muted"></p>
<script type="application/json" id="report-data">__DATA__</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const CHUNK = 120;
  const gallery = document.getElementById("gallery");
  const select = document.getElementById("class-filter");
  const warnBox = document.getElementById("warn-filter");
  const sentinel = document.getElementById("sentinel");
  const pages = [];          // the card pages loaded so far, in order
  let loading = false, matches = [], scanned = 0, shown = 0;
  data.classes.forEach(function (name, i) {
    const opt = document.createElement("option");
    opt.value = String(i); opt.textContent = name; select.appendChild(opt);
  });
  document.getElementById("order").textContent = data.order;
  function card(img) {
    const fig = document.createElement("figure");
    fig.className = "card";
    fig.dataset.file = img.f;
    fig.dataset.classes = img.c.map(function (i) { return data.classes[i]; }).join("|");
    fig.dataset.warnings = String(img.w.length);
    const box = document.createElement(img.o ? "a" : "div");
    box.className = "thumb";
    if (img.o) { box.href = img.o; box.target = "_blank"; }
    if (img.t) {
      const el = document.createElement("img");
      el.loading = "lazy"; el.decoding = "async"; el.src = img.t; el.alt = img.f;
      if (img.tw) { el.width = img.tw; el.height = img.th; }
      box.appendChild(el);
    } else {
      box.textContent = "no overlay";
    }
    fig.appendChild(box);
    const cap = document.createElement("figcaption");
    const name = document.createElement("div");
    name.textContent = img.f; cap.appendChild(name);
    const meta = document.createElement("div");
    meta.className = "muted";
    meta.textContent = img.n + (img.n === 1 ? " object" : " objects") + (img.e === null ? "" :
      " \\u00b7 F1 " + img.e.toFixed(2));
    cap.appendChild(meta);
    img.c.forEach(function (i) {
      const b = document.createElement("span");
      b.className = "badge"; b.textContent = data.classes[i]; cap.appendChild(b);
    });
    if (img.w.length) {
      const b = document.createElement("span");
      b.className = "badge warn"; b.textContent = img.w.length + " warning" + (img.w.length > 1 ? "s" : "");
      b.title = img.w.join("\\n"); cap.appendChild(b);
    }
    fig.appendChild(cap);
    return fig;
  }
  function wanted(img) {
    const cls = select.value === "" ? null : Number(select.value);
    return (cls === null || img.c.indexOf(cls) >= 0) && (!warnBox.checked || img.w.length > 0);
  }
  function expected() {  // how many images match the filter, over every page (counted when built)
    const cls = select.value;
    if (cls === "") return warnBox.checked ? data.warned : data.total;
    return (warnBox.checked ? data.byClassWarned : data.byClass)[cls] || 0;
  }
  function scan() {  // the matches among pages loaded since the last scan
    for (; scanned < pages.length; scanned++) {
      pages[scanned].forEach(function (img) { if (wanted(img)) matches.push(img); });
    }
  }
  function nearEnd() {
    return sentinel.getBoundingClientRect().top < window.innerHeight + 900;
  }
  function more() {  // draw the next chunk of matches; load the next page when they run out
    scan();
    if (shown < matches.length) {
      const end = Math.min(shown + CHUNK, matches.length);
      const frag = document.createDocumentFragment();
      for (let i = shown; i < end; i++) frag.appendChild(card(matches[i]));
      gallery.appendChild(frag);
      shown = end;
      document.getElementById("shown-count").textContent = String(shown);
    } else if (pages.length < data.pages && matches.length < expected()) {
      load();
    }
    document.getElementById("gallery-end").textContent =
      shown >= expected() ? "" : "scroll for more (" + pages.length + " of " + data.pages + " pages loaded)";
  }
  function load() {
    if (loading || pages.length >= data.pages) return;
    loading = true;
    const n = pages.length, s = document.createElement("script");
    s.src = "pages/" + String(n).padStart(5, "0") + ".js?b=" + encodeURIComponent(data.build);
    s.onerror = function () { loading = false; console.error("report page " + n + " could not be loaded"); };
    document.body.appendChild(s);
  }
  window.vkReportPage = function (n, cards) {
    if (n !== pages.length) return;
    pages.push(cards);
    loading = false;
    more();
    while (nearEnd() && shown < matches.length) more();
    if (nearEnd() && shown >= matches.length) more();
  };
  function apply() {
    matches = []; scanned = 0; shown = 0;
    gallery.textContent = "";
    document.getElementById("shown-count").textContent = "0";
    document.getElementById("match-count").textContent = String(expected());
    more();
  }
  select.addEventListener("change", apply);
  warnBox.addEventListener("change", apply);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) more();
    }, {rootMargin: "800px"}).observe(sentinel);
  }
  window.addEventListener("scroll", function () { if (nearEnd()) more(); }, {passive: true});
  apply();
})();
</script>
</body>
</html>
"""
