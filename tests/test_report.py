"""visionkit report: the static review page, checked as files and in a real headless Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image

import visionkit as vk
from visionkit import ConfigError, InputError
from visionkit.cli import main
from visionkit.quality.evaluate import evaluate
from visionkit.quality.report import build_report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The fixtures labelled from their replays, with one answer missing (a failed image) and eval.json."""
    root = tmp_path_factory.mktemp("report")
    replay = root / "replay"
    shutil.copytree(FIXTURES / "replay", replay)
    (replay / "wide_640x480.txt").unlink()
    out = root / "run"
    vk.label([FIXTURES / "images"], out, task="segment", replay=replay)
    vk.write_json_atomic(out / "eval.json", evaluate(out, FIXTURES / "truth.json"))
    build_report(out, thumb_size=128)
    return out


def page_data(index: Path) -> dict:
    """The data the page embeds, plus ``images``: every card of every page file, in order."""
    html = index.read_text()
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    data = json.loads(raw)
    data["images"] = []
    for n in range(data["pages"]):
        text = (index.parent / "pages" / f"{n:05d}.js").read_text()
        prefix = f"vkReportPage({n},"
        assert text.startswith(prefix) and text.endswith(");\n")
        data["images"] += json.loads(text[len(prefix):-3])
    return data


def test_report_files(run):
    html = (run / "report" / "index.html").read_text()
    ds = json.loads((run / "annotations.json").read_text())
    data = page_data(run / "report" / "index.html")
    assert [e["f"] for e in data["images"]] != [i["file_name"] for i in ds["images"]]  # reordered
    f1 = [e["e"] for e in data["images"]]
    assert f1 == sorted(f1) and data["order"].startswith("worst F1 first")
    assert len(data["images"]) == len(ds["images"]) == 7
    for entry in data["images"]:  # thumbnails at a bounded size, beside the page
        with Image.open(run / "report" / entry["t"]) as im:
            assert max(im.size) == 128 and im.size == (entry["tw"], entry["th"])
        assert (run / "report" / entry["o"]).resolve().parent == (run / "overlays").resolve()
    assert 'id="ap-table"' in html and "no score" in html  # eval.json: AP table and the score note
    assert "wide_640x480.jpg" in html and 'class="failure"' in html  # the failed image, and why
    assert "MAX_TOKENS" in html and "seg_N" in html  # per-image warnings from warnings.json
    assert "http://" not in html and "https://" not in html  # nothing from the network


def test_thumbnails_reused_and_rebuilt(run, tmp_path):
    again = build_report(run, out=tmp_path / "r", thumb_size=64)
    assert again.thumbnails == 7 and again.thumbnails_reused == 0
    assert build_report(run, out=tmp_path / "r", thumb_size=64).thumbnails_reused == 7
    bigger = build_report(run, out=tmp_path / "r", thumb_size=96)
    assert bigger.thumbnails_reused == 0
    with Image.open(next((tmp_path / "r" / "thumbs").iterdir())) as im:
        assert max(im.size) == 96


def test_overlays_found_by_glob_any_format(tmp_path):
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    Image.new("RGB", (300, 200), (20, 120, 200)).save(images / "a.png")
    (replay / "a.txt").write_text('[{"box_2d": [100, 100, 600, 500], "label": "cup"}]')
    vk.label([images], tmp_path / "run", task="detect", replay=replay)
    overlay = next((tmp_path / "run" / "overlays").iterdir())
    overlay.rename(overlay.with_suffix(".webp"))  # whatever format the run wrote
    summary = build_report(tmp_path / "run")
    assert summary.thumbnails == 1
    entry = page_data(summary.path)["images"][0]
    assert entry["o"] == "../overlays/a.webp" and entry["t"] == "thumbs/a.jpg"


