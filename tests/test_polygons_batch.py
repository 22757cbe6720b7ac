"""crops_to_polygons (many crops, vectorised shapely) against crop_to_polygons (one crop), the oracle; and
the YOLO label files fsynced together (SyncBatch)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from visionkit.core.maskcrop import MaskCrop
from visionkit.core.polygons import crop_to_polygons, crops_to_polygons
from visionkit.media.atomic import SyncBatch

crops = st.builds(MaskCrop, arrays(np.bool_, st.tuples(st.integers(0, 14), st.integers(0, 14))),
                  st.integers(0, 40), st.integers(0, 40))


@settings(max_examples=150, deadline=None)
@given(st.lists(crops, max_size=8))
def test_many_crops_equal_one_crop_at_a_time(batch):
    ours, theirs = Counter(), Counter()
    assert crops_to_polygons(batch, report=ours) == [crop_to_polygons(c, report=theirs) for c in batch]
    assert ours == theirs  # specks dropped, counted the same


@pytest.mark.parametrize("data", [
    np.zeros((0, 0), bool), np.zeros((3, 4), bool), np.ones((1, 1), bool), np.ones((1, 5), bool),
    np.eye(6, dtype=bool), ~np.eye(6, dtype=bool), np.pad(np.ones((3, 3), bool), 2),  # holes, diagonal
    np.kron(np.eye(3, dtype=bool), np.ones((2, 2), bool)),  # parts touching at corners (invalid rings)
])
def test_edge_crops(data):
    batch = [MaskCrop(data, 5, 7), MaskCrop(np.ones((4, 9), bool), 0, 0), MaskCrop(data, 0, 0)]
    assert crops_to_polygons(batch) == [crop_to_polygons(c) for c in batch]


def test_sync_batch_writes_atomically_and_syncs(tmp_path):
    batch = SyncBatch()
    for i in range(5):
        batch.write_bytes(tmp_path / "labels" / f"{i}.txt", f"0 {i}\n".encode())
    batch.sync()
    assert sorted(os.listdir(tmp_path / "labels")) == [f"{i}.txt" for i in range(5)]  # no temp files
    assert (tmp_path / "labels" / "3.txt").read_bytes() == b"0 3\n"
    batch.sync()  # nothing left to sync: a no-op
