"""Anchors, point-in-polygon, sides of a line and units, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detect.analytics.geometry import (
    PixelGeometry,
    anchors,
    crosses_segment,
    inside_polygon,
    side_of_line,
    to_pixels,
)

SQUARE = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], float)
# An L: the square 0..20 without its top-right quarter.
ELL = np.array([[0, 0], [10, 0], [10, 10], [20, 10], [20, 20], [0, 20]], float)


def test_the_anchor_is_the_bottom_centre() -> None:
    assert anchors(np.array([[10, 20, 30, 60]], np.float32)).tolist() == [[20.0, 60.0]]


@pytest.mark.parametrize(("polygon", "point", "inside"), [
    (SQUARE, (15, 15), True),
    (SQUARE, (5, 15), False),
    (SQUARE, (25, 15), False),
    (SQUARE, (15, 25), False),
    (SQUARE[::-1], (15, 15), True),  # either winding
    (ELL, (5, 5), True),
    (ELL, (15, 5), False),  # the missing quarter of the L
    (ELL, (15, 15), True),
])
def test_point_in_polygon(polygon: np.ndarray, point: tuple[float, float], inside: bool) -> None:
    assert inside_polygon(np.array([point], float), polygon).tolist() == [inside]


def test_point_in_polygon_is_vectorised() -> None:
    points = np.array([[15, 15], [5, 5], [19.9, 19.9], [30, 30]], float)
    assert inside_polygon(points, SQUARE).tolist() == [True, False, True, False]
    assert inside_polygon(np.zeros((0, 2)), SQUARE).tolist() == []


@pytest.mark.parametrize(("a", "b", "in_side_point"), [
    ((320, 0), (320, 360), (400, 100)),   # drawn top to bottom: right is in (the example)
    ((320, 360), (320, 0), (200, 100)),   # bottom to top: left is in
    ((0, 180), (640, 180), (100, 100)),   # left to right: above is in
    ((640, 180), (0, 180), (100, 300)),   # right to left: below is in
])
def test_in_is_a_to_b_turned_counter_clockwise_on_screen(a: tuple[int, int], b: tuple[int, int],
                                                       in_side_point: tuple[int, int]) -> None:
    a_, b_ = np.array(a, float), np.array(b, float)
    assert side_of_line(np.array([in_side_point], float), a_, b_)[0] > 0
    mirrored = 2 * np.array([320, 180]) - np.array(in_side_point)
    assert side_of_line(np.array([mirrored], float), a_, b_)[0] < 0


@pytest.mark.parametrize(("start", "end", "crosses"), [
    ((300, 100), (340, 100), True),
    ((300, 199), (340, 199), True),
    ((300, 250), (340, 250), False),   # below the segment's end: walked around it
    ((300, 100), (340, 300), False),   # meets the line at y=200, just past B
])
def test_a_move_crosses_only_within_the_segment(start: tuple[int, int], end: tuple[int, int], crosses: bool) -> None:
    a, b = np.array([320, 0], float), np.array([320, 199], float)
    assert crosses_segment(np.array(start, float), np.array(end, float), a, b) is crosses


def test_fractions_become_pixels_of_the_current_frame_size() -> None:
    assert to_pixels([[0.5, 1.0]], "fraction", 640, 360).tolist() == [[320, 360]]
    assert to_pixels([[0.5, 1.0]], "px", 640, 360).tolist() == [[0.5, 1.0]]
    geometry = PixelGeometry([([[0.5, 0.5], [1, 1]], "fraction")])
    assert geometry.for_size(640, 360)[0].tolist() == [[320, 180], [640, 360]]
    assert geometry.for_size(1280, 720)[0].tolist() == [[640, 360], [1280, 720]]
