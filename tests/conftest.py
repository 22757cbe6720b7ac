"""Shared test helpers. ``shared_dir`` points at ../shared/gemini-real when it exists (it does not in a
user's fresh clone); tests that need it skip cleanly otherwise."""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = Path(os.environ.get("VISIONKIT_SHARED", REPO.parent / "shared")) / "gemini-real"
FIXTURES = REPO / "fixtures"


def pytest_configure(config):
    """A suite started in the background by a script (``pytest &``) inherits SIGINT ignored (POSIX: an
    asynchronous list without job control), and so would every CLI run it starts: the Ctrl-C tests' runs
    would then ignore their SIGINT and finish. Give the suite, and so its children, the usual handler."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def real_dir() -> Path:
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real Gemini answers not available ({SHARED_REAL} is absent)")
    return SHARED_REAL


@pytest.fixture(autouse=True)
def _no_api_env(monkeypatch):
    """No test may pick up a developer's real key or endpoint."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL", "VISIONKIT_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _own_model_cache(monkeypatch, tmp_path_factory):
    """No test may read or write the real per-user model cache: each gets its own XDG_CACHE_HOME (outside
    its tmp_path, so tests that list tmp_path see nothing extra)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


def png_b64(prob: np.ndarray, prefix: bool = True) -> str:
    """A uint8 (h, w) or (h, w, c) array as a base64 PNG string, like Gemini's mask field."""
    ok, buf = cv2.imencode(".png", prob)
    assert ok
    data = base64.b64encode(buf.tobytes()).decode("ascii")
    return ("data:image/png;base64," + data) if prefix else data


def disk(h: int, w: int) -> np.ndarray:
    """A uint8 0/255 filled ellipse touching the map's edges: an obvious probability map."""
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 255, -1)
    return m
