"""draw_overlay and the font lookup: fast paths checked against slow, obvious full-image references."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from visionkit import Detections, InputError, MaskCrop
from visionkit.draw import fonts
from visionkit.draw.overlay import PALETTE, draw_overlay, label_color, render_tag

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _no_font_env(monkeypatch):
    """A developer's own font settings must not leak into the tests."""
    monkeypatch.delenv(fonts.FONT_ENV, raising=False)
    monkeypatch.delenv(fonts.EMOJI_FONT_ENV, raising=False)


# -- building blocks -----------------------------------------------------------------------------------

def ellipse(x0: int, y0: int, x1: int, y1: int) -> MaskCrop:
    """A filled ellipse touching the edges of the integer box [x0, x1) x [y0, y1), as a crop."""
    h, w = y1 - y0, x1 - x0
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (max(w // 2 - 1, 0), max(h // 2 - 1, 0)), 0, 0, 360, 1, -1)
    return MaskCrop(m.astype(bool), x0, y0)


def make(wh, items, scores=None, points=None) -> Detections:
    """items: (xyxy, label, MaskCrop | None)."""
    return Detections(xyxy=np.array([it[0] for it in items], float).reshape(-1, 4),
                      labels=[it[1] for it in items], image_wh=wh, scores=scores, points=points,
                      masks=tuple(it[2] for it in items) if items else None)


def noise(wh, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)


CASES = {
    "empty": ((64, 48), []),
    "one mask": ((64, 48), [([10, 8, 40, 30], "cup", ellipse(10, 8, 40, 30))]),
    "box touching every edge": ((64, 48), [([0, 0, 64, 48], "table", ellipse(0, 0, 64, 48))]),
    "non-square, tall": ((37, 90), [([3, 50, 37, 90], "ボトル", ellipse(3, 50, 37, 90)),
                                    ([5, 5, 20, 20], "cup", None)]),
    "non-square, wide, overlapping masks": ((120, 50), [
        ([0, 0, 70, 50], "plate", ellipse(0, 0, 70, 50)),
        ([30, 10, 60, 40], "cup", ellipse(30, 10, 60, 40)),
        ([50, 5, 120, 45], "spoon", MaskCrop(np.ones((40, 70), bool), 50, 5)),
    ]),
    "fractional box": ((50, 40), [([2.5, 3.2, 20.7, 30.1], "x", ellipse(2, 3, 21, 31))]),
    "box without mask": ((50, 40), [([10, 10, 30, 30], "cup", None)]),
}


def reference_masks(image: np.ndarray, det: Detections, alpha: float) -> np.ndarray:
    """The slow, obvious blend: one full-size mask at a time, largest mask area first."""
    out = image.astype(np.float64)
    if det.masks is not None:
        order = sorted(range(len(det)), key=lambda i: -(det.mask_area(i) or 0))
        for i in order:
            full = det.mask(i)
            color = np.array(label_color(det.labels[i]), np.float64)
            out[full] = np.floor(out[full] * (1 - alpha) + color * alpha + 0.5)
    return out.astype(np.uint8)


def reference_boxes(out: np.ndarray, det: Detections, thickness: int) -> np.ndarray:
    """Outlines drawn the obvious way: every pixel of the box within ``thickness`` of its border."""
    out = out.copy()
    h, w = out.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w]
    for (x0, y0, x1, y1), label in zip(det.xyxy, det.labels):
        c0, r0, c1, r1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)) - 1, int(np.ceil(y1)) - 1
        inside = (cols >= c0) & (cols <= c1) & (rows >= r0) & (rows <= r1)
        border = ((cols < c0 + thickness) | (cols > c1 - thickness)
                  | (rows < r0 + thickness) | (rows > r1 - thickness))
        out[inside & border] = label_color(label)
    return out


