"""Issue 19 #15: what the CLI says. -q silences the font warning (threads and worker processes alike), the
summary's warning count is the number of warning lines printed, the empty-folder error names the folder,
and the missing-key error gives advice a command-line user can follow. Each fails on the code before."""

from __future__ import annotations

import io
import json
import re
import warnings

import pytest
from PIL import Image

from visionkit.cli import main

# Egyptian hieroglyph + Javanese: no font on a usual system draws both, so the overlay cannot either
LABEL = "\U00013000 \ua9b2 cat"


@pytest.fixture(autouse=True)
def _font_lacks_the_label():
    import numpy as np

    from visionkit.core.detections import Detections
    from visionkit.draw.overlay import draw_overlay

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw_overlay(np.zeros((40, 60, 3), np.uint8),
                     Detections(np.array([[1.0, 1, 30, 30]]), [LABEL], (60, 40)))
    if not any("cannot draw" in str(w.message) for w in caught):
        pytest.skip("this system's font draws the test label; no font warning to test")


def _folder(tmp_path, n):
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    for i in range(n):
        Image.new("RGB", (60 + i, 40)).save(images / f"p{i:02d}.png")
        (replay / f"p{i:02d}.txt").write_text(json.dumps([
            {"box_2d": [100, 100, 600, 600], "label": LABEL},
            {"box_2d": [100, 100, 1200, 600], "label": "x"}]))  # clipped: one parse warning per image
    return images, replay


def _label(tmp_path, capfd, n, *extra):
    images, replay = _folder(tmp_path, n)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["label", str(images), "--out", str(tmp_path / "out"), "--replay", str(replay), *extra],
                stdout=stdout, stderr=stderr)
    captured = capfd.readouterr()  # worker processes write to the real stderr
    return code, stdout.getvalue(), stderr.getvalue() + captured.err


@pytest.mark.parametrize("n", [3, 17])  # threads; worker processes (16 images or more)
def test_quiet_prints_no_font_warning(tmp_path, capfd, n):
    code, out, err = _label(tmp_path, capfd, n, "-q")
    assert code == 0
    assert "cannot draw" not in err and "MissingGlyphWarning" not in err
    assert err.strip() == ""


@pytest.mark.parametrize("n", [3, 17])
def test_the_warning_count_is_the_number_of_warning_lines(tmp_path, capfd, n):
    code, out, err = _label(tmp_path, capfd, n)
    assert code == 0
    counted = int(re.search(r"(\d+) warnings", out).group(1))
    lines = [line for line in err.splitlines() if "warning" in line.lower()]
    assert counted == len(lines) == 2 * n, err
    assert sum("cannot draw" in line for line in lines) == n  # each image's overlay: its own warning
    assert all(line.startswith("warning p") for line in lines)  # each names its image
    warned = json.loads((tmp_path / "out" / "warnings.json").read_text())
    assert sum(len(w["warnings"]) for w in warned["images"]) == counted


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_the_empty_folder_error_names_the_folder(tmp_path, extra):
    empty = tmp_path / "holiday photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    err = io.StringIO()
    code = main(["label", str(empty), "--out", str(tmp_path / "out"), "--replay", str(tmp_path), *extra],
                stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert f"no images found in {empty} (looked for " in err.getvalue()


def test_the_missing_key_error_speaks_to_a_command_line_user(tmp_path, monkeypatch):
    images, _ = _folder(tmp_path, 1)
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    err = io.StringIO()
    code = main(["label", str(images), "--out", str(tmp_path / "out"), "--base-url", "http://127.0.0.1:9"],
                stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert "api_key=" not in err.getvalue()
    assert "set the GEMINI_API_KEY (or GOOGLE_API_KEY) environment variable" in err.getvalue()
