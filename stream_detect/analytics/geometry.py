"""Plane geometry on numpy arrays: anchors, point-in-polygon, sides of a line, units to pixels.

Coordinates are image pixels: x grows to the right, y grows downward.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .settings import Units


def anchors(xyxy: np.ndarray) -> np.ndarray:
    """Where each box's object stands: the bottom centre.

    Args:
        xyxy: ``(N, 4)`` boxes ``(xmin, ymin, xmax, ymax)``.

    Returns:
        ``(N, 2) float64`` points ``(x, y)``.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


def to_pixels(points: Sequence[Sequence[float]], units: Units, width: int, height: int) -> np.ndarray:
    """``(K, 2) float64`` pixel coordinates of ``points`` given in ``units`` for a ``width x height`` frame."""
    array = np.asarray(points, np.float64).reshape(-1, 2)
    if units == "px":
        return array
    return array * np.array([width, height], np.float64)


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each point lies inside ``polygon`` (even-odd rule, vectorised over points and edges).

    A point exactly on an edge may fall either way; the zones' inertia is what
    makes a border safe to stand on.

    Args:
        points: ``(N, 2)`` points.
        polygon: ``(K, 2)`` corners, K >= 3, in order (either winding).

    Returns:
        ``(N,) bool``.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros(0, bool)
    x, y = pts[:, 0:1], pts[:, 1:2]  # (N, 1) against (K,) edges
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (x < crossing_x)
    return np.asarray(crossings.sum(axis=1) % 2 == 1)


def inside_any(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """``(N,) bool``: whether each point lies inside at least one of ``polygons``."""
    result = np.zeros(len(points), bool)
    for polygon in polygons:
        result |= inside_polygon(points, polygon)
    return result


def side_of_line(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed distance-like value of each point from the line A->B: positive on the ``in`` side.

    ``in`` is the direction of A->B turned 90 degrees counter-clockwise as seen
    on screen. With y growing downward that normal is ``(dy, -dx)``: for a line
    drawn from the top (A) to the bottom (B) of the frame, the right side is
    ``in``, so moving left to right crosses inwards.

    Returns:
        ``(N,) float64``: ``> 0`` in, ``< 0`` out, ``0`` on the line.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    dx, dy = b[0] - a[0], b[1] - a[1]
    return np.asarray((pts[:, 0] - a[0]) * dy - (pts[:, 1] - a[1]) * dx)


def crosses_segment(start: np.ndarray, end: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the move ``start -> end`` (on opposite sides of the line AB) passes within the segment AB.

    The point where the move meets the line AB must lie between A and B (ends included).
    """
    side_start = float(side_of_line(start, a, b)[0])
    side_end = float(side_of_line(end, a, b)[0])
    if side_start == side_end:
        return False
    t = side_start / (side_start - side_end)
    meet = start + t * (end - start)
    direction = b - a
    along = float(np.dot(meet - a, direction) / np.dot(direction, direction))
    return 0.0 <= along <= 1.0


class PixelGeometry:
    """Polygons and segments converted to pixels for one frame size, recomputed when the size changes.

    Args:
        shapes: Per name, the points and their units.
    """

    def __init__(self, shapes: Sequence[tuple[Sequence[Sequence[float]], Units]]) -> None:
        self._shapes = list(shapes)
        self._size: tuple[int, int] | None = None
        self._pixels: list[np.ndarray] = []

    def for_size(self, width: int, height: int) -> list[np.ndarray]:
        """The shapes in pixels of a ``width x height`` frame, in the order given."""
        if self._size != (width, height):
            self._pixels = [to_pixels(points, units, width, height) for points, units in self._shapes]
            self._size = (width, height)
        return self._pixels
