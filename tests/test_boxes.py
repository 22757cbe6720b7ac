"""The one Gemini -> pixel conversion, against an obvious per-box oracle."""

from __future__ import annotations

import numpy as np
import pytest

from visionkit.core.boxes import (
    gemini_points_to_xy,
    gemini_polygon_to_xy,
    gemini_to_pixel_box,
    gemini_to_xyxy,
    point_to_box_2d,
    polygon_order,
    xyxy_to_xywh,
)


def oracle_pixel_box(box, width, height):
    ymin, xmin, ymax, xmax = box
    return [int(xmin / 1000 * width), int(ymin / 1000 * height), int(xmax / 1000 * width),
            int(ymax / 1000 * height)]


@pytest.mark.parametrize("boxes, image_wh, xyxy", [
    (np.empty((0, 4)), (640, 480), np.empty((0, 4))),
    ([[0, 0, 1000, 1000]], (640, 480), [[0, 0, 640, 480]]),
    ([[100, 200, 500, 600]], (1000, 500), [[200, 50, 600, 250]]),
    ([[999, 999, 1000, 1000]], (4000, 3000), [[3996, 2997, 4000, 3000]]),
    ([[250, 0, 750, 10]], (3, 7), [[0, 1.75, 0.03, 5.25]]),
])
def test_gemini_to_xyxy(boxes, image_wh, xyxy):
    np.testing.assert_allclose(gemini_to_xyxy(boxes, image_wh), np.asarray(xyxy, float).reshape(-1, 4))


def test_pixel_box_matches_the_recipe_truncation():
    rng = np.random.default_rng(3)
    for _ in range(500):
        width, height = (int(v) for v in rng.integers(1, 5000, 2))
        y = np.sort(rng.integers(0, 1001, 2))
        x = np.sort(rng.integers(0, 1001, 2))
        box = [int(y[0]), int(x[0]), int(y[1]), int(x[1])]
        assert gemini_to_pixel_box([box], (width, height))[0].tolist() == oracle_pixel_box(box, width, height)


def test_points_are_y_first():
    np.testing.assert_allclose(gemini_points_to_xy([[500, 250]], (200, 100)), [[50, 50]])
    assert gemini_points_to_xy(np.empty((0, 2)), (10, 10)).shape == (0, 2)


@pytest.mark.parametrize("points, box, expected", [
    ([[100, 400], [900, 500]], [100, 400, 900, 500], "yx"),
    ([[400, 100], [500, 900]], [100, 400, 900, 500], "xy"),
    ([[500, 500], [600, 600]], [0, 0, 1000, 1000], "yx"),  # tie: y first
    ([[1, 2], [3, 4]], None, "yx"),
])
def test_polygon_order(points, box, expected):
    assert polygon_order(np.asarray(points, float), box) == expected


def test_xyxy_to_xywh():
    np.testing.assert_allclose(xyxy_to_xywh([[1, 2, 4, 8]]), [[1, 2, 3, 6]])
    assert xyxy_to_xywh(np.empty((0, 4))).shape == (0, 4)


def test_full_grid_maps_exactly_onto_the_image_edge():
    # 1000 * (2007 / 1000) is 2007.0000000000002 in float64: the result must still lie inside the image.
    sizes = np.arange(1, 5001)
    for width in sizes:
        wh = (int(width), int(width) + 4)
        xyxy = gemini_to_xyxy([[0, 0, 1000, 1000]], wh)[0]
        assert xyxy[2] <= wh[0] and xyxy[3] <= wh[1]
        np.testing.assert_allclose(xyxy, [0, 0, *wh], rtol=1e-12)
        point = gemini_points_to_xy([[1000, 1000]], wh)[0]
        assert point[0] <= wh[0] and point[1] <= wh[1]


def test_point_to_box_2d_is_degenerate_and_y_first():
    assert point_to_box_2d([250, 750]) == [250.0, 750.0, 250.0, 750.0]
    np.testing.assert_allclose(gemini_to_xyxy([point_to_box_2d([250, 750])], (400, 200)),
                               [[300, 50, 300, 50]])


@pytest.mark.parametrize("order, points", [
    ("yx", [[100, 400], [900, 500], [-5, 1200]]),
    ("xy", [[400, 100], [500, 900], [1200, -5]]),
])
def test_gemini_polygon_to_xy(order, points):
    # The same polygon in either order: x 400..500 of 200 px, y 100..900 of 50 px, clipped to the grid.
    np.testing.assert_allclose(gemini_polygon_to_xy(np.asarray(points), order, (200, 50)),
                               [[80, 5], [100, 45], [200, 0]])


def test_gemini_polygon_to_xy_refuses_an_unknown_order():
    with pytest.raises(ValueError, match="order"):
        gemini_polygon_to_xy([[1, 2]], "ab", (10, 10))
