"""The public surface is explicit: __all__ lists the public names, and importing has no side effects."""

from __future__ import annotations

import subprocess
import sys

import visionkit
from visionkit import errors


def test_all_is_sorted_and_resolves():
    assert visionkit.__all__ == sorted(visionkit.__all__)
    for name in visionkit.__all__:
        assert getattr(visionkit, name) is not None


def test_every_error_derives_from_the_root():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.VisionkitError)
        assert getattr(visionkit, name) is getattr(errors, name)


def test_import_is_light_and_quiet():
    lazy = ("requests", "visionkit.gemini", "visionkit.draw.overlay", "visionkit.run.pipeline")
    code = f"import sys, visionkit; print(sorted(m for m in {lazy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]" and proc.stderr == ""
