"""Issue 19, item 9: ``kill -9`` of a label run leaves no process behind.

An offline run of 16 or more images labels on a process pool. Before, killing the run left the
forkserver, the workers and the resource tracker alive for minutes (a worker holds its own call queue's
write end, and the forkserver lives while a worker holds its "alive" pipe). Now each worker watches the
run and ends with it, and the forkserver and the tracker follow. The test kills a real run with SIGKILL
mid-way and counts the processes of its session afterwards, for both start methods the pool picks (with
numpy's thread pool: forkserver; with ``OPENBLAS_NUM_THREADS=1``: fork where the process has one thread).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES, REPO

from visionkit.run.procpool import usable_cpus

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or usable_cpus() < 2,
                                reason="counts a session's processes in /proc; the pool needs 2 CPUs")


def session_processes(sid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every live (not zombie) process in session ``sid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) != sid or fields[0] == "Z":
                continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                found.append((int(name), fh.read().replace(b"\0", b" ").decode(errors="replace")[:120]))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.parametrize("env", [{}, {"OPENBLAS_NUM_THREADS": "1"}], ids=["default", "one-blas-thread"])
def test_kill_9_leaves_no_process_of_the_run(tmp_path, env):
    images, replay = tmp_path / "imgs", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    for i in range(40):  # 12 MP each: the run lasts long enough to be killed mid-way
        shutil.copy(FIXTURES / "images" / "large_4000x3000.jpg", images / f"im{i:02d}.jpg")
        shutil.copy(FIXTURES / "replay" / "large_4000x3000.txt", replay / f"im{i:02d}.txt")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "visionkit", "label", images, "--out", out, "--replay", replay]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(REPO), **env), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sid = proc.pid
    try:
        deadline = time.monotonic() + 120
        while not list((out / "overlays").glob("*.jpg")):  # the workers are at work
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never wrote an overlay"
            time.sleep(0.02)
        before = session_processes(sid)
        assert len(before) >= 3, before  # the run and its workers (and the forkserver and tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10  # "after a few seconds"
        left = session_processes(sid)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = session_processes(sid)
        assert not (out / "annotations.json").exists()  # it was killed mid-way
        assert left == [], f"still alive 10 s after kill -9 of the run: {left} (before: {before})"
    finally:
        for pid, _ in session_processes(sid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.parametrize("pidfd, busy", [(True, False), (False, False), (True, True)],
                         ids=["pidfd", "polling", "pidfd-past-1024"])
def test_the_watch_ends_its_process_when_the_run_ends(pidfd, busy):
    """Both ways a worker watches its run: a pidfd, and (where there is none) polling the pid. A forked
    worker inherits the run's descriptors, so its pidfd can be past select()'s limit of 1024."""
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    hide = "" if pidfd else "del os.pidfd_open; "
    # 1,100 descriptors held open first, as a run with many files open would hand down to a forked worker
    fill = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)); "
            "held = [os.open('/dev/null', os.O_RDONLY) for _ in range(1100)]; ") if busy else ""
    code = f"import os; {hide}{fill}from visionkit.run.procpool import _watch_run; _watch_run({run.pid})"
    watcher = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        time.sleep(1.0)
        assert watcher.poll() is None  # the run is alive: the watch waits
        run.kill()
        run.wait()
        assert watcher.wait(timeout=10) == 1
    finally:
        for proc in (run, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
