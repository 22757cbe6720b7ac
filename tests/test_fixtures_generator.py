"""fixtures/make_fixtures.py: the committed fixtures are what the generator makes (byte for byte, or pixel
for pixel where encoders differ between library versions), the answers it
writes rebuild (the published way) into masks that match the ground truth, and truth.json is valid COCO."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GENERATED = ("images", "replay", "truth.json", "README.md")
PNG_PREFIX = "data:image/png;base64,"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    return mod


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for name in GENERATED:
        p = root / name
        for f in ([p] if p.is_file() else sorted(p.rglob("*"))):
            if f.is_file():
                out[f.relative_to(root).as_posix()] = f.read_bytes()
    return out


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((FIXTURES / "truth.json").read_text("utf-8"))


def _answer(path: Path) -> tuple[str, str]:
    """(model text without thought parts, finishReason or 'TEXT' for a bare .txt answer)."""
    if path.suffix == ".txt":
        return path.read_text("utf-8"), "TEXT"
    resp = json.loads(path.read_text("utf-8"))
    cand = resp["candidates"][0]
    text = "".join(p["text"] for p in cand["content"]["parts"] if not p.get("thought") and "text" in p)
    return text, cand["finishReason"]


def _items(text: str) -> tuple[list[dict], bool]:
    """The complete items of the answer's JSON list and whether the list was closed (not truncated)."""
    m = re.search(r"```json\s*\n", text)
    start = text.index("[", m.end() if m else 0)
    dec = json.JSONDecoder()
    pos, items = start + 1, []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return items, True
        try:
            item, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return items, False
        items.append(item)


def _recipe_mask(item: dict, w: int, h: int) -> np.ndarray:
    """The published recipe: int box, PIL bilinear resize of the PNG to it, paste, > 127."""
    ymin, xmin, ymax, xmax = item["box_2d"]
    y0, x0, y1, x1 = int(ymin / 1000 * h), int(xmin / 1000 * w), int(ymax / 1000 * h), int(xmax / 1000 * w)
    png = Image.open(io.BytesIO(base64.b64decode(item["mask"][len(PNG_PREFIX):])))
    assert png.size == (256, 256) and png.mode == "L"
    canvas = np.zeros((h, w), np.uint8)
    canvas[y0:y1, x0:x1] = np.asarray(png.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR))
    return canvas > 127


def _polygon_mask(item: dict, w: int, h: int) -> np.ndarray:
    pts = np.array([[x / 1000 * w, y / 1000 * h] for y, x in item["mask"]])
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


_PNG_B64 = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _png_pixels(match: re.Match) -> str:
    """A base64 PNG in an answer -> a digest of its pixels (PNG bytes vary with the zlib version)."""
    try:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(match.group(1)), np.uint8), cv2.IMREAD_UNCHANGED)
    except ValueError:
        img = None
    if img is None:  # the deliberately truncated mask
        return "PNG:partial"
    return f"PNG:{img.shape}:{hash(img.tobytes())}"


def _same_content(name: str, a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal content where encoders may differ across library versions."""
    if a == b:
        return True
    suffix = Path(name).suffix
    if suffix in (".png", ".jpg"):
        x = np.asarray(Image.open(io.BytesIO(a)), np.int16)
        y = np.asarray(Image.open(io.BytesIO(b)), np.int16)
        if x.shape != y.shape:
            return False
        # PNG is lossless: exact. JPEG decoders/encoders may differ by rounding only.
        return bool((x == y).all()) if suffix == ".png" else float(np.abs(x - y).mean()) < 1.0
    if suffix in (".txt", ".json"):
        return _PNG_B64.sub(_png_pixels, a.decode()) == _PNG_B64.sub(_png_pixels, b.decode())
    return False


def test_regenerate_gives_the_committed_fixtures(tmp_path):
    gen = _load_generator()
    gen.generate(tmp_path)
    committed, fresh = _files(FIXTURES), _files(tmp_path)
    assert sorted(fresh) == sorted(committed)
    changed = [name for name in fresh if not _same_content(name, fresh[name], committed[name])]
    assert not changed, f"stale fixtures, rerun fixtures/make_fixtures.py: {changed}"
    assert sum(len(b) for b in committed.values()) < 3_000_000


def test_answers_rebuild_to_truth(truth):
    cats = {c["id"]: c["name"] for c in truth["categories"]}
    forms_seen = set()
    for img in truth["images"]:
        w, h, stem = img["width"], img["height"], Path(img["file_name"]).stem
        upright = ImageOps.exif_transpose(Image.open(FIXTURES / "images" / img["file_name"]))
        assert upright.size == (w, h)
        anns = [a for a in truth["annotations"] if a["image_id"] == img["id"]]
        gt = [(cats[a["category_id"]], mask_utils.decode(a["segmentation"]).astype(bool)) for a in anns]
        (answer,) = [p for p in (FIXTURES / "replay").glob(stem + ".*")]
        text, finish = _answer(answer)
        items, closed = _items(text)
        assert closed == (finish != "MAX_TOKENS"), stem
        assert len(items) == len(gt) - (0 if closed else 1), stem
        matched = set()
        for item in items:
            mask = item["mask"]
            if isinstance(mask, list):
                forms_seen.add("polygon")
                assert 3 <= len(mask) <= 60
                pred, need = _polygon_mask(item, w, h), 0.90
            elif mask.startswith(PNG_PREFIX):
                forms_seen.add("png")
                pred, need = _recipe_mask(item, w, h), 0.95
            else:
                forms_seen.add("seg")
                assert re.fullmatch(r"<start_of_mask>(<seg_\d+>)+", mask)
                continue
            ious = [_iou(pred, m) for _, m in gt]
            best = int(np.argmax(ious))
            assert ious[best] >= need, (stem, item["label"], ious[best])
            assert gt[best][0] == item["label"] and best not in matched, (stem, item["label"])
            matched.add(best)
    assert forms_seen == {"png", "polygon", "seg"}


def test_exif_image_is_stored_rotated(truth):
    (img,) = [i for i in truth["images"] if "exif" in i["file_name"]]
    raw = Image.open(FIXTURES / "images" / img["file_name"])
    assert raw.getexif().get(0x0112) in (6, 8)
    assert raw.size == (img["height"], img["width"]) != (img["width"], img["height"])
    upright = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"), np.float32)
    # The truth masks sit on the objects of the UPRIGHT image: inside differs clearly from just outside.
    for a in (a for a in truth["annotations"] if a["image_id"] == img["id"]):
        m = mask_utils.decode(a["segmentation"])
        inner = cv2.erode(m, np.ones((9, 9), np.uint8)).astype(bool)
        ring = (cv2.dilate(m, np.ones((25, 25), np.uint8)) - cv2.dilate(m, np.ones((9, 9), np.uint8))) > 0
        assert np.abs(upright[inner].mean(0) - upright[ring].mean(0)).max() > 25, a["id"]


def test_truth_loads_in_pycocotools(truth):
    coco = COCO(str(FIXTURES / "truth.json"))
    assert sorted(coco.getCatIds()) == list(range(1, len(truth["categories"]) + 1))
    assert [c["name"] for c in truth["categories"]] == sorted(c["name"] for c in truth["categories"])
    assert truth["licenses"] == [] and "info" in truth
    for ann in coco.loadAnns(coco.getAnnIds()):
        info = coco.imgs[ann["image_id"]]
        m = coco.annToMask(ann)
        assert m.shape == (info["height"], info["width"])
        assert ann["area"] == float(m.sum()) and ann["iscrowd"] == 0
        assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(ann["segmentation"])]
