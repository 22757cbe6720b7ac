"""The JPEG damage check folded into the overlay's decode (visionkit.media.jpegcheck.decode_checked via
fastread): the same pixels as OpenCV's reader, the same complaint as the separate check, and no second decode
of an image whose overlay is drawn."""

from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from visionkit.cli import main
from visionkit.media.fastread import read_jpeg_rgb
from visionkit.media.imageio import read_rgb
from visionkit.media.jpegcheck import decode_checked, ends_with_eoi, jpeg_damage
from visionkit.run import image_step

pytest.importorskip("simplejpeg")
from test_damaged_jpeg import damaged_middle, photo_jpeg  # noqa: E402


def jpeg_of(w: int, h: int, gray: bool = False) -> bytes:
    rng = np.random.default_rng(w * 7 + h)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    buf = io.BytesIO()
    Image.fromarray(rgb[:, :, 0] if gray else rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("wh", [(1, 1), (5, 3), (17, 9), (64, 48), (101, 333), (640, 480)])
@pytest.mark.parametrize("max_side", [None, 300, 100, 30, 1])
@pytest.mark.parametrize("gray", [False, True])
def test_the_checked_decode_gives_opencvs_pixels(tmp_path, wh, max_side, gray):
    """Oracle: OpenCV's full or reduced decode (what fastread used before), then a resize as fastread does."""
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_of(*wh, gray))
    checked: list[str] = []
    got = read_jpeg_rgb(path, wh, 1, max_side, checked)
    assert checked == [""]
    longest = max(wh)
    flag, factor = cv2.IMREAD_COLOR, 1
    target = wh if not max_side or longest <= max_side else \
        (max(1, round(wh[0] * max_side / longest)), max(1, round(wh[1] * max_side / longest)))
    if target != wh:
        for f, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                           (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if -(-longest // f) >= max(target):
                flag, factor = reduced, f
                break
    want = cv2.cvtColor(cv2.imdecode(np.fromfile(path, np.uint8), flag), cv2.COLOR_BGR2RGB)
    assert want.shape[:2] == (-(-wh[1] // factor), -(-wh[0] // factor))
    if (want.shape[1], want.shape[0]) != target:
        want = cv2.resize(want, target, interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and got.dtype == np.uint8


def test_the_separate_check_decodes_at_an_eighth():
    """min_factor alone does not scale a simplejpeg decode; the check asks for the smallest size."""
    pixels, complaint = decode_checked(jpeg_of(640, 480), "GRAY", 8, (1, 1))
    assert complaint is None and pixels.shape[:2] == (60, 80)


def test_the_overlay_read_reports_the_same_complaint_as_the_check(tmp_path, capfd):
    whole, middle = tmp_path / "whole.jpg", tmp_path / "middle.jpg"
    whole.write_bytes(photo_jpeg())
    middle.write_bytes(damaged_middle(photo_jpeg()))
    for path, complaint in ((whole, None), (middle, jpeg_damage(middle))):
        checked: list[str] = []
        rgb = read_rgb(path, max_side=200, checked=checked)
        assert checked == [complaint or ""] and rgb.shape == (150, 200, 3)
    assert "Corrupt JPEG data" in checked[0]
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # on the image, never on stderr
    png = tmp_path / "x.png"
    Image.new("RGB", (4, 3)).save(png)
    checked = []
    read_rgb(png, checked=checked)
    assert checked == []  # not decoded by libjpeg: the caller checks separately


@pytest.mark.parametrize("make, expected", [
    (lambda d: d, True), (lambda d: d[:-2], False), (lambda d: d[: len(d) // 2], False),
    (lambda d: d + b"junk", False), (lambda d: b"", False), (lambda d: b"\xd9", False),
])
def test_ends_with_eoi(tmp_path, make, expected):
    path = tmp_path / "x.jpg"
    path.write_bytes(make(jpeg_of(16, 8)))
    assert ends_with_eoi(path) is expected


def test_ends_with_eoi_never_opens_a_fifo_or_a_missing_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    assert not ends_with_eoi(tmp_path / "pipe.jpg") and not ends_with_eoi(tmp_path / "missing.jpg")


@pytest.mark.parametrize("overlays", [True, False])
def test_no_second_decode_when_the_overlay_is_drawn(tmp_path, monkeypatch, overlays):
    """With overlays, a whole or damaged JPEG that ends with its EOI is checked by the overlay's decode;
    without, by the separate check. The outcome is the same (tests/test_damaged_jpeg.py pins it)."""
    imgs, replay = tmp_path / "imgs", tmp_path / "replay"
    imgs.mkdir()
    replay.mkdir()
    (imgs / "whole.jpg").write_bytes(photo_jpeg())
    (imgs / "middle.jpg").write_bytes(damaged_middle(photo_jpeg()))
    for name in ("whole", "middle"):
        (replay / f"{name}.txt").write_text('[{"box_2d": [100, 100, 600, 700], "label": "cup"}]')
    calls: list[str] = []
    real = image_step.jpeg_damage
    monkeypatch.setattr(image_step, "jpeg_damage", lambda p: calls.append(p.name) or real(p))
    out = tmp_path / "out"
    code = main(["label", str(imgs), "--out", str(out), "--task", "detect", "--replay", str(replay),
                 *(() if overlays else ("--no-overlays",))], stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    assert sorted(calls) == ([] if overlays else ["middle.jpg", "whole.jpg"])
    warned = {w["file"]: w["warnings"] for w in json.loads((out / "warnings.json").read_text())["images"]}
    assert any("Corrupt JPEG data" in w["reason"] for w in warned["middle.jpg"])
    assert "whole.jpg" not in warned
    assert len(list((out / "overlays").glob("*.jpg"))) == (2 if overlays else 0)
