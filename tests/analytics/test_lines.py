"""Line crossing through the stage: once per track and direction, the right direction, within the segment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stream_detect.analytics import StreamAnalytics

from .helpers import box_at, events_of, moving, run, settings

FPS = 10.0
# From the top (A) to 60% down (B) at x = 320: moving left to right is "in".
GATE: dict[str, object] = {"name": "gate", "points": [[0.5, 0], [0.5, 0.6]]}


Path = Callable[[float], tuple[float, float]]


def crossings(path: Path, seconds: float = 6.0, line: dict[str, object] = GATE) -> list[tuple[int, str | None]]:
    stage = StreamAnalytics("cam", settings(lines=[line]))
    seen = run(stage, moving(FPS, seconds, path))
    return [(frame.index, event.direction) for frame in seen for event in frame.events if event.kind == "line.cross"]


@pytest.mark.parametrize(("path", "expected"), [
    (lambda t: (200 + 40 * t, 150), ["in"]),           # left to right
    (lambda t: (440 - 40 * t, 150), ["out"]),          # right to left
    (lambda t: (200 + 40 * t, 300), []),               # below B: around the segment's end
    (lambda t: (200 + 10 * t, 150), []),               # never reaches the line
])
def test_the_direction_of_a_crossing(path: Path, expected: list[str]) -> None:
    assert [direction for _, direction in crossings(path)] == expected


def test_a_crossing_is_decided_inertia_frames_after_the_anchor_passed() -> None:
    # The anchor passes x = 320 between t = 2.9 (316) and t = 3.0 (320 is still the line: 324 at 3.1).
    found = crossings(lambda t: (200 + 40 * t + 4, 150))
    assert found == [(30 + 3 - 1, "in")]


def test_back_and_forth_counts_once_per_direction() -> None:
    def path(t: float) -> tuple[float, float]:
        phase = t % 4
        return (280 + 40 * phase if phase < 2 else 360 - 40 * (phase - 2)), 150

    stage = StreamAnalytics("cam", settings(lines=[GATE]))
    seen = run(stage, moving(FPS, 16, path))
    directions = [event.direction for event in events_of(seen) if event.kind == "line.cross"]
    assert directions == ["in", "out"]
    assert stage.counts().lines["gate"].total == {"in": 1, "out": 1}
    assert stage.counts().lines["gate"].by_label == {"person": {"in": 1, "out": 1}}


def test_jitter_on_the_line_is_no_crossing() -> None:
    frames = [(i / FPS, [box_at(320 + (3 if i % 2 else -3), 150)]) for i in range(60)]
    stage = StreamAnalytics("cam", settings(lines=[GATE]))
    assert [e for e in events_of(run(stage, frames)) if e.kind == "line.cross"] == []


def test_line_labels_filter() -> None:
    cars_only = {**GATE, "labels": ["car"]}
    assert crossings(lambda t: (200 + 40 * t, 150), line=cars_only) == []
