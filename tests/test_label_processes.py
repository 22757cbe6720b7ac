"""The offline step on a process pool gives exactly what the thread pool gives: the same COCO (input
order), failures, warnings and overlays; a worker that dies costs only its own image."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from visionkit.run import pipeline, procpool
from visionkit.run.pipeline import label
from visionkit.testing.synthetic import write_labelled_folder


@pytest.fixture
def folder(tmp_path):
    images, replay = write_labelled_folder(tmp_path / "data", 20, (160, 120), masks=4)
    (replay / "img00003.txt").unlink()                                   # no answer: fails at "answer"
    (replay / "img00007.txt").write_text("I cannot see any objects.")  # no JSON: fails at "parse"
    (replay / "img00011.txt").write_text('[{"box_2d": [0, 0, 500], "label": "x"}, '
                                         '{"box_2d": [0, 0, 500, 500], "label": "ok"}]')  # one bad item
    return images, replay


def _outputs(out):
    ds = json.loads((out / "annotations.json").read_text())
    ds["info"].pop("date_created")
    failures = json.loads((out / "failures.json").read_text())
    return ds, failures, sorted(p.name for p in (out / "overlays").iterdir())


def _run(folder, out, **kw):
    images, replay = folder
    seen = []
    summary = label([images], out, replay=replay, concurrency=2,
                    on_image=lambda r: seen.append((r.file, r.ok, r.stage, [str(w) for w in r.warnings])),
                    **kw)
    return summary, sorted(seen)


def test_processes_and_threads_give_the_same_results(folder, tmp_path):
    s_threads, seen_threads = _run(folder, tmp_path / "t", processes=False)
    s_procs, seen_procs = _run(folder, tmp_path / "p", processes=True)
    assert (s_procs.succeeded, s_procs.failed) == (s_threads.succeeded, s_threads.failed) == (18, 2)
    assert seen_procs == seen_threads
    assert any(w for _, _, _, w in seen_procs)  # the bad item's warning made it back from the worker
    ds_t, fail_t, ov_t = _outputs(tmp_path / "t")
    ds_p, fail_p, ov_p = _outputs(tmp_path / "p")
    assert ds_p == ds_t and fail_p == fail_t and ov_p == ov_t
    expected = [f"img{i:05d}.jpg" for i in range(20) if i not in (3, 7)]
    assert [i["file_name"] for i in ds_p["images"]] == expected
    assert {f["file"]: f["stage"] for f in fail_p} == {"img00003.jpg": "answer", "img00007.jpg": "parse"}
    assert len(ov_p) == 18


@pytest.mark.parametrize("count, processes, expected", [(20, None, True), (15, None, False),
                                                         (20, False, False), (4, True, True)])
def test_when_the_process_pool_is_used(tmp_path, monkeypatch, count, processes, expected):
    if procpool.usable_cpus() < 2 and processes is None:
        pytest.skip("one CPU: auto mode never starts processes")
    made = []

    class Recording(procpool.RestartingPool):
        def __init__(self, *a, **kw):
            made.append(True)
            super().__init__(*a, **kw)

    monkeypatch.setattr(pipeline, "RestartingPool", Recording)
    images, replay = write_labelled_folder(tmp_path / "d", count, (64, 48), masks=1)
    assert label([images], tmp_path / "o", replay=replay, concurrency=2, processes=processes).ok
    assert bool(made) == expected


DEADLY = """
import json, multiprocessing, os, sys
from pathlib import Path
from visionkit.run import image_step, procpool
from visionkit.run.pipeline import label
from visionkit.testing.synthetic import write_labelled_folder

tmp, deadly = Path(sys.argv[1]), set(json.loads(sys.argv[2]))
images, replay = write_labelled_folder(tmp / "data", 20, (160, 120), masks=4)
(replay / "img00003.txt").unlink()
(replay / "img00007.txt").write_text("I cannot see any objects.")
real = image_step.process_one

def killer(path, file_name, key, **kw):
    if file_name in deadly:
        os._exit(9)
    return real(path, file_name, key, **kw)

image_step.process_one = killer  # the step the workers run (offline_step); forked workers inherit the patch
procpool._context = lambda: multiprocessing.get_context("fork")
s = label([images], tmp / "p", replay=replay, concurrency=2, processes=True)
print(json.dumps([s.succeeded, s.failed]))
"""


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize("deadly_files", [{"img00005.jpg"}, {"img00005.jpg", "img00006.jpg", "img00019.jpg"}])
def test_a_worker_that_dies_fails_only_its_image(tmp_path, deadly_files):
    """A worker killed mid-image (as by the OOM killer): the pool is replaced, the other images that
    shared it are retried, and only the image that kills its worker every time fails. Run in a fresh,
    single-threaded interpreter: forking a test process that runs other threads could deadlock."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", DEADLY, str(tmp_path), json.dumps(sorted(deadly_files))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    n = len(deadly_files)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [18 - n, 2 + n]
    failures = {f["file"]: f for f in json.loads((tmp_path / "p" / "failures.json").read_text())}
    assert {f: failures[f]["stage"] for f in deadly_files} == {f: "worker" for f in deadly_files}
    assert all("died" in failures[f]["reason"] for f in deadly_files)
    ds, _, _ = _outputs(tmp_path / "p")
    names = [i["file_name"] for i in ds["images"]]
    assert len(names) == 18 - n and not deadly_files & set(names) and names == sorted(names)
