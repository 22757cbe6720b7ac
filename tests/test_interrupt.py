"""Ctrl-C in online mode, as a user does it: SIGINT to a real `visionkit label` process whose requests are
in flight to a slow FakeGemini."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from visionkit.testing.fake_gemini import FakeGemini

KEY = "AQ.interrupt-test-key"
pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGINT to a child process is POSIX")


class _Run:
    """A CLI run whose stderr lines are collected, with the time each arrived."""

    def __init__(self, args: list[str]):
        env = dict(os.environ, GEMINI_API_KEY=KEY)
        self.proc = subprocess.Popen([sys.executable, "-m", "visionkit", "label", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def line_with(self, text: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines):
                if text in line:
                    return when
            time.sleep(0.01)
        return None

    def finish(self, timeout: float) -> tuple[int, float]:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        self.proc.stdout.close()
        return self.proc.returncode, time.monotonic()

    @property
    def stderr(self) -> str:
        return "".join(line for _, line in self.lines)


def _start(tmp_path: Path, server: FakeGemini) -> tuple[_Run, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        Image.new("RGB", (40 + i, 30)).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    run = _Run([str(photos), "--out", str(out), "--base-url", server.base_url, "--concurrency", "2", "-q"])
    deadline = time.monotonic() + 30
    while len(server.generate_requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.generate_requests) == 2, run.stderr
    time.sleep(0.2)  # both requests are now waiting for the slow answers
    return run, out


def _saved(out: Path) -> list[str]:
    names = []
    for path in sorted((out / "responses").glob("*.json")):
        json.loads(path.read_text())  # never half a file
        names.append(path.stem)
    return names


def test_first_ctrl_c_says_at_once_what_is_in_flight_then_saves_it(tmp_path):
    with FakeGemini(api_key=KEY, latency=2.0) as server:
        run, out = _start(tmp_path, server)
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        said = run.line_with("interrupted: 2 requests in flight", timeout=10)
        code, ended = run.finish(timeout=30)
        requests = len(server.generate_requests)
    assert said is not None, run.stderr
    assert said - sent < 1.0  # at once, not after the answers arrive
    assert code == 130 and "rerun the same command to resume" in run.stderr
    assert ended - said > 0.5  # it waited for the answers in flight ...
    assert requests == 2 and _saved(out) == ["p0", "p1"]  # ... and saved them; nothing new was sent
    assert not (out / "annotations.json").exists()


def test_second_ctrl_c_aborts_the_requests_in_flight(tmp_path):
    with FakeGemini(api_key=KEY, latency=20.0) as server:
        run, out = _start(tmp_path, server)
        run.proc.send_signal(signal.SIGINT)
        assert run.line_with("interrupted: 2 requests in flight", timeout=10) is not None, run.stderr
        again = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        code, ended = run.finish(timeout=30)
        requests = len(server.generate_requests)
    assert code == 130 and "aborted; 2 requests in flight were abandoned" in run.stderr
    assert ended - again < 3.0  # not the 20 s the answers would take
    assert requests == 2 and _saved(out) == []
    assert "Traceback" not in run.stderr
    kept = (".visionkit.lock", "keys.json")
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.name not in kept]
    assert leftovers == []
