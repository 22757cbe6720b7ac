"""Damaged and hand-edited runs and COCO files: ``export``, ``eval``, ``consensus`` and ``report`` end in a
clean error (an InputError naming the file, the index and the field), never a traceback.

Table tests give the cases of issue 19 (item 4) through the CLI; hypothesis then damages a valid run at
random (a value replaced by a hostile one, a key deleted; 1 to 3 edits) and checks that nothing but a
VisionkitError comes out of the four commands. The budget is fixed (``max_examples``, no deadline, no
example database, ``derandomize``), a few seconds in all.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import visionkit as vk
from visionkit.cli import main
from visionkit.core.maskcrop import MaskCrop
from visionkit.errors import InputError, VisionkitError
from visionkit.formats.coco_stream import CocoFile
from visionkit.formats.export import export_dataset
from visionkit.quality.consensus import consensus
from visionkit.quality.evaluate import evaluate
from visionkit.quality.report import build_report

FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
WH = (40, 30)


def _base() -> dict:
    """A valid run: an RLE mask, a polygon mask, a box-only object, a score; two images."""
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:10] = True
    dets = vk.Detections(np.array([[2, 3, 16, 14], [20, 5, 30, 20]], float), ["cup", "plate"], WH,
                         scores=np.array([0.9, 0.5]), masks=(MaskCrop(mask, 2, 3), None))
    ds = vk.to_coco([("a.png", WH, dets), ("sub/b.png", WH, dets)])
    ds["annotations"][1]["segmentation"] = [[20.0, 5.0, 30.0, 5.0, 30.0, 20.0]]  # a polygon
    return ds


BASE = _base()


def _write_run(folder: Path, dataset, *, raw: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotations.json").write_bytes(raw if raw is not None else json.dumps(dataset).encode())
    images = folder.parent / "images"
    if not images.is_dir():
        (images / "sub").mkdir(parents=True)
        for name in ("a.png", "sub/b.png"):
            Image.new("RGB", WH, (200, 30, 30)).save(images / name)
    (folder / "sources.json").write_text(json.dumps({"version": 1, "images": {
        n: str(images / n) for n in ("a.png", "sub/b.png")}}))
    return folder


# -- the cases, through the CLI --------------------------------------------------------------

def _edit(path: str, value=..., delete: bool = False) -> dict:
    ds = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = ds
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    if delete:
        del node[key]
    else:
        node[key] = value
    return ds


CASES = [  # (name, dataset, what the error names)
    ("height x", _edit("images.0.height", "x"), "images[0].height"),
    ("missing width", _edit("images.1.width", delete=True), "images[1].width"),
    ("null image", _edit("images.0", None), "images[0]"),
    ("number image", _edit("images.1", 7), "images[1]"),
    ("null annotation", _edit("annotations.0", None), "annotations[0]"),
    ("number annotation", _edit("annotations.1", 3), "annotations[1]"),
    ("null category", _edit("categories.0", None), "categories[0]"),
    ("number category", _edit("categories.1", 2.5), "categories[1]"),
    ("bbox as a string", _edit("annotations.0.bbox", "1,2,3,4"), "annotations[0].bbox"),
    ("RLE counts not RLE", _edit("annotations.0.segmentation.counts", "\x7f\x7f"),
     "annotations[0].segmentation.counts"),
    ("RLE counts a number", _edit("annotations.0.segmentation.counts", 12),
     "annotations[0].segmentation.counts"),
    ("RLE size wrong", _edit("annotations.0.segmentation.size", [30]), "annotations[0].segmentation.size"),
    ("RLE runs too short", _edit("annotations.0.segmentation.counts", [5, 5]),
     "annotations[0].segmentation.counts"),
    ("segmentation a string", _edit("annotations.1.segmentation", "poly"), "annotations[1].segmentation"),
    ("unknown image_id", _edit("annotations.0.image_id", 99), "annotations[0].image_id"),
    ("category_id null", _edit("annotations.1.category_id", None), "annotations[1].category_id"),
    ("images not a list", _edit("images", {"a": 1}), "images"),
    ("file_name escapes", _edit("images.0.file_name", "../../victim.png"), "images[0].file_name"),
    ("file_name absolute", _edit("images.0.file_name", "/tmp/victim.png"), "images[0].file_name"),
    ("duplicate image id", _edit("images.1.id", 1), "images[1].id"),
]


def _commands(run: Path, other: Path, tmp: Path) -> dict[str, list[str]]:
    return {"export coco": ["export", str(run), "--to", str(tmp / "coco"), "--format", "coco"],
            "export yolo": ["export", str(run), "--to", str(tmp / "yolo"), "--format", "yolo"],
            "eval": ["eval", str(run), "--truth", str(other / "annotations.json"), "--out",
                     str(tmp / "eval.json")],
            "eval truth": ["eval", str(other), "--truth", str(run / "annotations.json"), "--out",
                           str(tmp / "eval2.json")],
            "consensus": ["consensus", str(other), str(run), "--out", str(tmp / "merged")],
            "report": ["report", str(run), "--out", str(tmp / "report")]}


@pytest.mark.parametrize("name, dataset, field", CASES, ids=[c[0] for c in CASES])
def test_damaged_run_is_one_clear_error(tmp_path, name, dataset, field):
    run = _write_run(tmp_path / "bad", dataset)
    good = _write_run(tmp_path / "good", BASE)
    truth = copy.deepcopy(BASE)
    for ann in truth["annotations"]:
        ann.pop("score")
    (good / "annotations.json").write_text(json.dumps(truth))
    for command, argv in _commands(run, good, tmp_path / "out").items():
        err = io.StringIO()
        code = main(argv, stdout=io.StringIO(), stderr=err)
        text = err.getvalue()
        assert code == 2 and "Traceback" not in text, (command, text)
        assert str(run / "annotations.json") in text and field in text, (command, text)
    assert not (tmp_path / "out" / "coco").exists() or not any((tmp_path / "out" / "coco").rglob("*.json"))


@pytest.mark.parametrize("raw, expected", [
    (b"", "not a readable JSON"), (b"[]", "results list"), (b"{\"images\": [", "not valid JSON"),
    (b"\xff\xfe{}", "JSON"), (b"17", "expected a COCO dataset object"), (b"{}", "images"),
    (json.dumps(BASE).encode()[:-40], "not valid JSON"), (b'{"images": [], "annotations": 5}', "annotations"),
])
def test_file_level_damage(tmp_path, raw, expected):
    run = _write_run(tmp_path / "bad", None, raw=raw)
    with pytest.raises(InputError, match=expected):
        CocoFile(run)
    err = io.StringIO()
    assert main(["report", str(run)], stdout=io.StringIO(), stderr=err) == 2
    assert "Traceback" not in err.getvalue() and str(run / "annotations.json") in err.getvalue()


def test_rle_counts_that_do_not_add_up_fail_that_image_only(tmp_path):
    """Counts of the right alphabet that cover the wrong number of pixels are found when decoded: the
    export lists that image as failed and exports the other; eval names the file, index and field."""
    bad = copy.deepcopy(BASE)
    bad["annotations"][2]["segmentation"] = {"size": [30, 40], "counts": "0"}  # image 2's mask
    run = _write_run(tmp_path / "bad", bad)
    summary = export_dataset(run, tmp_path / "coco")
    assert summary.images == {"train": 1} and [f["file"] for f in summary.failures] == ["sub/b.png"]
    assert "annotations[2].segmentation" in summary.failures[0]["error"]
    with pytest.raises(InputError, match=r"annotations\[2\]\.segmentation"):
        evaluate(run, BASE)


# -- hypothesis: random damage ------------------------------------------------------------------------

HOSTILE = [None, "x", "", -1, 0, 1, 2**31, 10**20, 1e308, -0.5, 1.5, True, [], {}, [1, 2], "1,2,3,4",
           {"size": [30, 40], "counts": "x"}, {"size": [30, 40], "counts": [1, 2]}, {"size": [30, 40]},
           {"counts": "abc"}, [[1, 2, 3]], [[0, 0, 10, 0, 10, 10]], [[0, "a", 1, 1, 2, 2]], "../x.png",
           "/abs.png", "a\x00b", [None], [[]], {"size": "30x40", "counts": "PPY1"}, float("inf")]
hostile_st = st.one_of(st.sampled_from(HOSTILE), st.integers(-2**40, 2**40),
                       st.floats(allow_nan=False), st.text(max_size=6))


def _slots(node, out):
    """Every (container, key) in a JSON tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append((node, key))
        _slots(value, out)
    return out


