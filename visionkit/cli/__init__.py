"""Command line: ``visionkit COMMAND ...``. The only package that prints.

Each command lives in its own module here and contributes ``add_parser(subparsers)``, which registers its
arguments and sets ``func`` (``func(args, stdout, stderr) -> int``) as the parser default. Exit status:
0 when every image succeeded, 1 when any image failed (or the reader of the output closed the pipe),
2 for a usage or configuration error (nothing was labelled), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .._version import __version__
from ..errors import VisionkitError
from ..run.pipeline import Aborted
from . import batch, consensus, eval, export, label, models, overlays, report
from ._help import ENVIRONMENT_AND_EXIT, HelpFormatter
from ._warnings import plain_warnings

__all__ = ["main", "build_parser"]

#: The modules that add a command, in the order ``--help`` lists them.
COMMANDS = (label, batch, consensus, eval, export, report, overlays, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionkit", formatter_class=HelpFormatter,
                                     description="Turn Gemini's answers about images into datasets.",
                                     epilog=ENVIRONMENT_AND_EXIT)
    parser.add_argument("--version", action="version", version=f"visionkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    for command in sub.choices.values():  # every command: defaults shown, plain text
        command.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point of the ``visionkit`` command. Returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_native_logs(verbose=getattr(args, "verbose", False))
    log, handler, level = logging.getLogger("visionkit"), None, None
    if getattr(args, "verbose", False):
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        level = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    try:
        with plain_warnings(stderr):
            code = args.func(args, stdout, stderr)
        stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return code
    except VisionkitError as exc:
        stderr.write(f"visionkit: error: {exc}\n")
        return 2
    except Aborted as exc:
        stderr.write(f"visionkit: aborted; {exc.in_flight} requests in flight were abandoned, every saved "
                     "response is kept; rerun the same command to resume\n")
        if argv is None:  # the process is ours: don't wait for the abandoned requests' threads
            for stream in (stdout, stderr):
                stream.flush()
            os._exit(130)
        return 130
    except KeyboardInterrupt:
        stderr.write("visionkit: interrupted; rerun the same command to resume\n")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``visionkit export ... | head -1``): stop quietly. Pointing
        # stdout at devnull keeps the interpreter's final flush from raising again, as the Python docs do:
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        if stdout is sys.stdout:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stdout.fileno())
        return 1
    finally:
        if handler is not None:
            log.removeHandler(handler)
            log.setLevel(level)


def _quiet_native_logs(verbose: bool) -> None:
    """OpenCV's C++ log lines (``[ WARN:0@...] grfmt_png.cpp ...``) bypass Python and -q; visionkit reports
    every failure they describe itself, so they are kept to errors (all of them with -v)."""
    level = "INFO" if verbose else "ERROR"
    os.environ.setdefault("OPENCV_LOG_LEVEL", level)  # read when cv2 is first imported
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # already imported (in-process callers): set it directly
        with contextlib.suppress(AttributeError):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_INFO if verbose
                                          else cv2.utils.logging.LOG_LEVEL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
