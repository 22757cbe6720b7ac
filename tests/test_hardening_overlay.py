"""Issue 11's drawing findings: #1 a newline in a label, #11 linear label placement, #12 long labels,
and labels the font cannot draw. Each failed before the fix."""

from __future__ import annotations

import io
import json
import tracemalloc
import warnings

import numpy as np
import pytest
from opcount import growth

from visionkit import Detections, parse_response, to_coco
from visionkit.draw import fonts
from visionkit.draw.overlay import MissingGlyphWarning, draw_overlay, render_tag


@pytest.fixture(autouse=True)
def _no_font_env(monkeypatch):
    monkeypatch.delenv("VISIONKIT_FONT", raising=False)
    monkeypatch.delenv("VISIONKIT_EMOJI_FONT", raising=False)


def one(label: str, wh=(160, 90)) -> Detections:
    return Detections(np.array([[20.0, 30.0, 120.0, 80.0]]), [label], wh)


# -- #1 line breaks and control characters -------------------------------------------------------------

@pytest.mark.parametrize("label", [
    "coffee\nmug", "coffee\r\nmug", "coffee\rmug", "tab\there", "nul\x00byte", "bell\x07", "line\u2028sep",
    "para\u2029sep", "nel\x85x", "\n", "\n\n\n", "esc\x1b[31mred",
])
def test_a_label_with_line_breaks_or_controls_is_drawn_on_one_line(label):
    out = draw_overlay(np.zeros((90, 160, 3), np.uint8), one(label), font_size=12)
    assert out.shape == (90, 160, 3)
    # the same tag as the label with spaces in place of the breaks
    spaced = "".join(" " if (ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029") else c
                     for c in label.replace("\r\n", " "))
    assert np.array_equal(render_tag(label, (9, 9, 9), 12), render_tag(spaced, (9, 9, 9), 12))


def test_the_label_itself_is_kept_as_is_in_coco():
    d = parse_response(json.dumps([{"box_2d": [10, 10, 500, 500], "label": "coffee\nmug"}]), (100, 100))
    draw_overlay(np.zeros((100, 100, 3), np.uint8), d)
    assert to_coco([("a.jpg", (100, 100), d)])["categories"][0]["name"] == "coffee\nmug"


# -- #11 label placement is linear ---------------------------------------------------------------------

def _random_boxes(n: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, 950, n), rng.uniform(0, 450, n)
    xyxy = np.stack([x0, y0, x0 + rng.uniform(5, 50, n), y0 + rng.uniform(5, 50, n)], axis=1)
    return Detections(xyxy, ["box"] * n, (1000, 500))


@pytest.mark.parametrize("layout", ["random", "stacked"])
def test_label_placement_work_grows_linearly_with_the_number_of_boxes(layout):
    image = np.zeros((500, 1000, 3), np.uint8)

    def make(n):
        det = (_random_boxes(n) if layout == "random"
               else Detections(np.tile([[100.0, 100.0, 140.0, 130.0]], (n, 1)), ["box"] * n, (1000, 500)))
        return lambda: draw_overlay(image, det, draw_masks=False, draw_boxes=False)

    make(1)()  # render the tag once, so the cache does not count
    ratio = growth(make, 150)
    assert ratio < 6, f"work grew {ratio:.1f}x for 4x the boxes (linear: ~4x, quadratic: ~16x)"


def test_tags_still_go_to_the_first_free_spot():
    # two boxes side by side at the top: both tags fit above their boxes without overlapping
    det = Detections(np.array([[10.0, 40.0, 60.0, 80.0], [100.0, 40.0, 150.0, 80.0],
                               [10.0, 40.0, 60.0, 80.0]]), ["a", "b", "c"], (200, 100))
    out = draw_overlay(np.zeros((100, 200, 3), np.uint8), det, draw_masks=False, draw_boxes=False,
                       font_size=12)
    tag_h = render_tag("a", (0, 0, 0), 12).shape[0]
    above = out[40 - tag_h:40]
    assert above[:, 10:20].any() and above[:, 100:110].any()
    # the third box's tag (same box as "a") moved: inside the box's top-left corner
    assert out[40:40 + tag_h, 10:20].any()


# -- #12 long labels: bounded memory, cut when drawn ---------------------------------------------------

@pytest.mark.parametrize("length", [10_000, 100_000])
def test_a_long_label_is_cut_when_drawn_and_memory_stays_small(length):
    image = np.zeros((90, 160, 3), np.uint8)
    tracemalloc.start()
    try:
        out = draw_overlay(image, one("x" * length), font_size=14)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.0f} MB traced"
    assert out.shape == image.shape
    assert render_tag("x" * length, (0, 0, 0), 14).shape[1] == render_tag("x" * 79 + "\u2026", (0, 0, 0),
                                                                          14).shape[1]


