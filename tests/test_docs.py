"""The README stays a page a newcomer can use, and its commands and links stay true (issue 16, item 7).
The docs/ site's own links are checked by `mkdocs build --strict` in .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI = (REPO / ".ci" / "run").read_text(encoding="utf-8")


def _bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    return [line for block in blocks for line in block.splitlines()]


def test_readme_is_short():
    assert len(README.encode()) <= 20_000, "the README is a front page; move detail into docs/"


def test_first_screen_shows_the_online_path():
    first_screen = "\n".join(README.splitlines()[:50])
    assert "GEMINI_API_KEY" in first_screen
    assert "visionkit label photos/" in first_screen and "--batch" in first_screen


def test_quick_start_commands():
    lines = _bash_lines(README)
    offline = "visionkit label fixtures/images --out out --task segment --replay fixtures/replay"
    assert f"pip install . && {offline}" in lines
    assert 'pip install ".[test]" && pytest' in lines


def test_ci_runs_the_readme_test_command_verbatim():
    marker = "# --- the README's test command, verbatim ---\n"
    assert marker in CI
    command = CI.split(marker, 1)[1].splitlines()[0]
    assert command in _bash_lines(README)


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "the README links to its docs pages"
    missing = [t for t in local if t and not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
