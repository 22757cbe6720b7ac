"""atomic_open: the target is replaced whole or not at all; new files get the umask's permissions."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from visionkit.errors import ExportError
from visionkit.media.atomic import atomic_open, write_bytes_atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def test_write_replaces_the_target(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with atomic_open(path) as fh:
        fh.write("héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    assert write_bytes_atomic(path, b"\x00\x01") == path and path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_error_inside_the_block_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_os_error_inside_the_block_is_an_export_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(ExportError, match="out.txt"), atomic_open(path, "wb") as fh:
        fh.write(b"new")
        raise OSError("no space left")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failing_replace_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def failing_replace(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr("visionkit.media.atomic.os.replace", failing_replace)
    with pytest.raises(ExportError, match="rename refused"):
        write_bytes_atomic(path, b"new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_file_gets_the_umask_permissions(tmp_path, umask_027):
    path = write_bytes_atomic(tmp_path / "out.bin", b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask_027


def test_the_process_umask_is_never_changed(tmp_path, monkeypatch, umask_027):
    # Changing the umask, even briefly, races with other threads creating files.
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    write_bytes_atomic(tmp_path / "out.bin", b"x")
    assert calls == []


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    path = tmp_path / "out.txt"
    texts = [str(i) * 10000 for i in range(8)]
    threads = [threading.Thread(target=write_bytes_atomic, args=(path, t.encode())) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass


@pytest.mark.parametrize("durable, syncs", [(True, ["file", "folder"]), (False, [])])
def test_durable_controls_the_fsync_only(tmp_path, monkeypatch, durable, syncs):
    """Overlays skip the fsync (they can be drawn again); everything else syncs the file, then (POSIX) its
    folder, so the rename itself survives a power loss. Either way the write is atomic: the content is
    complete and no temp file is left."""
    import visionkit.media.atomic as atomic

    calls = []
    real = atomic.os.fsync

    def fsync(fd):
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    target = tmp_path / "o.jpg"
    atomic.write_bytes_atomic(target, b"x" * 1000, durable=durable)
    if os.name != "posix":
        syncs = syncs[:1]  # a folder cannot be opened for fsync there
    assert calls == syncs
    assert target.read_bytes() == b"x" * 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["o.jpg"]


# -- issue 19 #12: what JSON cannot hold is an ExportError, and nothing is left on disk --------------------
def _deep(n: int):
    value: list = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("obj, message", [
    ({"x": float("nan")}, "Out of range float values are not JSON compliant"),
    ([1.0, float("inf")], "Out of range float values are not JSON compliant"),
    ({"a": [{"b": -float("inf")}]}, "Out of range float values are not JSON compliant"),
    (_deep(100_000), "nested too deeply"),
    ({"x": {1, 2}}, "not JSON serializable"),
    ({"label": "cup \ud83d"}, "surrogates not allowed"),
])
def test_json_that_cannot_be_written_is_an_export_error_and_no_file(tmp_path, obj, message):
    from visionkit.media.atomic import write_json_atomic

    target = tmp_path / "out.json"
    with pytest.raises(ExportError, match=message):
        write_json_atomic(target, obj)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(ExportError):
        write_json_atomic(target, obj)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and target.read_text() == "old"


def test_finite_floats_and_the_empty_case_are_written(tmp_path):
    from visionkit.media.atomic import write_json_atomic

    for obj in ({}, [], {"x": 1e308, "y": -0.0, "z": [[[]]]}, _deep(200)):
        write_json_atomic(tmp_path / "ok.json", obj)
        assert json.loads((tmp_path / "ok.json").read_text()) == obj


def test_an_atomic_file_whose_write_failed_is_never_put_in_place(tmp_path):
    """A failed write (a full disk) may leave half a piece in the temp file: later writes and close() are
    refused, the temp file goes, and the path keeps what it had."""
    from visionkit.media.atomic import AtomicFile

    target = tmp_path / "tasks.json"
    target.write_bytes(b"old")
    stream = AtomicFile(target)
    stream.write(b"[1")
    good = stream._fh
    (tmp_path / "ro").write_bytes(b"")
    stream._fh = open(tmp_path / "ro", "rb")  # noqa: SIM115 - writes to it fail with an OSError
    with pytest.raises(ExportError, match="cannot write"):
        stream.write(b", 2")
    stream._fh.close()
    stream._fh = good
    with pytest.raises(ExportError, match="an earlier write failed"):
        stream.write(b"]")
    with pytest.raises(ExportError, match="an earlier write failed"):
        stream.close()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "tasks.json"]  # no temp file left
