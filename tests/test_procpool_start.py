"""The process pool forks only a process with one OS thread, counting the native threads Python never sees,
and its forkserver workers never run the caller's script again.

OpenCV's pthread pool (started by ``cv2.resize`` / ``cv2.GaussianBlur`` on a large image) is invisible to
``threading.active_count()``. A worker forked from such a parent holds a broken copy of that pool: the
run itself worked on a 2-core Linux machine, but ``cv2.setNumThreads`` in the worker hung for ever. Each
case runs in a fresh interpreter (the test process runs threads of its own), with a timeout, and kills its
whole process group if it hangs, so no stuck worker outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ON_PROC = Path("/proc/self/task").is_dir()
needs_fork_and_proc = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods() or not ON_PROC,
    reason="needs fork and /proc/self/task (Linux)")
# no OpenBLAS pools (numpy's and the one bundled with OpenCV start one at import on 2+ cores): the
# interpreter then starts with one OS thread, so each case sees only the thread it starts itself
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _run(args: list[str], env: dict[str, str], timeout: float, what: str) -> dict:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and every worker it started
        proc.communicate()
        pytest.fail(f"{what} hung (no answer in {timeout:.0f} s)")
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


DECIDE = """
import ctypes, json, sys, threading
import numpy as np
import cv2
from visionkit.run import procpool

how = sys.argv[1]
if how == "pthread":  # a C-level thread that Python never hears of, parked in pause()
    libc = ctypes.CDLL(None)
    tid = ctypes.c_ulong()
    assert libc.pthread_create(ctypes.byref(tid), None, ctypes.cast(libc.pause, ctypes.c_void_p), None) == 0
elif how == "opencv":  # OpenCV's pthread pool, as after resizing or blurring a photo
    a = np.zeros((3000, 4000, 3), np.uint8)
    for _ in range(4):
        cv2.resize(a, (2000, 1500), interpolation=cv2.INTER_AREA)
        cv2.GaussianBlur(a, (31, 31), 0)
elif how == "python thread":
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
print(json.dumps({"os": procpool.os_thread_count(), "python": threading.active_count(),
                  "method": procpool.start_method()}))
"""


@needs_fork_and_proc
@pytest.mark.parametrize("how, os_threads, python_threads, method", [
    ("nothing", 1, 1, "fork"),
    ("pthread", 2, 1, "forkserver"),
    ("opencv", None, 1, "forkserver"),  # OpenCV starts CPUs - 1 pool threads
    ("python thread", 2, 2, "forkserver"),
])
def test_start_method_counts_os_threads(how, os_threads, python_threads, method):
    got = _run(["-c", DECIDE, how], ONE_BLAS_THREAD, 60, f"deciding the start method ({how})")
    if how == "opencv":
        if got["os"] == 1:
            pytest.skip("OpenCV started no pool thread (one CPU)")
        os_threads = got["os"]
    assert got == {"os": os_threads, "python": python_threads, "method": method}


E2E = """
import json, sys, threading
from pathlib import Path
import numpy as np
import cv2
import visionkit as vk
from visionkit.run import procpool

fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])
a = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
for _ in range(4):  # starts OpenCV's pthread pool, as a notebook that resized a photo would
    cv2.resize(a, (2000, 1500), interpolation=cv2.INTER_AREA)
    cv2.GaussianBlur(a, (31, 31), 0)
threads = [procpool.os_thread_count(), threading.active_count()]
s = vk.label([fixtures / "images"], out, task="segment", replay=fixtures / "replay", concurrency=2,
             processes=True)
pool = procpool.RestartingPool(2)
try:  # a worker forked with a copy of the parent's OpenCV pool hangs here
    pool.submit(cv2.setNumThreads, 1).result()
finally:
    pool.shutdown()
print(json.dumps({"threads": threads, "done": [s.succeeded, s.failed], "method": procpool.start_method()}))
"""


@needs_fork_and_proc
@pytest.mark.parametrize("env", [{}, ONE_BLAS_THREAD], ids=["default", "one-blas-thread"])
def test_label_with_processes_after_opencv_started_its_pool(tmp_path, env):
    """The offline quick start with processes, from a parent whose OpenCV pool runs: every fixture is
    labelled and the workers' OpenCV is sound (they were not forked from the threaded parent)."""
    got = _run(["-c", E2E, str(FIXTURES), str(tmp_path / "out")], env, 120,
               "labelling with processes after OpenCV started its thread pool")
    if got["threads"][0] == 1:
        pytest.skip("OpenCV started no pool thread (one CPU)")
    assert got["threads"][1] == 1  # Python sees no thread: the old check forked here
    assert got["done"] == [8, 0]
    assert got["method"] == "forkserver"
    assert json.loads((tmp_path / "out" / "annotations.json").read_text())["images"]


UNGUARDED = """
import json, sys, threading
import visionkit as vk
from visionkit.run import procpool
from visionkit.testing.synthetic import write_labelled_folder

stop = threading.Event()  # a second thread: the pool uses forkserver on any machine
threading.Thread(target=stop.wait, daemon=True).start()
images, replay = write_labelled_folder(sys.argv[1] + "/data", 6, (96, 64), masks=2)
s = vk.label([images], sys.argv[1] + "/out", replay=replay, concurrency=2, processes=True)
print(json.dumps({"done": [s.succeeded, s.failed], "method": procpool.start_method()}))
"""


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="needs forkserver")
@pytest.mark.parametrize("how", ["script", "module"])
def test_a_script_without_a_main_guard_is_not_run_again_in_the_workers(tmp_path, how):
    """``python label_them.py`` (or ``-m``) with no ``if __name__ == "__main__":`` guard: a forkserver
    worker used to import the script again, start a run of its own there and die, failing every image."""
    (tmp_path / "label_them.py").write_text(UNGUARDED)
    args = [str(tmp_path / "label_them.py")] if how == "script" else ["-m", "label_them"]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    got = _run([*args, str(tmp_path)], env, 120, f"labelling from an unguarded {how}")
    assert got == {"done": [6, 0], "method": "forkserver"}


@pytest.mark.parametrize("raises", [False, True])
def test_the_main_script_is_hidden_only_while_workers_start(raises):
    from visionkit.run.procpool import _main_script_hidden

    main = sys.modules["__main__"]
    before = {name: vars(main).get(name, "absent") for name in ("__file__", "__spec__")}
    with contextlib.suppress(RuntimeError), _main_script_hidden():
        assert main.__spec__ is None and not hasattr(main, "__file__")
        if raises:
            raise RuntimeError("a worker failed to start")
    assert {name: vars(main).get(name, "absent") for name in ("__file__", "__spec__")} == before
