"""Issue 19, items 5, 6 and 8: what ``label`` and ``--dry-run`` do with inputs that are not plain images.

* A FIFO, a socket or a device named ``*.jpg`` is one failed entry with a reason, never a hang (item 5).
* A symbolic link loop or a broken link is one failed entry, not an aborted run (item 6).
* ``.tif``/``.tiff`` and ``.gif`` are read; other image formats found in a folder are counted in one
  notice (item 8).

Every run here is guarded by a watchdog thread: a hang fails the test instead of stopping the suite.
Online runs use FakeGemini on 127.0.0.1, never the real API.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.cli import main
from visionkit.testing import FakeGemini

KEY = "sekrit-kinds-KEY-4242"
GOOD = ("good1.png", "good2.jpg")

# (name, how to make it, words its failure reason must hold)
BAD_KINDS = [
    ("pipe.jpg", lambda p: os.mkfifo(p), "FIFO"),
    ("sock.png", lambda p: _bind_socket(p), "socket"),
    ("zero.jpg", lambda p: os.symlink("/dev/zero", p), "device"),
    ("self.jpg", lambda p: os.symlink(p.name, p), "symbolic link loop"),
    ("ping.jpg", lambda p: (os.symlink("pong.lnk", p), os.symlink("ping.jpg", p.parent / "pong.lnk")),
     "symbolic link loop"),
    ("gone.png", lambda p: os.symlink("nowhere.png", p), "broken symbolic link"),
]
MODES = ["replay", "online", "batch", "dry-run", "dry-run-replay"]
_sockets: list[socket.socket] = []


def _bind_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    _sockets.append(sock)


def run_guarded(*argv, seconds: float = 60.0) -> tuple[int, str, str]:
    """``main(argv)`` in a thread; a run still going after ``seconds`` fails the test (it hung)."""
    out, err = io.StringIO(), io.StringIO()
    result: dict = {}

    def target():
        try:
            result["code"] = main([str(a) for a in argv], stdout=out, stderr=err)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["exc"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"visionkit {' '.join(map(str, argv))} hung for {seconds:g} s")
    if "exc" in result:
        raise result["exc"]
    return result["code"], out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    replay = tmp_path / "replay"
    replay.mkdir()
    rng = np.random.default_rng(5)
    for i, name in enumerate(GOOD):
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(imgs / name)
    for name, make, _ in BAD_KINDS:
        make(imgs / name)
    for name in [*GOOD, *(n for n, _, _ in BAD_KINDS)]:  # every image has an answer: only the file fails
        (replay / f"{Path(name).stem}.txt").write_text('[{"box_2d": [100, 100, 600, 700], "label": "cup"}]')
    yield imgs
    while _sockets:
        _sockets.pop().close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.mark.parametrize("mode", MODES)
def test_a_file_that_is_not_a_regular_image_is_one_failed_entry(folder, server, tmp_path, mode):
    out = tmp_path / "out"
    replay = ("--replay", folder.parent / "replay") if mode.endswith("replay") else ()
    online = () if replay else ("--base-url", server.base_url)
    dry = ("--dry-run",) if mode.startswith("dry-run") else ()
    batch = ("--batch", "--poll-interval", "0.001") if mode == "batch" else ()
    code, stdout, stderr = run_guarded("label", folder, "--out", out, "--task", "detect", *replay, *online,
                                       *dry, *batch)
    if dry:
        assert code == 0, stderr
        planned = {line.split()[1]: line for line in stdout.splitlines()
                   if line.split()[:1] in (["request"], ["replay"], ["fail"])}
        for name, _, words in BAD_KINDS:
            assert planned[name].startswith("fail ") and words in planned[name], planned[name]
        assert all(not planned[name].startswith("fail ") for name in GOOD)
        assert not out.exists()
        return
    assert code == 1, stderr  # some images failed
    failures = {f["file"]: f for f in json.loads((out / "failures.json").read_text())}
    assert sorted(failures) == sorted(n for n, _, _ in BAD_KINDS)
    for name, _, words in BAD_KINDS:
        assert failures[name]["stage"] == "image" and words in failures[name]["reason"], failures[name]
        assert name in failures[name]["reason"]  # the reason names the file
    coco = json.loads((out / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(GOOD)
    assert f"{len(GOOD)}/{len(GOOD) + len(BAD_KINDS)} images labelled" in stdout
    if mode == "online":  # nothing was paid for a file that cannot be read
        assert len(server.generate_requests) == len(GOOD)
    if mode == "batch":
        sent = [r["metadata"]["key"] for c in server.batch.creates
                for r in c.json["batch"]["inputConfig"]["requests"]["requests"]]
        assert sorted(sent) == sorted(Path(n).stem for n in GOOD) and not server.generate_requests
    sources = json.loads((out / "sources.json").read_text())["images"]
    assert sorted(sources) == sorted([*GOOD, *(n for n, _, _ in BAD_KINDS)])


def test_a_fifo_named_directly_is_one_failed_entry(folder, tmp_path):
    named = (folder / "pipe.jpg", folder / "self.jpg", folder / "good1.png")
    code, stdout, stderr = run_guarded("label", *named, "--out", tmp_path / "out", "--task", "detect",
                                       "--replay", folder.parent / "replay")
    assert code == 1 and "1/3 images labelled" in stdout, stderr


def _gif_animated(path: Path) -> None:
    frames = [Image.new("P", (60, 40), i * 40) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


# (name, how to write it): every one is read, labelled and sent
READABLE = [
    ("rgb.tif", lambda p: Image.fromarray(np.full((40, 70, 3), 90, np.uint8)).save(p)),
    ("gray16.tiff", lambda p: Image.fromarray(np.full((50, 30), 40000, np.uint16)).save(p)),
    ("cmyk.tif", lambda p: Image.new("CMYK", (33, 21), (10, 20, 30, 0)).save(p)),
    ("float.tif", lambda p: Image.fromarray(np.linspace(0, 1, 384, dtype="f4").reshape(16, 24)).save(p)),
    ("palette.gif", lambda p: Image.new("P", (45, 31), 7).save(p)),
    ("anim.GIF", _gif_animated),
]


@pytest.mark.parametrize("mode", ["replay", "online"])
def test_tif_and_gif_are_read_and_other_formats_are_counted_once(server, tmp_path, mode):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    replay = tmp_path / "replay"
    replay.mkdir()
    for name, write in READABLE:
        write(imgs / name)
        (replay / f"{Path(name).stem}.txt").write_text('[{"box_2d": [100, 100, 600, 700], "label": "cup"}]')
    for name in ("a.avif", "b.AVIF", "c.svg"):
        (imgs / name).write_bytes(b"not read")
    where = ("--replay", replay) if mode == "replay" else ("--base-url", server.base_url)
    code, stdout, stderr = run_guarded("label", imgs, "--out", tmp_path / "out", "--task", "detect", *where)
    assert code == 0, stdout + stderr
    assert f"{len(READABLE)}/{len(READABLE)} images labelled" in stdout
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in coco["images"]}
    assert sizes == {"rgb.tif": (70, 40), "gray16.tiff": (30, 50), "cmyk.tif": (33, 21),
                     "float.tif": (24, 16), "palette.gif": (45, 31), "anim.GIF": (60, 40)}
    assert len(list((tmp_path / "out" / "overlays").iterdir())) == len(READABLE)
    notes = [line for line in stderr.splitlines() if "image formats visionkit does not read" in line]
    assert len(notes) == 1 and all(w in notes[0] for w in ("skipped 3 files", "2 .avif", "1 .svg"))
    if mode == "online":
        assert len(server.generate_requests) == len(READABLE)
        assert {r.image_mime for r in server.generate_requests} <= {"image/jpeg", "image/png"}


@pytest.mark.parametrize("direct", [False, True])
def test_sources_json_resolves_linked_images_found_by_the_listing(tmp_path, direct):
    """sources.json names where each image really is: a linked image by its target, found from the
    listing's link flags (no lstat per image). Oracle: ``Path.resolve()`` of each input path."""
    from visionkit import label
    from visionkit.testing.synthetic import write_labelled_folder

    images, replay = write_labelled_folder(tmp_path / "data", 3, (40, 30), masks=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (images / "img00001.jpg").rename(elsewhere / "real1.jpg")
    (images / "img00001.jpg").symlink_to(elsewhere / "real1.jpg")
    (images / "sub").mkdir()
    (images / "img00002.jpg").rename(images / "sub" / "img00002.jpg")
    inputs = [images / "img00000.jpg", images / "img00001.jpg", images / "sub" / "img00002.jpg"] if direct \
        else [images]
    summary = label(inputs, tmp_path / "o", replay=replay, processes=False, overlays=False)
    assert summary.succeeded == 3
    sources = json.loads((tmp_path / "o" / "sources.json").read_text(encoding="utf-8"))["images"]
    expected = {"img00000.jpg": images / "img00000.jpg", "img00001.jpg": elsewhere / "real1.jpg",
                ("img00002.jpg" if direct else "sub/img00002.jpg"): images / "sub" / "img00002.jpg"}
    assert sources == {name: str(path.resolve()) for name, path in expected.items()}
