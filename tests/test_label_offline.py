"""`visionkit label --replay`: outputs, per-image failures, EXIF, exit status, atomic results."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, disk, png_b64
from PIL import Image
from pycocotools.coco import COCO

from visionkit import label
from visionkit.cli import main

GOOD = [{"box_2d": [100, 100, 600, 500], "mask": None, "label": "cup"},
        {"box_2d": [500, 500, 900, 900], "label": "plate"}]


def answer(masked: bool = True) -> str:
    items = json.loads(json.dumps(GOOD))
    items[0]["mask"] = png_b64(disk(64, 64)) if masked else "data:image/png;base64,@@@"
    return "```json\n" + json.dumps(items) + "\n```"


def full_response(text: str, finish: str = "STOP") -> dict:
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish}]}


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """images/: a.png 200x100, sub/b.jpg 64x48 EXIF-rotated (upright 48x64), c.png (broken answer),
    d.png (no answer). replay/: matching answers."""
    images, replay = tmp_path / "images", tmp_path / "replay"
    (images / "sub").mkdir(parents=True)
    replay.mkdir()
    Image.new("RGB", (200, 100), (40, 90, 160)).save(images / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display: stored 64x48, upright 48x64
    Image.new("RGB", (64, 48), (200, 30, 30)).save(images / "sub" / "b.jpg", exif=exif)
    Image.new("RGB", (30, 30)).save(images / "c.png")
    Image.new("RGB", (30, 30)).save(images / "d.png")
    (images / "notes.txt").write_text("not an image")
    (replay / "a.txt").write_text(answer())
    (replay / "b.json").write_text(json.dumps(full_response(answer(masked=False))))
    (replay / "c.txt").write_text("Sorry, I can't help with that.")
    return images, replay


def test_label_replay_writes_coco_overlays_and_failures(dataset, tmp_path):
    images, replay = dataset
    out = tmp_path / "out"
    summary = label([images], out, task="segment", replay=replay)
    assert (summary.total, summary.succeeded, summary.failed) == (4, 2, 2)
    failures = json.loads((out / "failures.json").read_text())
    assert {f["file"]: f["stage"] for f in failures} == {"c.png": "parse", "d.png": "answer"}
    assert "no JSON" in failures[0]["reason"] and "d.json" in failures[1]["reason"]

    ds = json.loads((out / "annotations.json").read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in ds["images"]] == [
        ("a.png", 200, 100), ("sub/b.jpg", 48, 64)]
    assert [c["name"] for c in ds["categories"]] == ["cup", "plate"]
    coco = COCO(str(out / "annotations.json"))
    a_cup = ds["annotations"][0]
    assert a_cup["bbox"] == [20.0, 10.0, 80.0, 50.0] and isinstance(a_cup["segmentation"], dict)
    assert coco.annToMask(a_cup).sum() == a_cup["area"] > 1000
    b_cup = ds["annotations"][2]
    x, y, w, h = b_cup["bbox"]  # its mask was undecodable: the box kept, as a 4-point polygon
    assert b_cup["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]] and b_cup["area"] == w * h
    for key in ("a", "b"):
        with Image.open(out / "overlays" / f"{key}.jpg") as im:
            assert im.format == "JPEG" and im.size == ((200, 100) if key == "a" else (48, 64))
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.jpg", "b.jpg"]
    # replay mode asks nothing, so it saves no responses
    assert sorted(p.name for p in out.iterdir()) == [".annotations.index.json", ".results.jsonl",
                                                     ".visionkit.lock", "annotations.json", "failures.json",
                                                     "keys.json", "overlays", "sources.json", "warnings.json"]
    warned = json.loads((out / "warnings.json").read_text())["images"]  # b's undecodable mask, kept
    assert [(w["file"], w["key"], w["warnings"][0]["field"]) for w in warned] == [("sub/b.jpg", "b", "mask")]
    sources = json.loads((out / "sources.json").read_text())["images"]
    assert sources["sub/b.jpg"] == str((images / "sub" / "b.jpg").resolve())


def test_cli_exit_status_and_messages(dataset, tmp_path):
    images, replay = dataset
    out, err = io.StringIO(), io.StringIO()
    code = main(["label", str(images), "--out", str(tmp_path / "o"), "--task", "segment", "--replay",
                 str(replay)], stdout=out, stderr=err)
    assert code == 1
    lines = err.getvalue().splitlines()
    assert any(line.startswith("FAILED c.png [parse] ParseError") for line in lines)
    assert any(line.startswith("FAILED d.png [answer] InputError") for line in lines)
    assert any(line.startswith("warning sub/b.jpg: item 0 'mask'") for line in lines)
    assert "2/4 images labelled, 2 failed" in out.getvalue()

    good = tmp_path / "good"
    good.mkdir()
    (good / "a.png").write_bytes((images / "a.png").read_bytes())
    code = main(["label", str(good / "a.png"), "--out", str(tmp_path / "o2"), "--replay", str(replay),
                 "--task", "detect", "-q"], stdout=io.StringIO(), stderr=(err := io.StringIO()))
    assert code == 0 and err.getvalue() == ""
    ds = json.loads((tmp_path / "o2" / "annotations.json").read_text())
    assert ds["annotations"] and all(  # detect task: no masks, every box as its 4-point polygon
        len(a["segmentation"]) == 1 and len(a["segmentation"][0]) == 8 for a in ds["annotations"])
    assert ds["info"]["visionkit"]["box_only"] == len(ds["annotations"])


@pytest.mark.parametrize("argv, message", [
    (["label", "missing.png", "--out", "o", "--replay", "."], "missing.png"),
    (["label", ".", "--out", "o", "--replay", "no-such-dir"], "replay folder"),
])
def test_cli_usage_errors_exit_2(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert message in err.getvalue() and "Traceback" not in err.getvalue()


def test_online_mode_without_a_key_fails_cleanly(dataset, tmp_path):
    images, _ = dataset
    err = io.StringIO()
    code = main(["label", str(images / "a.png"), "--out", str(tmp_path / "o")], stdout=io.StringIO(),
                stderr=err)
    assert code == 2  # a configuration error stops the run before any image is touched
    assert "GEMINI_API_KEY" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "o").exists()  # nothing was written


def test_polygons_option(dataset, tmp_path):
    images, replay = dataset
    label([images / "a.png"], tmp_path / "p", replay=replay, polygons=True)
    ds = json.loads((tmp_path / "p" / "annotations.json").read_text())
    seg = ds["annotations"][0]["segmentation"]
    assert isinstance(seg, list) and all(len(p) >= 6 for p in seg)
    coco = COCO(str(tmp_path / "p" / "annotations.json"))
    assert coco.annToMask(ds["annotations"][0]).sum() > 1000


def test_stem_collisions_use_relative_paths(tmp_path):
    images, replay = tmp_path / "im", tmp_path / "re"
    for sub in ("x", "y"):
        (images / sub).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(images / sub / "same.png")
    replay.mkdir()
    (replay / "x__same.txt").write_text("[]")
    (replay / "y__same.txt").write_text('[{"box_2d": [0, 0, 500, 500], "label": "q"}]')
    summary = label([images], tmp_path / "o", replay=replay)
    assert summary.ok
    assert sorted(p.name for p in (tmp_path / "o" / "overlays").iterdir()) == ["x__same.jpg", "y__same.jpg"]


def test_module_entry_point_runs(dataset, tmp_path):
    images, replay = dataset
    proc = subprocess.run([sys.executable, "-m", "visionkit", "label", str(images / "a.png"), "--out",
                           str(tmp_path / "m"), "--replay", str(replay)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "1/1 images labelled" in proc.stdout
    ds = json.loads((tmp_path / "m" / "annotations.json").read_text())
    assert len(ds["annotations"]) == 2 and np.isclose(ds["annotations"][1]["area"], 80 * 40)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_only_on_a_terminal_and_not_quiet(dataset, tmp_path, quiet):
    images, replay = dataset
    term = _Terminal()
    argv = ["label", str(images / "a.png"), str(images / "sub"), "--out", str(tmp_path / "o"), "--replay",
            str(replay)] + (["-q"] if quiet else [])
    assert main(argv, stdout=io.StringIO(), stderr=term) == 0
    shown = term.getvalue()
    if quiet:
        assert shown == ""
    else:
        assert "\r2/2 images · 2 ok · 0 failed · 0 cached · 0 retries" in shown  # 80 columns: no [###]
        assert shown.index("0/2 images") < shown.index("2/2 images")  # shown before the first image ends
        assert shown.endswith("\n")  # the bar line is closed
    plain = io.StringIO()  # not a terminal: no bar, only the warning lines
    main(argv[:-1] if quiet else argv, stdout=io.StringIO(), stderr=plain)
    assert "\r" not in plain.getvalue()
