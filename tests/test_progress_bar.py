"""The progress line: every number labelled, fitted to the terminal width, and shown from the start."""

from __future__ import annotations

import pytest

from visionkit.cli._report import format_bar
from visionkit.run.pipeline import Progress

FULL = "[#######.............] 3/8 images · 3 ok · 0 failed · 1 cached · 2 retries · 2 in flight · ETA 00:05"


@pytest.mark.parametrize("progress, width, expected", [
    (Progress(8, 3, 0, 1, 2, 3.0, in_flight=2), 200, FULL),
    # narrower: the bar goes first, then in flight, retries and cached
    (Progress(8, 3, 0, 1, 2, 3.0, in_flight=2), 80,
     "3/8 images · 3 ok · 0 failed · 1 cached · 2 retries · 2 in flight · ETA 00:05"),
    (Progress(8, 3, 0, 1, 2, 3.0, in_flight=2), 60, "3/8 images · 3 ok · 0 failed · 1 cached · ETA 00:05"),
    (Progress(8, 3, 0, 1, 2, 3.0, in_flight=2), 45, "3/8 images · 3 ok · 0 failed · ETA 00:05"),
    (Progress(8, 3, 0, 1, 2, 3.0, in_flight=2), 20, "3/8 images · 3 ok ·"),
    # before the first image finishes: no ETA yet
    (Progress(8, 0, 0, 0, 0, 0.5, in_flight=4), 200,
     "[....................] 0/8 images · 0 ok · 0 failed · 0 cached · 0 retries · 4 in flight · ETA --:--"),
    # empty run and long runs
    (Progress(0, 0, 0, 0, 0, 0.0), 200,
     "[....................] 0/0 images · 0 ok · 0 failed · 0 cached · 0 retries · 0 in flight · ETA --:--"),
    (Progress(10, 1, 0, 0, 0, 500.0), 200,
     "[##..................] 1/10 images · 1 ok · 0 failed · 0 cached · 0 retries · 0 in flight · "
     "ETA 1:15:00"),
])
def test_format_bar(progress, width, expected):
    line = format_bar(progress, progress.retries, width)
    assert line == expected
    assert len(line) <= max(width - 1, 10)