# -- the whole picture ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_returns_new_array_and_never_mutates_input(name):
    wh, items = CASES[name]
    image = noise(wh)
    before = image.copy()
    out = draw_overlay(image, make(wh, items))
    assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)
    if items:
        assert not np.array_equal(out, image)
    else:
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("alpha", [0.0, 0.45, 0.7, 1.0])
@pytest.mark.parametrize("name", CASES)
def test_masks_match_the_full_image_reference_exactly(name, alpha):
    wh, items = CASES[name]
    image, det = noise(wh, seed=1), make(wh, items)
    out = draw_overlay(image, det, alpha=alpha, draw_boxes=False, draw_labels=False)
    np.testing.assert_array_equal(out, reference_masks(image, det, alpha))


def test_mask_pixels_move_towards_the_label_colour_by_alpha():
    wh = (64, 48)
    det = make(wh, [([10, 8, 40, 30], "cup", ellipse(10, 8, 40, 30))])
    image = np.full((48, 64, 3), 100, np.uint8)
    out = draw_overlay(image, det, alpha=0.45, draw_boxes=False, draw_labels=False)
    color = np.array(label_color("cup"), float)
    inside = det.mask(0)
    expected = np.floor(100 * 0.55 + color * 0.45 + 0.5)
    assert (out[inside] == expected).all()
    assert (out[~inside] == 100).all()


@pytest.mark.parametrize("thickness", [1, 2, 3, 7])
@pytest.mark.parametrize("name", CASES)
def test_boxes_are_drawn_inside_the_box_and_nothing_else_changes(name, thickness):
    wh, items = CASES[name]
    image, det = noise(wh, seed=2), make(wh, items)
    out = draw_overlay(image, det, thickness=thickness, draw_labels=False)
    np.testing.assert_array_equal(out, reference_boxes(reference_masks(image, det, 0.45), det, thickness))


def test_same_label_same_colour_in_separate_calls():
    a = draw_overlay(np.zeros((40, 60, 3), np.uint8), make((60, 40), [([5, 5, 30, 30], "cup", None)]),
                     draw_labels=False, thickness=2)
    b = draw_overlay(np.full((90, 70, 3), 255, np.uint8), make((70, 90), [([20, 40, 60, 80], "cup", None)]),
                     draw_labels=False, thickness=2)
    assert tuple(a[5, 10]) == tuple(b[40, 30]) == label_color("cup")


def test_label_colour_is_stable_across_processes():
    code = ("from visionkit.draw.overlay import label_color; "
            "print([label_color(s) for s in ('cup', 'カップ', '🐕', '')])")
    runs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=REPO)
        runs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    expected = [PALETTE[zlib.crc32(s.encode()) % len(PALETTE)] for s in ("cup", "カップ", "🐕", "")]
    assert runs == {f"{expected}\n"}


def test_point_only_detection_is_a_circle_with_a_tag_and_no_outline():
    wh = (80, 60)
    det = make(wh, [([40, 30, 40, 30], "dot", None)], points=[[40.0, 30.0]])
    image = np.full((60, 80, 3), 128, np.uint8)
    out = draw_overlay(image, det, thickness=1, font_size=10)
    assert tuple(out[30, 40]) == label_color("dot")
    tag = render_tag("dot", label_color("dot"), 10, fonts.find_font(), fonts.find_emoji_font())
    th, tw = tag.shape[:2]
    # above the point: radius 3 for thickness 1, then a 2-pixel gap
    y, x = 30 - 3 - 2 - th, round(40 - tw / 2)
    np.testing.assert_array_equal(out[y:y + th, x:x + tw], tag)
    # draw_boxes covers point markers too
    np.testing.assert_array_equal(draw_overlay(image, det, draw_boxes=False, draw_labels=False), image)


# -- labels --------------------------------------------------------------------------------------------

SIZE = 12


def tag_for(text, label):
    return render_tag(text, label_color(label), SIZE, fonts.find_font(), fonts.find_emoji_font())