# -- missing glyphs ------------------------------------------------------------------------------------

@pytest.fixture
def builtin_font(monkeypatch):
    """Pillow's built-in font (Latin only), whatever fonts this machine has."""
    monkeypatch.setattr(fonts, "FONT_CANDIDATES", ())
    monkeypatch.setattr(fonts, "EMOJI_FONT_CANDIDATES", ())
    assert fonts.find_font() is None


@pytest.mark.parametrize("label, missing", [
    ("cup", None),
    ("cup 0.5 (x) [y]", None),
    ("カップ", "カップ"),
    ("猫 cat 猫", "猫"),
    ("cup \U0001f436", "\U0001f436"),
    ("a\u200db \u0301", None),   # joiners and combining marks draw nothing of their own
])
def test_a_label_the_font_cannot_draw_warns_naming_it(label, missing, builtin_font):
    image = np.zeros((90, 160, 3), np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw_overlay(image, one(label))
    glyph = [w for w in caught if issubclass(w.category, MissingGlyphWarning)]
    if missing is None:
        assert glyph == []
    else:
        assert len(glyph) == 1
        text = str(glyph[0].message)
        assert repr(label) in text and repr(missing) in text and "VISIONKIT_FONT" in text


def test_the_missing_glyph_warning_is_shown_once_per_run(builtin_font):
    image = np.zeros((90, 160, 3), np.uint8)
    det = Detections(np.array([[10.0, 10.0, 50.0, 50.0]] * 3), ["猫", "猫", "犬"], (160, 90))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            draw_overlay(image, det)
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["犬", "猫"]


def test_a_font_that_has_the_glyphs_does_not_warn():
    path = fonts.find_font()
    if path is None or not fonts.has_glyph(path, "é"):
        pytest.skip("no font with Latin-1 glyphs on this machine")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingGlyphWarning)
        draw_overlay(np.zeros((90, 160, 3), np.uint8), one("café"), font=path)


def test_the_cli_prints_the_warning_as_one_line(builtin_font, tmp_path):
    from visionkit.cli._warnings import plain_warnings

    err = io.StringIO()
    with plain_warnings(err):
        draw_overlay(np.zeros((90, 160, 3), np.uint8), one("猫"))
        draw_overlay(np.zeros((90, 160, 3), np.uint8), one("猫"))
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visionkit: warning: label '猫'")


# -- end to end: the CLI keeps every image ------------------------------------------------------------

@pytest.mark.parametrize("overlays", [True, False])
def test_the_cli_keeps_images_whose_labels_have_newlines_surrogates_or_missing_glyphs(overlays, tmp_path,
                                                                                    builtin_font):
    from PIL import Image

    from visionkit.cli import main

    images, replay = tmp_path / "images", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    answers = {"newline": '[{"box_2d": [100, 100, 600, 500], "label": "coffee\\nmug"}]',
               "surrogate": '[{"box_2d": [100, 100, 600, 500], "label": "cup \\ud83d"}]',
               "glyphs": '[{"box_2d": [100, 100, 600, 500], "label": "猫"}]'}
    for stem, text in answers.items():
        Image.new("RGB", (120, 80), (40, 90, 160)).save(images / f"{stem}.png")
        (replay / f"{stem}.txt").write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    argv = [str(images), "--out", str(tmp_path / "out"), "--task", "detect", "--replay", str(replay)]
    code = main(["label", *argv, *([] if overlays else ["--no-overlays"])], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text(encoding="utf-8"))
    assert sorted(c["name"] for c in coco["categories"]) == ["coffee\nmug", "cup \ufffd", "猫"]
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == []
    assert "surrogate" in err.getvalue()
    assert ("cannot draw '猫'" in err.getvalue()) == overlays
