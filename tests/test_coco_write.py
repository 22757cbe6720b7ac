"""CocoWriter is the one COCO layout: ``label``'s annotations.json (pre-encoded annotation texts, through
:meth:`CocoWriter.add_encoded`), ``export --format coco`` and ``consensus`` (:meth:`CocoWriter.add`).

The oracle is the layout both writers had before they were one: the dataset of
:func:`visionkit.formats.coco.to_coco` written key by key as they wrote it (images joined by ``", "``,
annotations by ``","``, ``info`` last). Both entry points must give exactly those bytes.
"""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from visionkit.core.detections import Detections
from visionkit.core.maskcrop import MaskCrop
from visionkit.errors import ExportError
from visionkit.formats.coco import CategoryMap, image_annotations, to_coco
from visionkit.formats.coco_write import CocoWriter, encode_annotation


def _blob(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (max(w // 2 - 1, 1), max(h // 2 - 1, 1)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def _images() -> dict[str, list]:
    """Cases: the empty image, an edge box, non-square images, a label outside the categories, text that
    JSON escapes (quotes, non-ASCII)."""
    edge = Detections([[0, 0, 64, 48]], ["cup"], (64, 48), masks=(MaskCrop(_blob(48, 64), 0, 0),))
    wide = Detections([[10, 20, 110, 80], [200, 0, 320, 200], [0, 150, 40, 200]], ["cup", "plate", "ghost"],
                      (320, 200), scores=[0.9, np.nan, 0.5],
                      masks=(MaskCrop(_blob(60, 100), 10, 20), MaskCrop(_blob(200, 120), 200, 0), None))
    tall = Detections([[1, 1, 9, 30]], ['tea "cup"'], (10, 400))
    return {
        "empty": [("a.jpg", Detections.empty((32, 16)))],
        "edge-box": [("edge.jpg", edge)],
        "mixed": [("sub/wide.jpg", wide), ("tall é.png", tall), ("nothing.jpg", Detections.empty((5, 7)))],
        "no-images": [],
    }


def _old_layout(dataset: dict) -> bytes:
    """The bytes the two writers wrote before they were one (see the module docstring)."""
    text = ('{"licenses": [], "images": ['
            + ", ".join(json.dumps(i, ensure_ascii=False) for i in dataset["images"])
            + '], "categories": ' + json.dumps(dataset["categories"], ensure_ascii=False)
            + ', "annotations": ['
            + ",".join(json.dumps(a, ensure_ascii=False) for a in dataset["annotations"])
            + '], "info": ' + json.dumps(dataset["info"], ensure_ascii=False) + "}")
    return text.encode("utf-8")


def _without_date(data: bytes) -> bytes:
    head, _, rest = data.partition(b'"date_created": "')
    return head + rest.partition(b'"')[2]


CATEGORIES = ["cup", "plate", 'tea "cup"']


@pytest.mark.parametrize("case", list(_images()))
@pytest.mark.parametrize("polygons", [False, True])
def test_add_and_add_encoded_write_the_old_layout(tmp_path, case, polygons):
    items = _images()[case]
    expected = to_coco([(n, d.image_wh, d) for n, d in items], CATEGORIES, polygons=polygons)
    with CocoWriter(tmp_path / "add.json", CategoryMap(CATEGORIES), polygons=polygons) as writer:
        for name, dets in items:
            writer.add(name, dets.image_wh, dets)
    encoded = CocoWriter(tmp_path / "encoded.json", CategoryMap(CATEGORIES), unique_names=True)
    report: Counter = Counter()
    for name, dets in items:
        anns = image_annotations(dets, polygons=polygons, report=report)
        encoded.add_encoded(name, dets.image_wh, [encode_annotation(a) for a in anns])
    encoded.report.update(report)
    encoded.close()
    old = _without_date(_old_layout(expected))
    assert _without_date((tmp_path / "add.json").read_bytes()) == old
    assert _without_date((tmp_path / "encoded.json").read_bytes()) == old
    assert writer.annotations == encoded.annotations == len(expected["annotations"])


def test_add_encoded_counts_what_it_wrote_and_what_it_could_not_map(tmp_path):
    writer = CocoWriter(tmp_path / "x.json", CategoryMap(["cup"]))
    assert writer.add_encoded("a.jpg", (4, 3), [("cup", "}"), ("dog", '"bbox": [0, 0, 1, 1]}')]) == 1
    assert writer.add_encoded("b.jpg", (4, 3), []) == 0
    info = writer.close()
    data = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    assert data["annotations"] == [{"id": 1, "image_id": 1, "category_id": 1}]
    assert [i["id"] for i in data["images"]] == [1, 2]
    assert info["visionkit"]["unmapped_labels"] == {"dog": 1}


def test_a_name_given_twice_is_refused_unless_the_caller_vouches_for_them(tmp_path):
    writer = CocoWriter(tmp_path / "x.json", CategoryMap(["cup"]))
    writer.add_encoded("a.jpg", (4, 3), [])
    with pytest.raises(ExportError, match="a.jpg: appears twice"):
        writer.add_encoded("a.jpg", (4, 3), [])
    writer.discard()
    assert not (tmp_path / "x.json").exists() and list(tmp_path.iterdir()) == []


def test_a_file_name_that_is_not_utf8_is_an_export_error_and_leaves_nothing(tmp_path):
    writer = CocoWriter(tmp_path / "x.json", CategoryMap(["cup"]))
    with pytest.raises(ExportError, match="cannot write"):
        writer.add_encoded("bad\udcff.jpg", (4, 3), [])
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_an_image_that_cannot_be_encoded_leaves_the_file_whole(tmp_path):
    """A file name that is not UTF-8 text is refused before anything is spilled, and its unmapped labels
    are not counted: the images after it still make a valid file."""
    cats = CategoryMap(["cup"])
    with CocoWriter(tmp_path / "a.json", cats) as writer:
        writer.add_encoded("ok.jpg", (4, 4), [("cup", "}")])
        with pytest.raises(ExportError, match="bad"):
            writer.add_encoded("bad\udc80.jpg", (4, 4), [("ghost", "}"), ("cup", "}")])
        writer.add_encoded("after.jpg", (4, 4), [("cup", "}")])
        writer.close()
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert [i["file_name"] for i in data["images"]] == ["ok.jpg", "after.jpg"]
    assert [(a["id"], a["image_id"]) for a in data["annotations"]] == [(1, 1), (2, 2)]
    assert writer.unmapped == Counter()


def test_a_failed_spill_write_fails_the_file_instead_of_corrupting_it(tmp_path):
    """Once a spill write fails (a full disk), part of that image may be in the spill: later images are
    refused and close() writes nothing, so no half-image JSON is ever finished."""
    cats = CategoryMap(["cup"])
    writer = CocoWriter(tmp_path / "a.json", cats)
    writer.add_encoded("ok.jpg", (4, 4), [("cup", "}")])
    spill = writer._spill
    (tmp_path / "ro").write_bytes(b"")
    writer._spill = open(tmp_path / "ro", "rb")  # noqa: SIM115 - a spill whose writes fail (an OSError)
    with pytest.raises(ExportError, match="ok2.jpg"):
        writer.add_encoded("ok2.jpg", (4, 4), [("cup", "}")])
    writer._spill.close()
    writer._spill = spill
    with pytest.raises(ExportError, match="writing ok2.jpg failed"):
        writer.add_encoded("ok3.jpg", (4, 4), [("cup", "}")])
    with pytest.raises(ExportError, match="writing ok2.jpg failed"):
        writer.close()
    assert not (tmp_path / "a.json").exists()