def expected_top_left(wh, box, tag):
    """Where the tag goes: above the top-left corner, inside when no room, shifted inside the image."""
    th, tw = tag.shape[:2]
    x, y = int(box[0]), int(box[1]) - th
    if y < 0:
        y = int(box[1])
    return max(0, min(x, wh[0] - tw)), max(0, min(y, wh[1] - th))


@pytest.mark.parametrize("wh, box, label", [
    ((200, 120), [50, 60, 120, 100], "cup"),                      # room above
    ((200, 120), [50, 0, 120, 60], "cup"),                         # at the top edge: inside the box
    ((200, 120), [50, 3, 120, 60], "cup"),                         # not quite enough room above
    ((200, 120), [0, 0, 200, 120], "table"),                      # box touching every edge
    ((200, 120), [170, 0, 200, 30], "a long label near the corner"),  # shifted left to stay inside
    ((90, 300), [60, 280, 90, 300], "bottle"),                    # non-square, bottom-right corner
])
def test_tag_is_placed_above_the_box_and_kept_inside_the_image(wh, box, label):
    image = np.full((wh[1], wh[0], 3), 128, np.uint8)
    det = make(wh, [(box, label, None)])
    out = draw_overlay(image, det, draw_boxes=False, font_size=SIZE)
    tag = tag_for(label, label)
    th, tw = tag.shape[:2]
    assert tw <= wh[0] and th <= wh[1]
    x, y = expected_top_left(wh, box, tag)
    np.testing.assert_array_equal(out[y:y + th, x:x + tw], tag)
    outside = np.ones(out.shape[:2], bool)
    outside[y:y + th, x:x + tw] = False
    assert (out[outside] == 128).all()


def find_patch(out: np.ndarray, patch: np.ndarray) -> tuple[int, int] | None:
    """Top-left (x, y) where ``patch`` appears pixel for pixel in ``out``, or None."""
    h, w = patch.shape[:2]
    # matchTemplate (which may use a DFT, so it is not exact) proposes; array_equal decides
    scores = cv2.matchTemplate(out.astype(np.float32), patch.astype(np.float32), cv2.TM_SQDIFF)
    for y, x in np.argwhere(scores <= scores.min() + 1e3):
        if np.array_equal(out[y:y + h, x:x + w], patch):
            return int(x), int(y)
    return None


@pytest.mark.parametrize("wh, items", [
    ((200, 150), [([50, 60, 150, 140], "plate"), ([52, 62, 140, 130], "cup")]),   # same corner
    ((200, 150), [([0, 0, 200, 150], "table"), ([0, 0, 120, 80], "cup"),           # all at the top edge
                  ([0, 0, 60, 40], "spoon")]),
    ((90, 200), [([5, 100, 85, 190], "bottle"), ([10, 102, 80, 150], "label"),    # non-square
                 ([12, 104, 70, 140], "cap")]),
])
def test_colliding_tags_move_to_a_free_spot_and_all_stay_readable(wh, items):
    det = make(wh, [(box, label, None) for box, label in items])
    out = draw_overlay(np.full((wh[1], wh[0], 3), 128, np.uint8), det, draw_boxes=False, font_size=SIZE)
    rects = []
    for _, label in items:
        tag = tag_for(label, label)
        at = find_patch(out, tag)
        assert at is not None, f"tag {label!r} is covered"
        rects.append((*at, tag.shape[1], tag.shape[0]))
    smallest = min(range(len(items)), key=lambda k: det.box_area[k])
    box = items[smallest][0]
    assert rects[smallest][:2] == expected_top_left(wh, box, tag_for(items[smallest][1], items[smallest][1]))


def test_point_tag_goes_below_the_point_at_the_top_edge():
    det = make((80, 60), [([40, 2, 40, 2], "dot", None)], points=[[40.0, 2.0]])
    out = draw_overlay(np.full((60, 80, 3), 128, np.uint8), det, thickness=1, font_size=10)
    tag = render_tag("dot", label_color("dot"), 10, fonts.find_font(), fonts.find_emoji_font())
    assert find_patch(out, tag) == (round(40 - tag.shape[1] / 2), 2 + 3 + 2)


