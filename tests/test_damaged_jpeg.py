"""Issue 19, item 7: a JPEG with damaged data is the same named entry in every mode.

A JPEG whose middle is zeroed decodes with grey or shifted blocks: it is labelled, and libjpeg's
complaint is a warning on that image (warnings.json, the summary), not an anonymous line on stderr. A JPEG
cut short is one failed image naming the file, in replay mode as online (where it was already refused),
and it is never sent. Online runs use FakeGemini on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from visionkit.cli import main
from visionkit.media.jpegcheck import jpeg_damage
from visionkit.testing import FakeGemini

simplejpeg = pytest.importorskip("simplejpeg")
KEY = "sekrit-jpeg-KEY-4242"


def photo_jpeg() -> bytes:
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 640, y * 255 // 480, (x + y) % 256], -1).astype(np.uint8)
    noise = np.random.default_rng(1).integers(0, 40, rgb.shape, dtype=np.uint8)
    rgb = cv2.GaussianBlur(rgb + noise, (5, 5), 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def damaged_middle(data: bytes) -> bytes:
    """200 zeroed bytes in the middle, at the first offset libjpeg complains about."""
    for tenth in range(40, 70):
        at = len(data) * tenth // 100
        out = data[:at] + bytes(200) + data[at + 200:]
        try:
            simplejpeg.decode_jpeg(out, colorspace="GRAY", strict=True)
        except ValueError as exc:
            if "Corrupt JPEG data" in str(exc):
                return out
    pytest.skip("no offset made libjpeg complain")


# (file, how to make it from a whole JPEG, outcome, words of the warning or failure)
CASES = [
    ("whole.jpg", lambda d: d, "labelled", None),
    ("middle.jpg", damaged_middle, "warned", "Corrupt JPEG data"),
    ("cut.jpg", lambda d: d[: len(d) * 2 // 3], "failed", "Premature end of JPEG file"),
    ("no_eoi.jpg", lambda d: d[:-2], "failed", "Premature end of JPEG file"),
]


@pytest.fixture
def folder(tmp_path) -> Path:
    data = photo_jpeg()
    imgs, replay = tmp_path / "imgs", tmp_path / "replay"
    imgs.mkdir()
    replay.mkdir()
    for name, make, _, _ in CASES:
        (imgs / name).write_bytes(make(data))
        (replay / f"{Path(name).stem}.txt").write_text('[{"box_2d": [100, 100, 600, 700], "label": "cup"}]')
    return imgs


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.mark.parametrize("mode", ["replay", "online", "replay-no-overlays"])
def test_a_damaged_jpeg_is_treated_the_same_in_every_mode(folder, server, tmp_path, capfd, mode):
    out = tmp_path / "out"
    online = ("--base-url", server.base_url)
    where = ("--replay", folder.parent / "replay") if mode.startswith("replay") else online
    extra = ("--no-overlays",) if mode.endswith("no-overlays") else ()
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main([str(a) for a in ("label", folder, "--out", out, "--task", "detect", *where, *extra)],
                stdout=stdout, stderr=stderr)
    assert code == 1, stderr.getvalue()
    failures = {f["file"]: f for f in json.loads((out / "failures.json").read_text())}
    warned = {w["file"]: [x["reason"] for x in w["warnings"]]
              for w in json.loads((out / "warnings.json").read_text())["images"]}
    labelled = {i["file_name"] for i in json.loads((out / "annotations.json").read_text())["images"]}
    for name, _, outcome, words in CASES:
        if outcome == "failed":
            assert name not in labelled and failures[name]["stage"] == "image"
            assert words in failures[name]["reason"] and name in failures[name]["reason"]
        else:
            assert name in labelled and name not in failures
            complaints = [w for w in warned.get(name, []) if "libjpeg" in w]
            assert (words in complaints[0]) if words else not complaints, (name, warned.get(name))
    n_failed = sum(o == "failed" for _, _, o, _ in CASES)
    assert f"{len(CASES) - n_failed}/{len(CASES)} images labelled, {n_failed} failed" in stdout.getvalue()
    if mode == "online":
        assert len(server.generate_requests) == len(CASES) - n_failed  # a file cut short is never sent
    # libjpeg's complaint is on the image, never an anonymous line on the process's stderr
    captured = capfd.readouterr()
    assert "Corrupt JPEG data" not in captured.err and "Premature end" not in captured.err
    shown = [line for line in stderr.getvalue().splitlines() if "libjpeg" in line]
    assert shown and all("middle.jpg" in line or "cut.jpg" in line or "no_eoi.jpg" in line for line in shown)


_WHOLE = None


def _whole() -> bytes:
    global _WHOLE
    if _WHOLE is None:
        buf = io.BytesIO()
        pixels = np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "JPEG")
        _WHOLE = buf.getvalue()
    return _WHOLE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 64), st.integers(0, 255)), max_size=4),
       keep=st.integers(2, 5000), junk=st.binary(max_size=64))
def test_the_check_answers_for_any_bytes_and_never_raises(tmp_path, cuts, keep, junk):
    """A reader of outside data: mutated, cut and junk JPEG bytes give None or libjpeg's message."""
    data = bytearray(_whole())
    for at, length, value in cuts:
        at %= len(data)
        data[at:at + length] = bytes([value]) * len(data[at:at + length])
    path = tmp_path / "x.jpg"
    path.write_bytes(bytes(data[:keep]) + junk)
    result = jpeg_damage(path)
    assert result is None or (isinstance(result, str) and result)
    path.write_bytes(b"\xff\xd8\xff" + junk)
    assert jpeg_damage(path) is None or isinstance(jpeg_damage(path), str)
    assert jpeg_damage(tmp_path / "missing.jpg") is None  # unreadable: left to the reader that opens it
    if not (tmp_path / "pipe.jpg").exists():
        os.mkfifo(tmp_path / "pipe.jpg")
    assert jpeg_damage(tmp_path / "pipe.jpg") is None  # never opened: it would block