def test_escaping_and_no_overlays(tmp_path):
    wh = (50, 40)
    evil = '</script><img src=x onerror=alert(1)> "__DATA__'
    dets = vk.Detections(np.array([[1, 1, 20, 20]], float), [evil], wh)
    run = tmp_path / "run"
    run.mkdir()
    vk.write_json_atomic(run / "annotations.json", vk.to_coco([(evil + ".png", wh, dets)]))
    index = build_report(run).path
    html = index.read_text()
    assert "</script><img" not in html  # the data cannot close its script element
    markup = re.sub(r'<script type="application/json".*?</script>', "", html, flags=re.S)
    assert "<img src=x" not in markup and "&lt;img src=x" in markup  # HTML parts are escaped
    data = page_data(index)
    assert data["classes"] == [evil] and data["images"][0]["f"] == evil + ".png"
    assert data["images"][0]["t"] is None  # no overlay: a card without a picture


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build_report(tmp_path / "nope")
    with pytest.raises(InputError, match="annotations.json"):
        build_report(tmp_path)
    with pytest.raises(ConfigError, match="thumb_size"):
        build_report(tmp_path, thumb_size=4)
    err = io.StringIO()
    assert main(["report", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 2
    assert "annotations.json" in err.getvalue()


def test_unreadable_overlay_is_reported_not_fatal(tmp_path):
    run = tmp_path / "run"
    (run / "overlays").mkdir(parents=True)
    wh = (50, 40)
    dets = vk.Detections(np.array([[1, 1, 20, 20]], float), ["cup"], wh)
    vk.write_json_atomic(run / "annotations.json", vk.to_coco([("a.png", wh, dets), ("b.png", wh, dets)]))
    (run / "overlays" / "a.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", wh).save(run / "overlays" / "b.jpg")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["report", str(run)], stdout=stdout, stderr=stderr) == 0
    assert "a.jpg could not be read" in stderr.getvalue() and "1 thumbnails" in stdout.getvalue()


# -- in a real browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does it)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    old_offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch a browser or a driver
    profile = tempfile.mkdtemp(prefix="vk-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # the OS browser: selenium-manager never downloads one
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        if old_offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old_offline


def wait_for(check, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_report_in_chromium(run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get_log("browser")  # start with an empty console log
    ds = json.loads((run / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in ds["categories"]}
    per_class = Counter(names[a["category_id"]] for a in ds["annotations"])
    browser.get((run / "report" / "index.html").resolve().as_uri())
    cards = lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery .card")  # noqa: E731
    assert wait_for(lambda: len(cards()) == len(ds["images"]))

    ids = ("image-count", "annotation-count", "failed-count")
    text = {i: browser.find_element(By.ID, i).text for i in ids}
    assert text == {"image-count": str(len(ds["images"])), "annotation-count": str(len(ds["annotations"])),
                    "failed-count": "1"}
    rows = browser.find_elements(By.CSS_SELECTOR, "#class-table tbody tr")
    assert {r.get_attribute("data-class"): int(r.find_element(By.CSS_SELECTOR, ".count").text)
            for r in rows} == per_class
    assert len(browser.find_elements(By.CSS_SELECTOR, "#failure-table tr.failure")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ap-table tbody tr")) == len(ds["categories"])

    # every thumbnail loads from disk
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert wait_for(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth > 0)"))

    # class filter: only (and all) the images with a spoon
    spoon_images = {i["file_name"] for i in ds["images"]
                    if any(a["image_id"] == i["id"] and names[a["category_id"]] == "spoon"
                           for a in ds["annotations"])}
    Select(browser.find_element(By.ID, "class-filter")).select_by_visible_text("spoon")
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
    assert {c.get_attribute("data-file") for c in cards} == spoon_images and 0 < len(spoon_images) < 7
    assert all("spoon" in c.get_attribute("data-classes").split("|") for c in cards)
    assert browser.find_element(By.ID, "match-count").text == str(len(spoon_images))

    # has-warnings filter on top of it, then off again
    warned = {w["file"] for w in json.loads((run / "warnings.json").read_text())["images"]}
    browser.find_element(By.ID, "warn-filter").click()
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
    assert {c.get_attribute("data-file") for c in cards} == spoon_images & warned
    Select(browser.find_element(By.ID, "class-filter")).select_by_value("")
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
    assert {c.get_attribute("data-file") for c in cards} == warned and warned

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_large_gallery_renders_in_chunks(tmp_path, browser):
    """2,000 images: the page draws a chunk of cards and more as the reader scrolls."""
    from selenium.webdriver.common.by import By

    browser.get_log("browser")
    wh = (64, 48)
    dets = vk.Detections(np.array([[1, 1, 20, 20]], float), ["cup"], wh)
    run = tmp_path / "big"
    run.mkdir()
    items = [(f"{k:05d}.png", wh, dets) for k in range(2000)]
    vk.write_json_atomic(run / "annotations.json", vk.to_coco(items))
    build_report(run)
    browser.get((run / "report" / "index.html").resolve().as_uri())
    count = lambda: len(browser.find_elements(By.CSS_SELECTOR, "#gallery .card"))  # noqa: E731
    assert wait_for(lambda: count() > 0)
    first = count()
    assert first < 2000 and browser.find_element(By.ID, "match-count").text == "2000"
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert wait_for(lambda: count() > first)
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []


def test_a_broken_page_is_caught(run, browser, tmp_path):
    """The checks above can fail: a missing thumbnail shows up as a console error."""
    browser.get_log("browser")
    out = tmp_path / "r"
    build_report(run, out=out, thumb_size=64)
    next((out / "thumbs").iterdir()).unlink()
    browser.get((out / "index.html").resolve().as_uri())
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert wait_for(lambda: any(e["level"] == "SEVERE" for e in browser.get_log("browser")))


def test_eval_scores_join_by_base_name(tmp_path):
    """eval.json names the truth's files; a run's sub/a.png shows the F1 of the truth's a.png."""
    wh = (50, 40)
    dets = vk.Detections(np.array([[1, 1, 20, 20]], float), ["cup"], wh)
    run = tmp_path / "run"
    run.mkdir()
    vk.write_json_atomic(run / "annotations.json", vk.to_coco([("sub/a.png", wh, dets), ("b.png", wh, dets)]))
    vk.write_json_atomic(run / "eval.json", {"summary": {"AP": 0.5}, "per_class": [], "notes": [],
                                             "images": [{"file_name": "b.png", "f1": 1.0},
                                                        {"file_name": "a.png", "f1": 0.25}]})
    data = page_data(build_report(run).path)
    assert [(e["f"], e["e"]) for e in data["images"]] == [("sub/a.png", 0.25), ("b.png", 1.0)]


def test_gallery_pages_load_as_the_reader_scrolls(tmp_path, browser):
    """1,200 images are 3 card pages beside a page that embeds none of the cards; scrolling loads them all,
    and a class only the last page has is found by the filter (pages load until its 2 images are shown)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get_log("browser")
    wh = (64, 48)
    cup = vk.Detections(np.array([[1, 1, 20, 20]], float), ["cup"], wh)
    zebra = vk.Detections(np.array([[1, 1, 20, 20]], float), ["zebra"], wh)
    run = tmp_path / "big"
    run.mkdir()
    items = [(f"{k:05d}.png", wh, zebra if k in (1100, 1150) else cup) for k in range(1200)]
    vk.write_json_atomic(run / "annotations.json", vk.to_coco(items))
    index = build_report(run).path
    assert sorted(p.name for p in (index.parent / "pages").iterdir()) == ["00000.js", "00001.js", "00002.js"]
    html = index.read_text()
    assert "00007.png" not in html and len(html) < 20_000  # no card in the page itself
    assert [e["f"] for e in page_data(index)["images"]] == [f for f, _, _ in items]

    cards = lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery .card")  # noqa: E731
    browser.get(index.resolve().as_uri())
    assert wait_for(lambda: len(cards()) > 0)
    assert len(cards()) < 1200 and browser.find_element(By.ID, "match-count").text == "1200"
    for _ in range(100):
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        if wait_for(lambda: len(cards()) == 1200, timeout=0.3):
            break
    assert len(cards()) == 1200
    assert [c.get_attribute("data-file") for c in cards()[-3:]] == ["01197.png", "01198.png", "01199.png"]

    browser.get(index.resolve().as_uri())  # fresh: only the first page is loaded
    assert wait_for(lambda: len(cards()) > 0)
    Select(browser.find_element(By.ID, "class-filter")).select_by_visible_text("zebra")
    assert browser.find_element(By.ID, "match-count").text == "2"
    assert wait_for(lambda: [c.get_attribute("data-file") for c in cards()] == ["01100.png", "01150.png"])
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []

    # a smaller rebuild leaves no stale page behind
    vk.write_json_atomic(run / "annotations.json", vk.to_coco(items[:600]))
    build_report(run)
    assert sorted(p.name for p in (index.parent / "pages").iterdir()) == ["00000.js", "00001.js"]


# -- issue 19 #3: hostile text in the embedded data ----------------------------------------------------------
HOSTILE = ["<!--<script>", "</script><img src=x onerror=window.pwned=1>", "a\u2028b\u2029c",
           "&lt;b&gt; & <b>bold</b>", "<![CDATA[x]]>", "]]><!--"]


@pytest.fixture
def hostile_run(tmp_path) -> Path:
    """Two images whose labels, file names, warnings and failure reasons are all hostile text."""
    wh = (50, 40)
    run = tmp_path / "run"
    run.mkdir()
    items = []
    for k in range(2):
        dets = vk.Detections(np.array([[1, 1, 20, 20], [5, 5, 30, 30], [2, 2, 9, 9]], float),
                             HOSTILE[3 * k:3 * k + 3], wh)
        items.append((f"{HOSTILE[k]}{k}.png", wh, dets))
    vk.write_json_atomic(run / "annotations.json", vk.to_coco(items))
    vk.write_json_atomic(run / "warnings.json", {"images": [
        {"file": items[0][0], "key": "k0", "warnings": [{"index": 0, "field": "<!--", "reason": h}
                                                        for h in HOSTILE]}]})
    vk.write_json_atomic(run / "failures.json", [{"file": h + ".png", "stage": "<!--<script>", "error": h,
                                                  "reason": h} for h in HOSTILE])
    return run


@pytest.mark.parametrize("char", ["<", ">", "&", "\u2028", "\u2029"])
def test_embedded_data_holds_none_of_the_dangerous_characters(hostile_run, char):
    index = build_report(hostile_run).path
    html = index.read_text()
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    assert char not in raw
    for page in (index.parent / "pages").iterdir():  # the card pages are scripts too
        assert char not in page.read_text()
    data = page_data(index)  # ... and reads back as the same text
    assert sorted(data["classes"]) == sorted(HOSTILE) and data["images"][0]["f"] == HOSTILE[0] + "0.png"


def test_hostile_text_in_chromium_is_shown_as_text(hostile_run, browser):
    from selenium.webdriver.common.by import By

    build_report(hostile_run)
    browser.get_log("browser")
    browser.get((hostile_run / "report" / "index.html").resolve().as_uri())
    cards = lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery .card")  # noqa: E731
    assert wait_for(lambda: len(cards()) == 2), len(cards())
    assert {c.get_attribute("data-file") for c in cards()} == {f"{HOSTILE[k]}{k}.png" for k in range(2)}
    assert browser.execute_script("return window.pwned") is None  # nothing ran
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    badges = {b.get_attribute("textContent") for b in browser.find_elements(By.CSS_SELECTOR, ".card .badge")}
    assert set(HOSTILE) <= badges
    failures = browser.find_elements(By.CSS_SELECTOR, "#failure-table tr.failure")
    assert [r.find_elements(By.TAG_NAME, "td")[3].get_attribute("textContent") for r in failures] == HOSTILE
    warnings = browser.find_elements(By.CSS_SELECTOR, "#warning-table tr.warning")
    assert [r.find_elements(By.TAG_NAME, "td")[2].get_attribute("textContent") for r in warnings] == HOSTILE
    options = [o.get_attribute("textContent")
               for o in browser.find_elements(By.CSS_SELECTOR, "#class-filter option")]
    assert set(HOSTILE) <= set(options)
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
