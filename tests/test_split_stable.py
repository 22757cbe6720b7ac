"""Export splits are per image: adding images to a run never moves the images already split."""

from __future__ import annotations

import pytest

from visionkit.formats.export import assign_splits


def _names(start, stop):
    return [f"photos/IMG_{i:04d}.jpg" for i in range(start, stop)]


@pytest.mark.parametrize("split", [{"val": 0.2}, {"val": 0.1, "test": 0.1}, {"test": 0.5}])
@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("before, after", [(100, 101), (100, 200), (1, 50), (0, 10)])
def test_growing_run_never_moves_existing_images(split, seed, before, after):
    old = assign_splits(_names(0, before), split, seed)
    new = assign_splits(_names(0, after), split, seed)
    assert {name: new[name] for name in old} == old
    # and removing images never moves the rest either
    assert assign_splits(_names(before, after), split, seed) == {n: new[n] for n in _names(before, after)}


def test_raising_a_fraction_only_moves_images_out_of_train():
    names = _names(0, 500)
    small, big = assign_splits(names, {"val": 0.1}, 7), assign_splits(names, {"val": 0.3}, 7)
    moved = {n for n in names if small[n] != big[n]}
    assert moved and all(small[n] == "train" and big[n] == "val" for n in moved)
    assert all(big[n] == "val" for n in names if small[n] == "val")


def test_seed_changes_the_split_and_ratios_hold_per_seed():
    names = _names(0, 5000)
    splits = [assign_splits(names, {"val": 0.2}, seed) for seed in range(3)]
    assert splits[0] != splits[1] != splits[2]
    for got in splits:  # 5000 * 0.2 = 1000, standard deviation ~28
        assert abs(sum(v == "val" for v in got.values()) - 1000) < 120


@pytest.mark.parametrize("name", ["a.jpg", "日本/寿司 🍣.png", "x" * 300, ""])
def test_same_name_and_seed_give_the_same_split_alone_or_in_a_crowd(name):
    alone = assign_splits([name], {"val": 0.5}, 4)[name]
    assert assign_splits([name, *_names(0, 300)], {"val": 0.5}, 4)[name] == alone