def test_tag_wider_than_the_image_is_cropped_not_raised():
    det = make((30, 20), [([0, 0, 30, 20], "a label much wider than the image", None)])
    out = draw_overlay(np.zeros((20, 30, 3), np.uint8), det, font_size=SIZE)
    assert out.shape == (20, 30, 3)


@pytest.mark.parametrize("show_scores, scores, text", [
    (True, [0.87], "cup 0.87"),
    (False, [0.87], "cup"),
    (True, None, "cup"),
    (True, [float("nan")], "cup"),
])
def test_score_in_tag(show_scores, scores, text):
    wh, box = (160, 100), [40, 50, 100, 90]
    det = make(wh, [(box, "cup", None)], scores=scores)
    out = draw_overlay(np.zeros((100, 160, 3), np.uint8), det, draw_boxes=False, font_size=SIZE,
                       show_scores=show_scores)
    tag = tag_for(text, "cup")
    x, y = expected_top_left(wh, box, tag)
    np.testing.assert_array_equal(out[y:y + tag.shape[0], x:x + tag.shape[1]], tag)


def test_tags_are_rendered_once_and_read_only():
    a, b = tag_for("cup", "cup"), tag_for("cup", "cup")
    assert a is b and not a.flags.writeable
    assert tuple(a[0, 0]) == label_color("cup")  # filled with the label's colour


@pytest.mark.parametrize("bg, fg", [((255, 200, 20), (0, 0, 0)), ((0, 0, 128), (255, 255, 255)),
                                    ((230, 25, 75), (255, 255, 255)), ((190, 230, 50), (0, 0, 0))])
def test_text_colour_contrasts_with_the_tag(bg, fg):
    tag = render_tag("HHHH", bg, 24, fonts.find_font())
    colors = {tuple(p) for p in tag.reshape(-1, 3)}
    assert fg in colors


def _glyphs_differ(font_path, a: str, b: str) -> bool:
    return not np.array_equal(render_tag(a, (255, 255, 255), 24, font_path),
                              render_tag(b, (255, 255, 255), 24, font_path))


def test_japanese_label_renders_real_glyphs_when_a_cjk_font_is_available():
    font_path = fonts.find_font()
    # a font without the glyphs draws the same box for every character
    if font_path is None or not _glyphs_differ(font_path, "カ", "ッ"):
        pytest.skip("no font with Japanese glyphs on this machine (install fonts-noto-cjk)")
    tag = render_tag("カップ", (255, 255, 255), 24, font_path)
    ink = (tag < 128).all(axis=2)
    assert ink.sum() > 30
    det = make((120, 80), [([10, 40, 100, 70], "カップ", None)])
    out = draw_overlay(np.zeros((80, 120, 3), np.uint8), det, draw_boxes=False, font_size=24)
    assert not np.array_equal(out, 0)


def test_japanese_and_emoji_never_raise_with_the_builtin_fallback_font(monkeypatch):
    monkeypatch.setattr(fonts, "FONT_CANDIDATES", ())
    monkeypatch.setattr(fonts, "EMOJI_FONT_CANDIDATES", ())
    assert fonts.find_font() is None and fonts.find_emoji_font() is None
    assert fonts.load_font(14) is not None
    det = make((120, 80), [([10, 40, 100, 70], "カップ 🐕", None)], scores=[0.5])
    out = draw_overlay(np.zeros((80, 120, 3), np.uint8), det)
    assert (out != 0).any()


