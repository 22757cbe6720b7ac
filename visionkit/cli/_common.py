"""Argument helpers shared by several commands (a command never imports another command)."""

from __future__ import annotations

import argparse

from ..draw.overlay_files import DEFAULT_OVERLAY_FORMAT, DEFAULT_OVERLAY_MAX_SIDE, OVERLAY_FORMATS

__all__ = ["add_overlay_arguments", "positive_int"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def add_overlay_arguments(p: argparse.ArgumentParser) -> None:
    """``--overlay-format`` and ``--overlay-max-side`` (shared by ``label`` and ``overlays``)."""
    p.add_argument("--overlay-format", choices=tuple(OVERLAY_FORMATS), default=DEFAULT_OVERLAY_FORMAT,
                   help=f"overlay file format (default {DEFAULT_OVERLAY_FORMAT}: ~10x faster to write and ~6x"
                        " smaller than png)")
    p.add_argument("--overlay-max-side", type=int, default=DEFAULT_OVERLAY_MAX_SIDE, metavar="PX",
                   help="shrink the image so its longest side is at most PX before drawing the overlay; "
                        f"0 = full size (default {DEFAULT_OVERLAY_MAX_SIDE})")
