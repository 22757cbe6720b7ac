"""The repository's own text files hold no unresolved merge-conflict markers."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)
SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".yaml", ".yml", ".html", ".js", ".css", ".ipynb", ""}
SKIP = {".git", ".ci-venv", ".ci-tools", ".venv", "build", "dist", "__pycache__", ".pytest_cache",
        ".ruff_cache"}


def _text_files():
    """The repository's text files; skipped folders (a CI virtualenv, caches) are pruned, not walked."""
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix in SUFFIXES:
                yield path


def test_no_merge_conflict_markers():
    found = []
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for m in MARKER.finditer(text):
            found.append(f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not found, f"unresolved merge-conflict markers at {found}"
