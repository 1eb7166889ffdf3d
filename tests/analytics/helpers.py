"""Inputs for the analytics tests: scripted motions as detections, with seeded noise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from stream_detect.analytics import AnalyticsFields, Event, StreamAnalytics
from stream_detect.records import Detections

WIDTH, HEIGHT = 640, 360
Box = tuple[float, float, float, float]
CLASS_IDS: dict[str, int] = {}


@dataclass(frozen=True)
class Observed:
    """One processed frame as a test sees it."""

    index: int
    pts: float
    events: tuple[Event, ...]
    track_ids: tuple[int | None, ...]


def box_at(x: float, y: float, size: float = 40) -> Box:
    """A ``size`` square box whose bottom centre (anchor) is at ``(x, y)``."""
    return (x - size / 2, y - size, x + size / 2, y)


def detections(boxes: Sequence[Sequence[float]], scores: Sequence[float] | None = None,
               labels: Sequence[str] | None = None) -> Detections:
    count = len(boxes)
    names = list(labels or ["person"] * count)
    class_ids = [CLASS_IDS.setdefault(name, len(CLASS_IDS)) for name in names]  # one id per label, as a model has
    return Detections.from_lists(list(boxes), list(scores or [0.9] * count), class_ids, names)


def settings(**fields: object) -> AnalyticsFields:
    return AnalyticsFields.model_validate(fields)


def run(analytics: StreamAnalytics, frames: Iterable[tuple[float, Sequence[Box]]], *,
        captured_at: Callable[[int, float], float] = lambda index, pts: 1_800_000_000.0 + pts,
        scores: Callable[[int], Sequence[float] | None] = lambda index: None) -> list[Observed]:
    """Feeds ``(pts, boxes)`` frames in order; returns what each frame gave."""
    seen = []
    for index, (pts, boxes) in enumerate(frames):
        result = analytics.process(index, pts, captured_at(index, pts), WIDTH, HEIGHT,
                                   detections(boxes, scores(index)))
        seen.append(Observed(index, pts, result.events, result.track_ids))
    return seen


def events_of(seen: Iterable[Observed]) -> list[Event]:
    return [event for frame in seen for event in frame.events]


def kinds(events: Iterable[Event]) -> list[str]:
    return [event.kind for event in events]


def moving(fps: float, seconds: float, path: Callable[[float], tuple[float, float]]) -> list[tuple[float, list[Box]]]:
    """Frames at ``fps`` for ``seconds``, one object whose anchor is at ``path(t)``."""
    return [(i / fps, [box_at(*path(i / fps))]) for i in range(round(seconds * fps))]
