"""visionkit consensus: Hungarian matching across runs, vote scores, mask majority, label disagreements,
and a higher AP than any single run on the fixtures."""

from __future__ import annotations

import copy
import io
import itertools
import json

import numpy as np
import pytest
from conftest import FIXTURES
from pycocotools.coco import COCO

import visionkit as vk
from visionkit import ConfigError, Detections, InputError, MaskCrop
from visionkit.cli import main
from visionkit.core.rle import crop_to_rle
from visionkit.quality.consensus import consensus, match
from visionkit.quality.evaluate import evaluate

pytest.importorskip("scipy")
WH = (120, 80)


def run_of(objects, wh=WH, file_name="a.png"):
    """A COCO dataset from (label, x0, y0, x1, y1, masked)."""
    dets = Detections(np.array([o[1:5] for o in objects], float).reshape(-1, 4), [o[0] for o in objects], wh,
                      masks=tuple(MaskCrop(np.ones((o[4] - o[2], o[3] - o[1]), bool), o[1], o[2])
                                  if o[5] else None for o in objects) if objects else None)
    return vk.to_coco([(file_name, wh, dets)])


def scored(dataset):
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    return sorted((names[a["category_id"]], a["bbox"], a["score"]) for a in dataset["annotations"])


def test_match_is_the_optimal_assignment():
    rng = np.random.default_rng(0)
    for _ in range(200):
        r, c = (int(v) for v in rng.integers(0, 5, size=2))
        sim = rng.random((r, c)).round(2)
        pairs = match(sim, 0.4)
        best = 0.0
        for perm in itertools.permutations(range(c), min(r, c)) if r <= c else []:
            best = max(best, sum(sim[i, j] for i, j in enumerate(perm) if sim[i, j] >= 0.4))
        for perm in itertools.permutations(range(r), c) if r > c else []:
            best = max(best, sum(sim[i, j] for j, i in enumerate(perm) if sim[i, j] >= 0.4))
        assert sum(sim[i, j] for i, j in pairs) == pytest.approx(best)
        assert all(sim[i, j] >= 0.4 for i, j in pairs)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})


def test_hungarian_beats_greedy():
    """IoU x-A 0.6 > y-A 0.56 > x-B 0.45 (y-B 0.04): greedy takes x-A and leaves y alone; the optimal
    matching gives x to B and y to A."""
    base = run_of([("cup", 10, 0, 50, 40, False), ("cup", 35, 0, 75, 40, False)])  # A, B
    other = run_of([("cup", 20, 0, 60, 40, False), ("cup", 0, 0, 38, 40, False)])  # x, y
    ds, report = consensus([base, other], iou=0.45)
    assert report["votes"] == {"2": 2} and [a["score"] for a in ds["annotations"]] == [1.0, 1.0]


def test_scores_are_vote_fractions_and_boxes_medians():
    a = run_of([("cup", 10, 10, 50, 50, False), ("plate", 60, 10, 110, 70, False)])
    b = run_of([("cup", 12, 10, 52, 50, False), ("plate", 60, 12, 110, 72, False)])
    c = run_of([("cup", 14, 10, 54, 50, False), ("spoon", 0, 60, 20, 80, False)])
    ds, report = consensus([a, b, c])
    assert scored(ds) == [("cup", [12.0, 10.0, 40.0, 40.0], 1.0), ("plate", [60.0, 11.0, 50.0, 60.0], 0.6667),
                          ("spoon", [0.0, 60.0, 20.0, 20.0], 0.3333)]
    assert report["votes"] == {"1": 1, "2": 1, "3": 1} and report["label_disagreements"] == []


