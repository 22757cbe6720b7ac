"""Overlay files: formats, shrinking before drawing, detections mapped onto the smaller image, and the
label pipeline's and CLI's overlay options."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from visionkit import parse_response
from visionkit.cli import main
from visionkit.core.detections import Detections
from visionkit.core.maskcrop import MaskCrop
from visionkit.draw.overlay import draw_overlay
from visionkit.draw.overlay_files import OVERLAY_FORMATS, encode_image, scale_detections, write_overlay
from visionkit.errors import ConfigError, ExportError
from visionkit.run.pipeline import label
from visionkit.testing.synthetic import segment_answer, write_labelled_folder


def picture(h=60, w=90) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.resize(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("fmt, pil_format, lossless", [("jpg", "JPEG", False), ("png", "PNG", True),
                                                      ("webp", "WEBP", False)])
def test_each_format_decodes_back_to_the_picture(fmt, pil_format, lossless):
    rgb = picture()
    data = encode_image(rgb, fmt)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == pil_format and im.size == (90, 60)
        back = np.array(im.convert("RGB"))
    if lossless:
        np.testing.assert_array_equal(back, rgb)
    else:
        assert np.abs(back.astype(int) - rgb).mean() < 6
    np.testing.assert_array_equal(rgb, picture())  # reuse=False never touches the input


def test_reuse_may_destroy_the_input_but_encodes_the_same():
    rgb = picture()
    assert encode_image(rgb.copy(), "png", reuse=True) == encode_image(rgb, "png")


@pytest.mark.parametrize("bad", ["jpeg", "PNG", "", "tiff"])
def test_unknown_format_is_refused(bad):
    with pytest.raises(ExportError, match="jpg, png, webp"):
        encode_image(picture(), bad)


def test_non_rgb_array_is_refused():
    with pytest.raises(ExportError, match="uint8"):
        encode_image(np.zeros((4, 4), np.uint8), "jpg")


def dets(image_wh, boxes, crops=None, points=None) -> Detections:
    return Detections(xyxy=np.array(boxes, float).reshape(-1, 4), labels=[f"l{i}" for i in range(len(boxes))],
                      image_wh=image_wh, masks=crops, points=points)


@pytest.mark.parametrize("image_wh, new_wh, boxes, expected", [
    ((100, 50), (50, 25), [], []),                                              # empty
    ((100, 50), (50, 25), [[0, 0, 100, 50]], [[0, 0, 50, 25]]),                 # the whole image
    ((100, 50), (50, 25), [[10, 5, 30, 45]], [[5, 2.5, 15, 22.5]]),
    ((300, 100), (90, 30), [[299, 99, 300, 100]], [[89.7, 29.7, 90, 30]]),      # edge box, non-square
    ((100, 50), (100, 50), [[1, 2, 3, 4]], [[1, 2, 3, 4]]),                     # same size: unchanged
])
def test_scaled_boxes(image_wh, new_wh, boxes, expected):
    got = scale_detections(dets(image_wh, boxes), new_wh)
    assert got.image_wh == new_wh
    np.testing.assert_allclose(got.xyxy, np.array(expected, float).reshape(-1, 4))


def test_scaled_masks_stay_crops_inside_the_image_and_keep_their_shape():
    full = np.zeros((80, 120), bool)
    cv2.ellipse(full.view(np.uint8), (60, 40), (40, 25), 0, 0, 360, 1, -1)
    crop = MaskCrop(full[15:66, 20:101].copy(), 20, 15)
    edge = MaskCrop(np.ones((10, 10), bool), 110, 70)  # touches the right and bottom edges
    d = dets((120, 80), [[20, 15, 101, 66], [110, 70, 120, 80]], crops=(crop, edge))
    small = scale_detections(d, (60, 40))
    assert all(m.fits((60, 40)) for m in small.masks)
    expected = cv2.resize(full.view(np.uint8), (60, 40), interpolation=cv2.INTER_AREA).astype(bool)
    got = small.masks[0].to_full((60, 40))
    assert (got & expected).sum() / (got | expected).sum() > 0.9  # IoU with the shrunk full mask
    assert small.masks[1].xyxy == (55, 35, 60, 40) and small.masks[1].data.all()


def test_scaled_points():
    d = dets((100, 50), [[10, 10, 10, 10]], points=np.array([[10.0, 10.0]]))
    np.testing.assert_allclose(scale_detections(d, (50, 25)).points, [[5.0, 5.0]])


@pytest.mark.parametrize("max_side, expected_wh", [(None, (1024, 768)), (0, (1024, 768)),
                                                   (4096, (1024, 768)), (512, (512, 384))])
def test_write_overlay_shrinks_before_drawing(tmp_path, max_side, expected_wh):
    images, replay = write_labelled_folder(tmp_path, 1, masks=4)
    d = parse_response((replay / "img00000.txt").read_text(), (1024, 768))
    write_overlay(tmp_path / "o.jpg", images / "img00000.jpg", d, fmt="jpg", max_side=max_side)
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.size == expected_wh


def test_full_size_png_overlay_equals_draw_overlay(tmp_path):
    rgb = picture(120, 200)
    d = parse_response(segment_answer(3, seed=5), (200, 120))
    write_overlay(tmp_path / "o.png", rgb, d, fmt="png", max_side=0)
    with Image.open(tmp_path / "o.png") as im:
        np.testing.assert_array_equal(np.array(im), draw_overlay(rgb, d))


def test_bad_max_side_is_refused(tmp_path):
    with pytest.raises(ExportError, match="max side"):
        write_overlay(tmp_path / "o.jpg", picture(), dets((90, 60), []), max_side=-1)


@pytest.mark.parametrize("fmt", list(OVERLAY_FORMATS))
def test_label_writes_the_chosen_format(tmp_path, fmt):
    images, replay = write_labelled_folder(tmp_path / "data", 2, (320, 200), masks=3)
    summary = label([images], tmp_path / "out", replay=replay, overlay_format=fmt, overlay_max_side=100)
    assert summary.ok
    files = sorted((tmp_path / "out" / "overlays").iterdir())
    assert [f.name for f in files] == [f"img0000{i}{OVERLAY_FORMATS[fmt]}" for i in range(2)]
    with Image.open(files[0]) as im:
        assert im.size == (100, 62)


@pytest.mark.parametrize("kwargs, match", [({"overlay_format": "gif"}, "overlay_format"),
                                           ({"overlay_max_side": -5}, "overlay_max_side")])
def test_label_refuses_bad_overlay_options_before_writing(tmp_path, kwargs, match):
    images, replay = write_labelled_folder(tmp_path / "data", 1, (64, 48), masks=1)
    with pytest.raises(ConfigError, match=match):
        label([images], tmp_path / "out", replay=replay, **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_overlay_flags(tmp_path, capsys):
    images, replay = write_labelled_folder(tmp_path / "data", 1, (300, 200), masks=2)
    status = main(["label", str(images), "--out", str(tmp_path / "out"), "--replay", str(replay), "-q",
                   "--overlay-format", "webp", "--overlay-max-side", "150"])
    assert status == 0
    with Image.open(tmp_path / "out" / "overlays" / "img00000.webp") as im:
        assert im.format == "WEBP" and im.size == (150, 100)
    status = main(["label", str(images), "--out", str(tmp_path / "o2"), "--replay", str(replay),
                   "--overlay-max-side", "-1"])
    assert status == 2 and "overlay_max_side" in capsys.readouterr().err