def test_emoji_render_in_colour_when_an_emoji_font_is_available():
    emoji_path = fonts.find_emoji_font()
    if emoji_path is None:
        pytest.skip("no colour emoji font on this machine (install fonts-noto-color-emoji)")
    tag = render_tag("cup 😀", (0, 0, 128), 24, fonts.find_font(), emoji_path)
    yellow = (tag[..., 0] > 200) & (tag[..., 1] > 150) & (tag[..., 2] < 100)
    assert yellow.sum() > 20
    assert tag.shape[0] < 24 * 2  # scaled down from the 109 px bitmap


# -- font lookup ---------------------------------------------------------------------------------------

def test_font_lookup_order(tmp_path, monkeypatch):
    explicit, from_env, system = (tmp_path / n for n in ("explicit.ttf", "env.ttf", "system.ttf"))
    for p in (explicit, from_env, system):
        p.write_bytes(b"")
    monkeypatch.setattr(fonts, "FONT_CANDIDATES", (str(tmp_path / "absent.ttf"), str(system)))
    assert fonts.find_font() == str(system)
    monkeypatch.setenv(fonts.FONT_ENV, str(from_env))
    assert fonts.find_font() == str(from_env)
    assert fonts.find_font(explicit) == str(explicit)
    monkeypatch.delenv(fonts.FONT_ENV)
    monkeypatch.setattr(fonts, "FONT_CANDIDATES", ())
    assert fonts.find_font() is None


@pytest.mark.parametrize("env, call", [
    (fonts.FONT_ENV, lambda: fonts.find_font()),
    (fonts.FONT_ENV, lambda: fonts.load_font(12)),
    (fonts.FONT_ENV, lambda: draw_overlay(np.zeros((20, 30, 3), np.uint8),
                                          make((30, 20), [([1, 1, 9, 9], "cup", None)]))),
    (fonts.EMOJI_FONT_ENV, lambda: fonts.find_emoji_font()),
])
def test_configured_font_that_does_not_exist_is_an_input_error(monkeypatch, env, call):
    monkeypatch.setenv(env, "/no/such/font.ttf")
    with pytest.raises(InputError, match="/no/such/font.ttf"):
        call()


def test_explicit_font_that_does_not_exist_is_an_input_error():
    det = make((30, 20), [([1, 1, 9, 9], "cup", None)])
    with pytest.raises(InputError, match="missing.ttf"):
        draw_overlay(np.zeros((20, 30, 3), np.uint8), det, font="/tmp/missing.ttf")


def test_file_that_is_not_a_font_is_an_input_error(tmp_path):
    bad = tmp_path / "not-a-font.ttf"
    bad.write_bytes(b"hello")
    with pytest.raises(InputError, match="not-a-font.ttf"):
        fonts.load_font(12, bad)


# -- bad input -----------------------------------------------------------------------------------------

def test_size_mismatch_is_an_input_error_naming_both_sizes():
    det = make((64, 48), [([1, 1, 9, 9], "cup", None)])
    with pytest.raises(InputError, match=r"48x64.*64x48"):
        draw_overlay(np.zeros((64, 48, 3), np.uint8), det)


@pytest.mark.parametrize("image", [
    np.zeros((48, 64), np.uint8),
    np.zeros((48, 64, 4), np.uint8),
    np.zeros((48, 64, 3), np.float32),
    [[0, 0, 0]],
])
def test_image_that_is_not_rgb_uint8_is_an_input_error(image):
    with pytest.raises(InputError, match="RGB uint8"):
        draw_overlay(image, Detections.empty((64, 48)))


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"alpha": -0.1}, {"alpha": True}, {"thickness": 0},
                                    {"font_size": 0}, {"thickness": 2.5}])
def test_bad_options_are_input_errors(kwargs):
    with pytest.raises(InputError):
        draw_overlay(np.zeros((48, 64, 3), np.uint8), Detections.empty((64, 48)), **kwargs)


def test_detections_of_the_wrong_type_is_an_input_error():
    with pytest.raises(InputError, match="Detections"):
        draw_overlay(np.zeros((48, 64, 3), np.uint8), {"xyxy": []})