def test_mask_majority_on_crops():
    wh = (30, 10)
    crops = [MaskCrop(np.ones((10, 10), bool), x, 0) for x in (0, 2, 4)]  # columns 0-9, 2-11, 4-13
    runs = [vk.to_coco([("a.png", wh, Detections(np.array([[c.x0, 0, c.x0 + 10, 10]], float), ["cup"], wh,
                                                 masks=(c,)))]) for c in crops]
    ds, _ = consensus(runs)
    (ann,) = ds["annotations"]
    m = COCO()
    m.dataset = ds
    m.createIndex()
    cols = np.flatnonzero(m.annToMask(ann).any(axis=0))
    assert (cols.min(), cols.max()) == (2, 11)  # in at least two of three
    assert ann["area"] == 100


def test_label_disagreement_reported_per_object():
    runs = [run_of([("cup", 10, 10, 50, 50, True), ("plate", 60, 10, 110, 70, True)]),
            run_of([("mug", 10, 10, 50, 50, True), ("plates", 60, 10, 110, 70, True)]),
            run_of([("cups", 10, 10, 50, 50, True), ("plate", 60, 10, 110, 70, True)])]
    ds, report = consensus(runs, names=["r1", "r2", "r3"])
    (d,) = report["label_disagreements"]  # plate/plates is one label after normalisation
    assert d == {"file_name": "a.png", "object": 0, "label": "cup", "labels": {"cup": 1, "cups": 1, "mug": 1},
                 "runs": ["r1", "r2", "r3"]}
    assert sorted(c["name"] for c in ds["categories"]) == ["cup", "plate"]


def test_missing_image_does_not_count_against_objects():
    a = run_of([("cup", 10, 10, 50, 50, False)])
    b = run_of([("cup", 10, 10, 50, 50, False)])
    c = run_of([], file_name="b.png")  # this run never saw a.png
    ds, report = consensus([a, b, c])
    assert [i["file_name"] for i in ds["images"]] == ["a.png", "b.png"]
    assert [x["score"] for x in ds["annotations"]] == [1.0]


def test_empty_and_bad_inputs(tmp_path):
    ds, report = consensus([run_of([]), run_of([])])
    assert ds["annotations"] == [] and report["objects"] == 0
    with pytest.raises(ConfigError, match="at least two"):
        consensus([run_of([])])
    with pytest.raises(ConfigError, match="iou"):
        consensus([run_of([]), run_of([])], iou=0)
    with pytest.raises(InputError, match="a.png: has different sizes"):
        consensus([run_of([]), run_of([], wh=(80, 120))])
    with pytest.raises(InputError, match="does not exist"):
        consensus([run_of([]), tmp_path / "missing"])


