"""``visionkit label INPUT... --out DIR``: the command; its arguments and run live in :mod:`._label`, which
``batch collect`` shares."""

from __future__ import annotations

import argparse

from ._help import ENVIRONMENT_AND_EXIT, HelpFormatter
from ._label import add_label_arguments, run

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit label``."""
    p = sub.add_parser("label", help="label images with Gemini (or recorded answers) into COCO + overlays",
                       description="Label images into DIR/annotations.json (COCO), DIR/overlays/, "
                                   "DIR/responses/ and DIR/failures.json.",
                       epilog=ENVIRONMENT_AND_EXIT, formatter_class=HelpFormatter)
    add_label_arguments(p)
    p.set_defaults(func=run)
