"""Issue 11, the terminal: --glob/--exclude/--limit, --dry-run, help text, and a quiet stderr (OpenCV's C++
log lines, Pillow's DecompressionBombWarning) with a --max-pixels option."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from visionkit import label
from visionkit.cli import build_parser, main
from visionkit.run.inputs import find_inputs
from visionkit.testing.fake_gemini import FakeGemini

KEY = "AQ.conveniences-test-key"
ONE_BOX = '[{"box_2d": [100, 100, 600, 600], "label": "cup"}]'


def _tree(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 10)).save(root / name)
    return root


NAMES = ["a.jpg", "b.PNG", "sub/c.jpg", "sub/deep/d.png", "x/e.webp"]


@pytest.mark.parametrize("glob, exclude, limit, expected", [
    ((), (), None, NAMES),
    (("*.jpg",), (), None, ["a.jpg", "sub/c.jpg"]),               # * matches across folders
    (("*.png",), (), None, ["b.PNG", "sub/deep/d.png"]),           # case-insensitive
    (("sub/*",), (), None, ["sub/c.jpg", "sub/deep/d.png"]),
    (("*.jpg", "*.webp"), (), None, ["a.jpg", "sub/c.jpg", "x/e.webp"]),
    ((), ("sub/*",), None, ["a.jpg", "b.PNG", "x/e.webp"]),
    ((), ("c.jpg", "e.*"), None, ["a.jpg", "b.PNG", "sub/deep/d.png"]),  # the file name alone matches
    (("*.jpg",), ("a.*",), None, ["sub/c.jpg"]),
    ((), (), 2, ["a.jpg", "b.PNG"]),
    (("*.png",), (), 1, ["b.PNG"]),
    (("*.gif",), (), None, []),
])
def test_input_filters(tmp_path, glob, exclude, limit, expected):
    root = _tree(tmp_path / "in", NAMES)
    found = find_inputs([root], tmp_path / "out", glob=glob, exclude=exclude, limit=limit)
    assert [p.relative_to(r).as_posix() for p, r in found.images] == expected
    assert found.found == len(NAMES)
    assert bool(found.notices) == (len(expected) < len(NAMES))


def test_filters_on_the_command_line(tmp_path):
    root = _tree(tmp_path / "in", NAMES)
    replay = tmp_path / "replay"
    replay.mkdir()
    for stem in "abcde":
        (replay / f"{stem}.txt").write_text(ONE_BOX)
    out = io.StringIO()
    code = main(["label", str(root), "--out", str(tmp_path / "o"), "--replay", str(replay), "--glob", "*.jpg",
                 "--glob", "*.png", "--exclude", "deep/*", "--exclude", "sub/deep/*", "--limit", "2", "-q"],
                stdout=out, stderr=io.StringIO())
    assert code == 0, out.getvalue()
    ds = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert [i["file_name"] for i in ds["images"]] == ["a.jpg", "b.PNG"]
    with pytest.raises(SystemExit) as exc:  # argparse refuses it, exit 2
        main(["label", str(root), "--out", str(tmp_path / "o"), "--limit", "0"], stdout=io.StringIO(),
             stderr=io.StringIO())
    assert exc.value.code == 2


def test_dry_run_sends_nothing_and_writes_nothing(tmp_path):
    photos = _tree(tmp_path / "photos", ["p0.png", "p1.png", "big.png"])
    Image.new("RGB", (2000, 1000)).save(photos / "big.png")
    out = tmp_path / "out"
    with FakeGemini(api_key=KEY) as server:
        from visionkit.gemini import GeminiClient

        with GeminiClient(api_key=KEY, base_url=server.base_url, model="gemini-2.5-flash") as client:
            label([photos / "p0.png"], out, client=client)  # p0 is answered and saved
        before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
        stdout = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("GEMINI_API_KEY", raising=False)  # no key needed: nothing is sent
            code = main(["label", str(photos), "--out", str(out), "--base-url", server.base_url,
                         "--model", "gemini-2.5-flash", "--dry-run"], stdout=stdout, stderr=io.StringIO())
        sent = len(server.generate_requests)
    text = stdout.getvalue()
    assert code == 0 and sent == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    lines = {line.split()[1]: line.split()[0] for line in text.splitlines()
             if line.split()[0] in ("request", "reuse", "replay", "fail")}
    assert text.startswith("model    gemini-2.5-flash: routed; in the table")  # no key: registry only
    assert lines == {"big.png": "request", "p0.png": "reuse", "p1.png": "request"}
    # 2000x1000 is sent as 1024x512: crop unit 341, 4 x 2 tiles of 258 tokens, plus the prompt
    tokens = int(re.search(r"big.png  \(about ([\d,]+) input tokens", text).group(1).replace(",", ""))
    assert 2064 < tokens < 2064 + 400
    assert "dry run: 3 images: 2 to request" in text and "1 reused" in text and "nothing was sent" in text


def test_dry_run_with_replay_names_missing_and_ambiguous_answers(tmp_path):
    photos = _tree(tmp_path / "photos", ["a/x.png", "b/x.png", "y.png", "z.png"])
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "x.txt").write_text(ONE_BOX)
    (replay / "y.txt").write_text(ONE_BOX)
    stdout = io.StringIO()
    assert main(["label", str(photos), "--out", str(tmp_path / "o"), "--replay", str(replay), "--dry-run"],
                stdout=stdout, stderr=io.StringIO()) == 0
    text = stdout.getvalue()
    assert "fail     a/x.png  (replay answer x.txt could mean a/x.png or b/x.png" in text
    assert "replay   y.png" in text and "fail     z.png  (no replay answer" in text
    assert "1 from --replay, 3 would fail" in text
    assert not (tmp_path / "o").exists()


def _all_parsers() -> list[argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [parser, *sub.choices.values()]


def test_help_has_text_and_defaults_for_every_option_and_no_markup():
    for parser in _all_parsers():
        text = parser.format_help()
        for marker in ("``", ":mod:", ":func:", ":class:", ":meth:"):
            assert marker not in text, (parser.prog, marker)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                   argparse._SubParsersAction)):
                continue
            assert action.help, (parser.prog, action.dest)
            if action.default not in (None, False, [], argparse.SUPPRESS) and action.option_strings:
                shown = parser._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in shown.lower(), (parser.prog, action.dest)
    label_help = next(p for p in _all_parsers() if p.prog.endswith(" label")).format_help()
    for needed in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "exit status", "130", "--dry-run", "--limit N",
                   "(default: segment)", "VISIONKIT_MODEL"):
        assert needed in label_help, needed
    top = _all_parsers()[0].format_help()
    assert "GEMINI_API_KEY" in top and "exit status" in top


def _png_b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "visionkit", "label", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


def test_stderr_has_no_native_log_lines_or_pillow_warnings(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48)).save(photos / "cut.png")
    Image.new("1", (9500, 9500)).save(photos / "huge.png")  # 90 megapixels: over Pillow's warning size
    ok, png = cv2.imencode(".png", np.full((16, 16), 255, np.uint8))
    cut = [{"box_2d": [100, 100, 600, 600], "label": "cup", "mask": _png_b64(png.tobytes()[:-20])}]
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "cut.txt").write_text(json.dumps(cut))
    (replay / "huge.txt").write_text(ONE_BOX)
    base = [str(photos), "--replay", str(replay), "--no-overlays"]
    quiet = _cli([*base, "--out", str(tmp_path / "q"), "-q"])
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no "[ WARN:0@...] grfmt_png.cpp" line, no DecompressionBombWarning
    loud = _cli([*base, "--out", str(tmp_path / "l")])
    assert "[ WARN" not in loud.stderr and "DecompressionBombWarning" not in loud.stderr
    assert "warning huge.png: answer: image is 9500x9500 = 90 megapixels" in loud.stderr  # translated, named
    assert "warning cut.png: item 0" in loud.stderr
    limited = _cli([*base, "--out", str(tmp_path / "m"), "--max-pixels", "1000000", "-q"])
    assert limited.returncode == 1 and "FAILED huge.png" in limited.stderr
    assert "--max-pixels" in limited.stderr
    assert "Traceback" not in limited.stderr


@pytest.mark.parametrize("size_wh, model, max_side, tokens", [
    ((384, 384), "gemini-2.5-flash", 1024, 258),           # both sides <= 384: one image, 258 tokens
    ((385, 200), "gemini-2.5-flash", 1024, 258 * 6),       # crop unit 133: 3 x 2 tiles
    ((960, 540), "gemini-2.5-flash", 1024, 1548),          # Google's worked example: 6 tiles
    ((1920, 1080), "gemini-2.5-flash", 960, 1548),         # sent as 960x540
    ((1000, 1000), "gemini-2.5-flash", None, 258 * 4),
    ((4000, 3000), "gemini-3-flash-preview", 1024, 1120),  # Gemini 3: media_resolution_high
    ((1, 1), "gemini-2.0-flash", 1024, 258),
])
def test_image_token_estimate(size_wh, model, max_side, tokens):
    from visionkit.run.plan import image_tokens

    assert image_tokens(size_wh, model, max_side) == tokens


@pytest.mark.parametrize("resolution, tokens", [(None, 1120), ("low", 280), ("medium", 560), ("high", 1120),
                                                ("ultra_high", 2240)])
def test_gemini_3_token_estimate_follows_media_resolution(resolution, tokens):
    from visionkit.run.plan import image_tokens

    assert image_tokens((4000, 3000), "gemini-3-flash-preview", 1024, resolution) == tokens
    assert image_tokens((4000, 3000), "gemini-2.5-flash", 1024, resolution) == 258 * 4  # tiles, not levels
