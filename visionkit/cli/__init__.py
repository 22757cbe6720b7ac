"""Command line: ``visionkit COMMAND ...``. The only package that prints.

Each command lives in its own module here and contributes ``add_parser(subparsers)``, which registers its
arguments and sets ``func`` (``func(args, stdout, stderr) -> int``) as the parser default. Exit status:
0 when every image succeeded, 1 when any image failed, 2 for a usage or configuration error (nothing was
labelled), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .. import __version__
from ..errors import VisionkitError
from ..pipeline import Aborted
from . import batch, consensus, eval, export, label, overlays, report
from ._warnings import plain_warnings

__all__ = ["main", "build_parser"]

#: The modules that add a command, in the order ``--help`` lists them.
COMMANDS = (label, batch, consensus, eval, export, report, overlays)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionkit",
                                     description="Turn Gemini's answers about images into datasets.")
    parser.add_argument("--version", action="version", version=f"visionkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point of the ``visionkit`` command. Returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    log, handler, level = logging.getLogger("visionkit"), None, None
    if getattr(args, "verbose", False):
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        level = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    try:
        with plain_warnings(stderr):
            return args.func(args, stdout, stderr)
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
    finally:
        if handler is not None:
            log.removeHandler(handler)
            log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