# -- the fixtures: runs that drop and add objects -------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    """Three runs over the fixtures: each drops a different third of the objects and adds two false
    positives per image at its own random places. So every object is in two runs, each mistake in one."""
    root = tmp_path_factory.mktemp("runs")
    vk.label([FIXTURES / "images"], root / "base", task="segment", replay=FIXTURES / "replay", overlays=False)
    base = json.loads((root / "base" / "annotations.json").read_text())
    runs = []
    for k in range(3):
        run = copy.deepcopy(base)
        run["annotations"] = [a for n, a in enumerate(base["annotations"]) if n % 3 != k]
        rng = np.random.default_rng(100 + k)
        for image in run["images"]:
            wh = (image["width"], image["height"])
            for _ in range(2):
                s = int(min(wh) * 0.15)
                x, y = int(rng.integers(0, wh[0] - s)), int(rng.integers(0, wh[1] - s))
                run["annotations"].append({
                    "id": 10_000 + len(run["annotations"]), "image_id": image["id"], "category_id": 1,
                    "bbox": [x, y, s, s], "area": s * s, "iscrowd": 0,
                    "segmentation": crop_to_rle(MaskCrop(np.ones((s, s), bool), x, y), wh)})
        path = root / f"run{k}"
        path.mkdir()
        (path / "annotations.json").write_text(json.dumps(run))
        runs.append(path)
    return runs


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_consensus_ap_beats_every_single_run(fixture_runs, iou_type, tmp_path):
    truth = FIXTURES / "truth.json"
    single = [evaluate(r, truth, iou_type=iou_type)["summary"]["AP"] for r in fixture_runs]
    stdout = io.StringIO()
    assert main(["consensus", *map(str, fixture_runs), "--out", str(tmp_path / "c")], stdout=stdout,
                stderr=io.StringIO()) == 0
    assert "label disagreements" in stdout.getvalue()
    merged = evaluate(tmp_path / "c", truth, iou_type=iou_type)
    print(f"{iou_type}: single-run AP {[round(a, 3) for a in single]}, consensus AP "
          f"{merged['summary']['AP']:.3f}")
    assert merged["summary"]["AP"] > max(single) + 0.05
    assert not any("no score" in n for n in merged["notes"])  # consensus scores: a real ranking
    ds = json.loads((tmp_path / "c" / "annotations.json").read_text())
    report = json.loads((tmp_path / "c" / "consensus.json").read_text())
    assert report["votes"]["2"] == 30 and report["votes"]["1"] == 48  # every object twice, each FP once
    # a valid results file too: pycocotools loads it against its own dataset
    coco = COCO()
    coco.dataset = ds
    coco.createIndex()
    assert len(coco.loadRes(vk.to_results(ds, "segm")).anns) == sum(
        isinstance(a["segmentation"], dict) for a in ds["annotations"])


def _consensus_cli(*args):
    stderr = io.StringIO()
    code = main(["consensus", *map(str, args)], stdout=io.StringIO(), stderr=stderr)
    return code, stderr.getvalue()


@pytest.mark.parametrize("how", ["folder", "file", "spelled differently", "with --overwrite"])
def test_out_never_replaces_an_input_run(tmp_path, how):
    runs = []
    for k, objects in enumerate([[("cup", 10, 10, 50, 50, True)], [("cup", 12, 10, 50, 52, True)]]):
        runs.append(tmp_path / f"run{k}")
        runs[-1].mkdir()
        (runs[-1] / "annotations.json").write_text(json.dumps(run_of(objects)))
    before = [(r / "annotations.json").read_bytes() for r in runs]
    inputs = [r / "annotations.json" for r in runs] if how == "file" else runs
    out = tmp_path / "run1" / ".." / "run0" if how == "spelled differently" else runs[0]
    extra = ["--overwrite"] if how == "with --overwrite" else []
    code, err = _consensus_cli(*inputs, "--out", out, *extra)
    assert code == 2 and "would replace the input" in err and "Traceback" not in err
    assert [(r / "annotations.json").read_bytes() for r in runs] == before
    assert not (runs[0] / "consensus.json").exists()


def test_existing_annotations_need_overwrite(tmp_path):
    runs = []
    for k in range(2):
        runs.append(tmp_path / f"run{k}")
        runs[-1].mkdir()
        (runs[-1] / "annotations.json").write_text(json.dumps(run_of([("cup", 10, 10, 50, 50 + k, True)])))
    other = tmp_path / "run_not_given"  # a third run, left out by mistake: its dataset is not replaced
    other.mkdir()
    (other / "annotations.json").write_text("{\"precious\": true}")
    code, err = _consensus_cli(*runs, "--out", other)
    assert code == 2 and "already exists; pass --overwrite" in err
    assert (other / "annotations.json").read_text() == "{\"precious\": true}"

    merged = tmp_path / "merged"
    assert _consensus_cli(*runs, "--out", merged) == (0, "")  # a new folder: written
    first = _undated(merged / "annotations.json")
    (merged / "annotations.json").write_text("{}")
    code, err = _consensus_cli(*runs, "--out", merged)  # a rerun into it: refused, file untouched
    assert code == 2 and "--overwrite" in err and (merged / "annotations.json").read_text() == "{}"
    assert _consensus_cli(*runs, "--out", merged, "--overwrite") == (0, "")
    assert _undated(merged / "annotations.json") == first


def _undated(path):
    """The dataset without its creation time (two runs a second apart differ only there)."""
    data = json.loads(path.read_text())
    data.get("info", {}).pop("date_created", None)
    return data
