"""A process pool for the offline label step, which is CPU-bound.

Measured on 2 cores (200 replayed 1024x768 images, 10 masks each, JPEG overlays): the thread pool ran the
offline step no faster with 2 or 4 threads than with 1 (5.5 s, 5.5 s, 7.9 s), because JSON parsing, Python
bookkeeping and Pillow's text rendering hold the GIL. Processes do run in parallel. The online path keeps
threads: it waits on the network.

Start method: ``fork`` when the calling process has a single OS thread (cheapest: the workers inherit the
imported modules), else ``forkserver`` with :mod:`visionkit.run.pipeline` preloaded, else ``spawn`` (macOS,
Windows); :func:`start_method` says why. A forkserver or spawn worker does not run the caller's script
again (see :func:`_main_script_hidden`). Workers ignore SIGINT: Ctrl-C reaches the parent, which drops the
queued work; the images in flight finish. Workers end as soon as the run process ends, even by ``kill -9``
(:func:`_watch_run`), and with them the forkserver and the resource tracker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["BrokenProcessPool", "RestartingPool", "os_thread_count", "start_method", "usable_cpus"]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def os_thread_count() -> int:
    """Threads in this process as the OS counts them: ``/proc/self/task`` on Linux, which includes the
    native threads of C libraries; elsewhere only the Python threads (:func:`threading.active_count`)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def start_method() -> str:
    """The multiprocessing start method for the pool: ``"fork"``, ``"forkserver"`` or ``"spawn"``.

    ``fork`` only when this process has exactly one OS thread. A forked child holds only the thread that
    forked, with a copy of every other thread's locks and state: it can deadlock on a lock another thread
    held, and a native thread pool it inherits is a broken copy. That includes threads Python never sees
    (:func:`threading.active_count` counts only its own): after ``cv2.resize`` or ``cv2.GaussianBlur`` on
    a large image OpenCV runs a pthread pool, and a forked child that then calls ``cv2.setNumThreads``
    hangs on it for ever. So the OS's count decides. numpy's and OpenCV's bundled OpenBLAS also start a
    pool at import on a multi-core machine, which this count cannot tell apart (OpenBLAS itself is
    fork-safe), so there the pool uses ``forkserver`` unless ``OPENBLAS_NUM_THREADS=1``.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and os_thread_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _context() -> multiprocessing.context.BaseContext:
    method = start_method()
    if method == "forkserver":
        ctx = multiprocessing.get_context("forkserver")
        # replaces the default ['__main__']: the server never imports the caller's script (the workers
        # neither: _main_script_hidden)
        ctx.set_forkserver_preload(["visionkit.run.pipeline"])
        return ctx
    return multiprocessing.get_context(method)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Hide the caller's ``__main__`` (its ``__file__`` and ``__spec__``) from multiprocessing while worker
    processes start, so a forkserver or spawn worker does not import the caller's script again as
    ``__mp_main__``. The workers run only visionkit's functions and never need it, and a script without an
    ``if __name__ == "__main__":`` guard, run again in each worker, started a run of its own there, which
    failed every image (``label`` from a plain script fails no image when forked). Workers start only
    inside :meth:`RestartingPool.submit` (``ProcessPoolExecutor`` starts them on demand there)."""
    main = sys.modules.get("__main__")
    saved = {name: vars(main)[name] for name in ("__file__", "__spec__")
             if main is not None and name in vars(main)}
    try:
        if main is not None:
            main.__spec__ = None
            vars(main).pop("__file__", None)
        yield
    finally:
        if main is not None:
            vars(main).update(saved)
            if "__spec__" not in saved:
                del main.__spec__


def _watch_run(pid: int) -> None:
    """End this worker at once when the run process ``pid`` ends, however it ends (``kill -9`` too).

    A worker blocks on its call queue, whose write end it holds itself, so it never sees the run go; and
    with ``forkserver`` the worker is the forkserver's child, so ``PR_SET_PDEATHSIG`` (which watches the
    direct parent) would not fire. The worker waits on a pidfd of the run instead (Linux 5.3+,
    ``os.pidfd_open``: readable when that process exits; https://man7.org/linux/man-pages/man2/pidfd_open.2.html),
    elsewhere it polls the pid once a second. Once every worker is gone, the forkserver (which lives while
    a holder of its "alive" pipe does) and the resource tracker (while a holder of its pipe does) see EOF
    and exit too, so a killed run leaves no process behind.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)  # the run is already gone
    except (AttributeError, OSError):  # not Linux, or an old kernel
        fd = None
    if fd is not None:
        try:  # poll, not select: a forked worker inherits the run's descriptors, so fd may be >= 1024
            watch = select.poll()
            watch.register(fd, select.POLLIN)
            watch.poll()
            os._exit(1)
        except (OSError, ValueError):
            pass  # fall back to polling the pid
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except OSError:  # EPERM: it exists, owned by someone else (the pid was reused): the run is gone
            os._exit(1)


def _init_worker(initializer: Callable[..., None] | None, initargs: tuple,
                 run_pid: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if run_pid is not None:
        threading.Thread(target=_watch_run, args=(run_pid,), name="visionkit-run-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


class RestartingPool:
    """A :class:`ProcessPoolExecutor` that is replaced by a fresh one when a worker dies (the OOM killer,
    a crash in native code), so one bad image does not end the run. The caller decides what to do with
    the futures that failed with :class:`BrokenProcessPool`."""

    def __init__(self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        self.workers = workers
        self._init = (initializer, initargs)
        self._ctx = _context()
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(*self._init, os.getpid()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        with self._starting():
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool:
                self.restart()
                return self._pool.submit(fn, *args)

    def _starting(self) -> contextlib.AbstractContextManager:
        forked = self._ctx.get_start_method() == "fork"  # a forked worker never imports __main__
        return contextlib.nullcontext() if forked else _main_script_hidden()

    def restart(self) -> None:
        """Replace a broken pool (no-op while the current one works)."""
        if getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
