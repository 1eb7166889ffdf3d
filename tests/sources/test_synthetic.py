"""The synthetic camera: ground truth matches what is drawn."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stream_detect.sources.synthetic import LABELS, SyntheticScene, SyntheticSource, _Shape


def shape(kind: int, x: float, y: float, radius: float, thickness: int = -1) -> _Shape:
    return _Shape(kind, x, y, radius, 0.0, 0.0, 0.0, 0.0, (250, 250, 250), thickness)


def test_boxes_are_tight_to_visible_pixels() -> None:
    scene = SyntheticScene(320, 240, seed=1)
    scene._shapes = [shape(0, 100, 100, 30), shape(1, 220, 120, 40, thickness=3)]
    image, truth = scene.render()
    circle, square = truth
    assert circle.label == "circle" and square.label == "square"
    assert all(abs(a - b) <= 1 for a, b in zip(circle.box, (70, 70, 131, 131), strict=True))
    half = 40 / np.sqrt(2)
    outline = 1.5 + 1  # half the line width outside the corners, and the exclusive max
    expected = (220 - half - outline, 120 - half - outline, 220 + half + outline, 120 + half + outline)
    assert all(abs(a - b) <= 1 for a, b in zip(square.box, expected, strict=True)), square.box
    x0, y0, x1, y1 = circle.box
    assert image[(y0 + y1) // 2, (x0 + x1) // 2].min() > 200  # the filled shape is where its box says


def test_hidden_and_departed_shapes_are_not_listed() -> None:
    scene = SyntheticScene(320, 240, seed=2)
    scene._shapes = [
        shape(0, 100, 100, 20),          # covered by the next one
        shape(1, 100, 100, 60),
        shape(2, -50, 120, 30),          # entirely outside
        shape(0, 336, 120, 30),          # mostly outside: less than 30% visible
    ]
    _, truth = scene.render()
    assert [t.label for t in truth] == ["square"]


def test_scene_moves_and_is_reproducible() -> None:
    first = [SyntheticScene(160, 120, seed=5).next_frame()[0] for _ in range(2)]
    assert np.array_equal(first[0], first[1])
    scene = SyntheticScene(160, 120, seed=5)
    a, truth_a = scene.next_frame()
    for _ in range(10):
        b, truth_b = scene.next_frame()
    assert not np.array_equal(a, b)
    assert {t.label for t in truth_a + truth_b} <= set(LABELS)


def test_random_frames_are_reproducible_and_cut_by_the_edge_as_camera_frames_are() -> None:
    scene, again = SyntheticScene(320, 180, seed=3), SyntheticScene(320, 180, seed=3)
    centres_outside = boxes_at_edge = 0
    previous = None
    for _ in range(60):
        image, truth = scene.random_frame()
        assert np.array_equal(image, again.random_frame()[0])
        assert previous is None or not np.array_equal(image, previous)
        previous = image
        assert all(0 <= t.box[0] < t.box[2] <= 320 and 0 <= t.box[1] < t.box[3] <= 180 for t in truth)
        boxes_at_edge += sum(t.box[0] == 0 or t.box[1] == 0 or t.box[2] == 320 or t.box[3] == 180 for t in truth)
        # entering and leaving, the camera's shapes have their centres outside the frame too
        centres_outside += sum(not (0 <= s.x < 320 and 0 <= s.y < 180) for s in scene._shapes)
    assert centres_outside > 0 and boxes_at_edge > 0


@pytest.mark.timeout(20)
def test_source_paces_frames_and_ends_after_its_count() -> None:
    reader = SyntheticSource("s", 160, 120, fps=20, seed=0, frames=10).open()
    started = time.monotonic()
    frames = list(reader)
    elapsed = time.monotonic() - started
    assert len(frames) == 10 and frames[0].image.shape == (120, 160, 3)
    assert 0.4 < elapsed < 2.0
    assert frames[-1].pts == pytest.approx(9 / 20)
