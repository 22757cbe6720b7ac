"""A FIFO (or a folder) put in place of a file a run wrote never hangs the command that reads it.

Opening a FIFO for reading waits for a writer, for ever. Every reader of a run-owned file goes through
:func:`visionkit.media.filekind.open_regular`: the command either stops with an error naming the file and
what was expected, or, for a file that is only a shortcut (``.results.jsonl``, the index) or a guard with
nothing to protect, goes on without it. Each case runs the CLI in a subprocess with a timeout, so the old
code (which blocked in ``open``) fails by timing out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from visionkit import label
from visionkit.testing.synthetic import write_labelled_folder

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # a command that reads a FIFO waits for ever; a healthy one takes a few seconds

# (command, file put as a FIFO, what must happen): "error" = exit 2 and stderr names the file and says
# FIFO; "ok" = exit 0 (a shortcut or a guard with nothing to protect: the file is written anew);
# "noted" = exit 0 and the output names the file (the report leaves it out and says so).
CASES = [
    ("label", "keys.json", "error"),
    ("label", "annotations.json", "ok"),
    ("label", ".results.jsonl", "ok"),
    ("label", ".annotations.index.json", "ok"),
    ("export", "annotations.json", "error"),
    ("export", "sources.json", "error"),
    ("eval", "annotations.json", "error"),
    ("consensus", "annotations.json", "error"),
    ("report", "annotations.json", "error"),
    ("report", "warnings.json", "noted"),
    ("report", "failures.json", "noted"),
    ("report", "keys.json", "error"),
    ("overlays", "sources.json", "error"),
    ("overlays", "keys.json", "error"),
    ("batch status", "batch/run.json", "error"),
    ("batch collect", "batch/run.json", "error"),
    ("batch status", "batch/jobs.json", "error"),
]
# a folder in place of the file: said as such (opening a folder does not block, but reading it fails)
FOLDER_CASES = [("label", "keys.json", "error"), ("export", "annotations.json", "error"),
                ("batch status", "batch/run.json", "error")]
TABLE = [(*case, "fifo") for case in CASES] + [(*case, "folder") for case in FOLDER_CASES]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("fifo")
    images, replay = write_labelled_folder(root / "data", 3, (96, 64), masks=2)
    run = root / "run"
    summary = label([images], run, replay=replay, processes=False, overlays=False)
    assert summary.succeeded == 3
    (run / "batch").mkdir()
    (run / "batch" / "run.json").write_text("{}", encoding="utf-8")
    (run / "batch" / "jobs.json").write_text('{"run_id": "r", "counter": 0, "jobs": []}', encoding="utf-8")
    return images, replay, run


def _argv(command: str, images: Path, replay: Path, run: Path, tmp: Path) -> list[str]:
    return {
        "label": ["label", str(images), "--out", str(run), "--replay", str(replay), "--no-overlays"],
        "export": ["export", str(run), "--to", str(tmp / "exported"), "--format", "coco"],
        "eval": ["eval", str(run), "--truth", str(tmp / "truth.json")],
        "consensus": ["consensus", str(run), str(run), "--out", str(tmp / "consensus")],
        "report": ["report", str(run), "--out", str(tmp / "report")],
        "overlays": ["overlays", str(run), "--replay", str(replay)],
        "batch status": ["batch", "status", str(run)],
        "batch collect": ["batch", "collect", str(run)],
    }[command]


@pytest.mark.parametrize("command, name, outcome, kind", TABLE, ids=[f"{c}-{n}-{k}" for c, n, _, k in TABLE])
def test_a_fifo_in_place_of_a_run_file_never_hangs(finished, tmp_path, command, name, outcome, kind):
    images, replay, original = finished
    run = tmp_path / "run"
    shutil.copytree(original, run)
    shutil.copy(original / "annotations.json", tmp_path / "truth.json")
    target = run / name
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    said_kind = "FIFO" if kind == "fifo" else "folder"
    argv = [sys.executable, "-m", "visionkit", *_argv(command, images, replay, run, tmp_path), "-q"]
    if command in ("eval", "consensus", "report", "batch status", "batch collect"):
        argv.remove("-q")
    env = dict(os.environ, PYTHONPATH=str(REPO), GEMINI_API_KEY="k")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} waited for ever on the FIFO {name}")
    said = proc.stdout + proc.stderr
    if outcome == "error":
        assert proc.returncode == 2, said
        assert str(target) in proc.stderr and said_kind in proc.stderr, said
        assert "Traceback" not in said
    else:
        assert proc.returncode == 0, said
        if outcome == "noted":
            assert name in said and said_kind in said, said
        else:  # the run wrote the file anew: a regular file now, and the run's data is whole
            assert target.is_file()
            coco = json.loads((run / "annotations.json").read_text(encoding="utf-8"))
            assert len(coco["images"]) == 3
