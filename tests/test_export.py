"""`visionkit export`: run folder -> COCO / YOLO dataset folders, splits, upright copies, round trips."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image
from pycocotools import mask as mask_utils

from visionkit import ExportError
from visionkit.cli import main
from visionkit.core.polygons import crop_to_polygons
from visionkit.formats.export import assign_splits, export_dataset, parse_split
from visionkit.formats.yolo import merge_parts, read_yolo_labels
from visionkit.run.pipeline import label


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = label([FIXTURES / "images"], out, task="segment", replay=FIXTURES / "replay", overlays=False)
    assert summary.ok
    return out


def _cli(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["export", *map(str, args)], stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def _mask(seg, h, w):
    rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else seg
    return mask_utils.decode(rle).astype(bool)


# -- split ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (None, {}), ("", {}), ("val=0.2", {"val": 0.2}), ("val=0.1, test=0.1", {"val": 0.1, "test": 0.1}),
])
def test_parse_split(text, expected):
    assert parse_split(text) == expected


@pytest.mark.parametrize("text, error", [
    ("val", "NAME=FRACTION"), ("val=1.5", "NAME=FRACTION"), ("val=x", "NAME=FRACTION"),
    ("train=0.2", "other than 'train'"), ("val=0.6,test=0.5", "add up"), ("val=0.1,val=0.2", "new word"),
])
def test_parse_split_errors(text, error):
    with pytest.raises(ExportError, match=error):
        parse_split(text)


@pytest.mark.parametrize("n, split, counts", [
    (0, {"val": 0.2}, {}), (5, {}, {"train": 5}),
    (2000, {"val": 0.2}, {"train": 1600, "val": 400}),
    (2000, {"val": 0.25, "test": 0.25}, {"train": 1000, "val": 500, "test": 500}),
])
def test_assign_splits_is_seeded_and_order_free(n, split, counts):
    names = [f"img{i}.jpg" for i in range(n)]
    got = assign_splits(names, split, seed=3)
    assert got == assign_splits(names[::-1], split, seed=3)  # input order does not matter
    got_counts = {s: list(got.values()).count(s) for s in set(got.values())}
    assert set(got_counts) == set(counts)
    for name, expected in counts.items():  # within 4 standard deviations of the binomial
        p = expected / n
        assert abs(got_counts[name] - expected) <= 4 * (n * p * (1 - p)) ** 0.5, got_counts


# -- COCO ----------------------------------------------------------------------------------------------
def test_coco_export_layout_upright_copies_and_same_annotations(run_dir, tmp_path):
    dest = tmp_path / "coco"
    code, out, err = _cli(run_dir, "--to", dest, "--split", "val=0.25", "--seed", "1")
    assert code == 0, err
    assert "8 images (6 train, 2 val), 30 annotations" in out and "1 images re-encoded upright" in out
    src = json.loads((run_dir / "annotations.json").read_text())
    parts = {s: json.loads((dest / "annotations" / f"instances_{s}.json").read_text())
             for s in ("train", "val")}
    assert parts["train"]["categories"] == parts["val"]["categories"] == src["categories"]
    got = {}
    for split, ds in parts.items():
        files = {i["id"]: i for i in ds["images"]}
        for img in ds["images"]:
            with Image.open(dest / "images" / split / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"])
                assert im.getexif().get(0x0112, 1) == 1  # orientation stripped
        for ann in ds["annotations"]:
            img = files[ann["image_id"]]
            got.setdefault(img["file_name"], []).append(ann)
    src_files = {i["id"]: i["file_name"] for i in src["images"]}
    for ann in src["annotations"]:
        mine = got[src_files[ann["image_id"]]].pop(0)
        assert mine["bbox"] == ann["bbox"] and mine["category_id"] == ann["category_id"]
        assert mine["segmentation"] == ann["segmentation"] and mine["area"] == ann["area"]
    assert all(not v for v in got.values())
    # the EXIF-rotated fixture is re-encoded upright; the others are byte-identical copies
    rot = next(s for s in ("train", "val") if (dest / "images" / s / "exif_rot6.jpg").exists())
    with Image.open(dest / "images" / rot / "exif_rot6.jpg") as im, \
            Image.open(FIXTURES / "images" / "exif_rot6.jpg") as orig:
        assert orig.getexif().get(0x0112) == 6 and im.size == orig.size[::-1]
    same = next(s for s in ("train", "val") if (dest / "images" / s / "wide_640x480.jpg").exists())
    assert (dest / "images" / same / "wide_640x480.jpg").read_bytes() == \
        (FIXTURES / "images" / "wide_640x480.jpg").read_bytes()


def test_coco_export_polygons_fill(run_dir, tmp_path):
    s = export_dataset(run_dir, tmp_path / "d", polygons=True, polygon_holes="fill")
    ds = json.loads((tmp_path / "d" / "annotations" / "instances_train.json").read_text())
    assert s.annotations == len(ds["annotations"]) == 30
    assert all(isinstance(a["segmentation"], list) for a in ds["annotations"])
    assert s.report["holes_filled"] == 5


# -- YOLO ----------------------------------------------------------------------------------------------
def test_yolo_segment_round_trip_within_1px(run_dir, tmp_path):
    dest = tmp_path / "yolo"
    code, out, err = _cli(run_dir, "--to", dest, "--format", "yolo")
    assert code == 0, err
    assert "as yolo-segment" in out and "holes_filled 5" in out
    yaml = (dest / "data.yaml").read_text()
    src = json.loads((run_dir / "annotations.json").read_text())
    names = [c["name"] for c in src["categories"]]
    assert 'train: "images/train"' in yaml and "nc: 5" in yaml and '  4: "寿司 🍣"' in yaml
    by_image = {}
    for ann in src["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    checked = 0
    for img in src["images"]:
        stem = img["file_name"].rsplit(".", 1)[0]
        text = (dest / "labels" / "train" / f"{stem}.txt").read_text()
        wh = (img["width"], img["height"])
        back = read_yolo_labels(text, wh, names)
        anns = by_image.get(img["id"], [])
        assert len(back) == len(anns)
        for i, ann in enumerate(anns):
            assert back.labels[i] == names[ann["category_id"] - 1]
            x, y, w, h = ann["bbox"]
            # the polygon lies in the bbox (to 1e-6 of normalised rounding)
            assert (back.xyxy[i, :2] >= np.array([x, y]) - 1e-3).all()
            assert (back.xyxy[i, 2:] <= np.array([x + w, y + h]) + 1e-3).all()
            truth = _mask(ann["segmentation"], img["height"], img["width"])
            tb = truth[int(y):int(y + h), int(x):int(x + w)]
            expected, _ = crop_to_polygons(type(back.masks[i])(np.ascontiguousarray(tb), int(x), int(y)))
            ring = np.asarray(text.splitlines()[i].split()[1:], float).reshape(-1, 2) * wh
            for poly in expected:  # every vertex of every part is on the YOLO ring, within 1 px
                pts = np.asarray(poly).reshape(-1, 2)
                dist = np.sqrt(((pts[:, None] - ring[None]) ** 2).sum(-1)).min(axis=1)
                assert dist.max() < 1.0
            filled = back.mask(i)  # against the mask with its holes filled (YOLO has no holes)
            truth_filled = _mask(expected, img["height"], img["width"]) | truth
            iou = (filled & truth_filled).sum() / (filled | truth_filled).sum()
            assert iou > 0.95, (img["file_name"], i, iou)
            checked += 1
    assert checked == 30


def test_yolo_detect_boxes_equal_coco_bboxes(run_dir, tmp_path):
    s = export_dataset(run_dir, tmp_path / "d", format="yolo-detect", split={"val": 0.5}, seed=2)
    assert s.format == "yolo-detect" and s.images == {"train": 4, "val": 4}
    src = json.loads((run_dir / "annotations.json").read_text())
    names = [c["name"] for c in src["categories"]]
    for img in src["images"]:
        stem = img["file_name"].rsplit(".", 1)[0]
        label_file = next((tmp_path / "d" / "labels").glob(f"*/{stem}.txt"))
        back = read_yolo_labels(label_file.read_text(), (img["width"], img["height"]), names)
        anns = [a for a in src["annotations"] if a["image_id"] == img["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        assert np.abs(back.xyxy - boxes).max(initial=0) < 0.01
    assert 'val: "images/val"' in (tmp_path / "d" / "data.yaml").read_text()


@pytest.mark.parametrize("parts", [
    [np.array([[0, 0], [4, 0], [4, 4], [0, 4]])],
    [np.array([[0, 0], [4, 0], [4, 4], [0, 4]]), np.array([[10, 0], [12, 0], [12, 2], [10, 2]])],
    [np.array([[0, 0], [4, 0], [4, 4], [0, 4]]), np.array([[10, 0], [12, 0], [12, 2], [10, 2]]),
     np.array([[0, 10], [3, 10], [3, 13], [0, 13]])],
])
def test_merge_parts_keeps_every_vertex_and_area(parts):
    import cv2

    ring = merge_parts(parts)
    assert sum(len(p) for p in parts) + 2 * (len(parts) - 1) == len(ring)
    canvas = np.zeros((20, 20), np.uint8)
    cv2.fillPoly(canvas, [np.round(ring * 16).astype(np.int32)], 1, shift=4)
    separate = np.zeros((20, 20), np.uint8)
    cv2.fillPoly(separate, [np.round(p * 16).astype(np.int32) for p in parts], 1, shift=4)
    # zero-width bridges; OpenCV (and so Ultralytics) fills edge pixels, so a bridge shows as a 1-px line
    bridges = sum(np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min() for a, b in zip(parts, parts[1:]))
    assert canvas.sum() >= separate.sum()
    assert canvas.sum() - separate.sum() <= 2 * (bridges + len(parts))


def test_detect_run_exports_yolo_detect_and_box_polygons(tmp_path):
    out = tmp_path / "run"
    assert label([FIXTURES / "images"], out, task="detect", replay=FIXTURES / "replay", overlays=False).ok
    s = export_dataset(out, tmp_path / "d", format="yolo")
    assert s.format == "yolo-detect"
    files = (tmp_path / "d" / "labels" / "train").iterdir()
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == s.annotations > 20 and all(len(line.split()) == 5 for line in lines)
    s = export_dataset(out, tmp_path / "s", format="yolo-segment")
    assert s.report["box_only"] == s.annotations


# -- points, categories, several runs, errors ----------------------------------------------------------
def _point_run(tmp_path, name="a.png"):
    images, replay = tmp_path / "in", tmp_path / "replay"
    images.mkdir(exist_ok=True)
    replay.mkdir(exist_ok=True)
    Image.new("RGB", (300, 200)).save(images / name)
    (replay / (name.rsplit(".", 1)[0] + ".txt")).write_text(json.dumps(
        [{"point": [500, 250], "label": "handle"}, {"box_2d": [0, 0, 500, 500], "label": "mug"}]))
    out = tmp_path / f"run-{name}"
    assert label([images / name], out, task="detect", replay=replay, overlays=False).ok
    return out


def test_points_become_keypoints_in_coco_and_are_reported_for_yolo(tmp_path):
    run = _point_run(tmp_path)
    code, out, _ = _cli(run, "--to", tmp_path / "c")
    assert code == 0 and "1 points written as COCO keypoints" in out
    kp = json.loads((tmp_path / "c" / "annotations" / "keypoints_train.json").read_text())
    assert [a["keypoints"] for a in kp["annotations"]] == [[75.0, 100.0, 2]]
    assert kp["categories"][0]["keypoints"] == ["point"]
    code, out, _ = _cli(run, "--to", tmp_path / "y", "--format", "yolo")
    assert code == 0 and "1 points (pointing answers) are not in the yolo-detect labels" in out


def test_categories_file_fixes_ids_and_reports_unmapped(run_dir, tmp_path):
    cats = tmp_path / "names.txt"
    cats.write_text("plate\ncup\n")
    code, out, _ = _cli(run_dir, "--to", tmp_path / "d", "--categories", cats, "--format", "yolo-detect")
    assert code == 0
    assert "dropped" in out and "'napkin'" in out and "'spoon'" in out
    assert '0: "plate"' in (tmp_path / "d" / "data.yaml").read_text()
    classes = {line.split()[0] for f in (tmp_path / "d" / "labels" / "train").iterdir()
               for line in f.read_text().splitlines()}
    assert classes == {"0", "1"}


def test_several_runs_merge(tmp_path):
    """(A run given twice, and runs sharing a file name: tests/test_export_edges.py.)"""
    a, b = _point_run(tmp_path, "a.png"), _point_run(tmp_path, "b.png")
    s = export_dataset([a, b], tmp_path / "d")
    assert s.images == {"train": 2} and s.annotations == 2 and s.points_written == 2


def test_errors_name_the_problem(run_dir, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = _cli(run_dir, "--to", tmp_path / "full")
    assert code == 2 and "not an empty folder" in err
    code, _, err = _cli(tmp_path / "nothing", "--to", tmp_path / "d")
    assert code == 2 and "annotations.json not found" in err
    with pytest.raises(ExportError, match="format must be one of"):
        export_dataset(run_dir, tmp_path / "d", format="voc")


def test_missing_sources_json_needs_images_and_a_missing_image_fails_alone(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "annotations.json", run)
    with pytest.raises(ExportError, match="sources.json not found; pass the input folder"):
        export_dataset(run, tmp_path / "d")
    images = tmp_path / "images"
    shutil.copytree(FIXTURES / "images", images)
    (images / "square_1024.png").unlink()
    code, out, err = _cli(run, "--to", tmp_path / "d", "--images", images)
    assert code == 1
    assert "FAILED square_1024.png:" in err and "1 images not exported" in out
    assert "7 images (7 train)" in out
    assert not (tmp_path / "d" / "images" / "train" / "square_1024.png").exists()


@pytest.mark.parametrize("ann, expected", [
    ({"bbox": [1, 2, 3, 4], "segmentation": []}, False),
    ({"bbox": [1, 2, 3, 4], "segmentation": [[1, 2, 4, 2, 4, 6, 1, 6]]}, False),   # its own box
    ({"bbox": [1, 2, 3, 4], "segmentation": [[1, 6, 4, 6, 4, 2, 1, 2]]}, False),   # the box, other direction
    ({"bbox": [1, 2, 3, 4], "segmentation": [[1, 2, 4, 2, 4, 6]]}, True),          # a triangle
    ({"bbox": [1, 2, 3, 4], "segmentation": {"size": [9, 9], "counts": "abc"}}, True),
    ({"bbox": [1.5, 2, 3, 4], "segmentation": [[1, 2, 5, 2, 5, 6, 1, 6]]}, False),  # box snapped outward
])
def test_has_mask_tells_box_polygons_from_masks(ann, expected):
    from visionkit.formats.coco_read import has_mask

    assert has_mask(ann) is expected