@st.composite
def damaged_st(draw):
    ds = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(ds, [])
        node, key = slots[draw(st.integers(0, len(slots) - 1))]
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(hostile_st)
    return ds


_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    _write_run(root / "good", BASE)
    return root


def _only_visionkit_errors(call):
    """Run ``call``: it may raise a VisionkitError, and nothing else (any other exception fails the test)."""
    with contextlib.suppress(VisionkitError):
        call()


@FUZZ
@given(damaged_st())
def test_fuzz_export(fuzz_root, ds):
    run = _write_run(fuzz_root / f"run{next(_counter)}", ds)
    _only_visionkit_errors(lambda: export_dataset(run, run / "coco", format="coco"))
    _only_visionkit_errors(lambda: export_dataset(run, run / "yolo", format="yolo"))


@FUZZ
@given(damaged_st())
def test_fuzz_eval(fuzz_root, ds):
    run = _write_run(fuzz_root / f"run{next(_counter)}", ds)
    _only_visionkit_errors(lambda: evaluate(run, fuzz_root / "good"))
    _only_visionkit_errors(lambda: evaluate(fuzz_root / "good", run / "annotations.json", iou_type="bbox"))


@FUZZ
@given(damaged_st())
def test_fuzz_consensus_and_report(fuzz_root, ds):
    run = _write_run(fuzz_root / f"run{next(_counter)}", ds)
    _only_visionkit_errors(lambda: consensus([fuzz_root / "good", run]))
    _only_visionkit_errors(lambda: build_report(run, out=run / "report", workers=1))


@FUZZ
@given(damaged_st())
def test_fuzz_dict_sources(ds):
    """The same checks for an already loaded dict."""
    _only_visionkit_errors(lambda: evaluate(ds, BASE))
    _only_visionkit_errors(lambda: evaluate(BASE, ds))
