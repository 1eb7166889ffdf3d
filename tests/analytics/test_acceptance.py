"""Acceptance: the synthetic camera's ground truth, with a detector's noise, gives every event once, in time.

The scene (:mod:`.scene`) has two crossings, one entry, one stay long
enough to loiter and one exit, at frames known from the noise-free boxes,
and a shape that only touches the zone's border. Each seed adds its own
jitter (2 px per box edge), score noise and 5% missed detections.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from itertools import pairwise

import numpy as np
import pytest

from stream_detect.analytics import Event, StreamAnalytics
from stream_detect.analytics.settings import AnalyticsFields

from .scene import FPS, GATE, HEIGHT, PORCH, WIDTH, SceneFrame, anchor, noisy_detections, render_scene

MAX_LATE_FRAMES = 10
MAX_ID_SWITCHES = 1  # over the whole scene, all four shapes together


@cache
def scene() -> tuple[SceneFrame, ...]:
    return tuple(render_scene())


def truth_frames() -> dict[tuple[str, str], int]:
    """From the noise-free boxes: the first frame each shape's anchor is past the gate or in/out of the porch."""
    found: dict[tuple[str, str], int] = {}
    previous: dict[str, tuple[float, float]] = {}
    for frame in scene():
        for owner, truth in frame.truths:
            x, y = anchor(truth.box)
            in_porch = x > 0.7 * WIDTH and y > 0.55 * HEIGHT
            if owner in previous:
                px, py = previous[owner]
                was_in = px > 0.7 * WIDTH and py > 0.55 * HEIGHT
                if in_porch and not was_in:
                    found.setdefault((owner, "zone.enter"), frame.index)
                if was_in and not in_porch:
                    found.setdefault((owner, "zone.leave"), frame.index)
                if y < 0.6 * HEIGHT and (px < WIDTH / 2) != (x < WIDTH / 2):
                    found.setdefault((owner, "in" if x > px else "out"), frame.index)
            previous[owner] = (x, y)
    return found


def test_the_scene_has_the_events_it_is_meant_to_have() -> None:
    assert truth_frames() == {("A", "in"): 52, ("B", "out"): 57, ("C", "zone.enter"): 60, ("C", "zone.leave"): 120}
    d_lowest = max(anchor(truth.box)[1] for frame in scene() for owner, truth in frame.truths if owner == "D")
    assert 0.55 * HEIGHT - 4 <= d_lowest < 0.55 * HEIGHT  # D comes within a few px of the porch's border


@pytest.mark.parametrize("seed", range(10))
def test_every_crossing_entry_and_exit_is_reported_once_in_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stage = StreamAnalytics("synthetic", AnalyticsFields.model_validate({"zones": [PORCH], "lines": [GATE]}))
    owner_of_track: dict[int, Counter[str]] = {}
    ids_of_shape: dict[str, list[int]] = {}
    events: list[Event] = []
    for frame in scene():
        detections, owners = noisy_detections(frame, rng)
        result = stage.process(frame.index, frame.index / FPS, 1_800_000_000 + frame.index / FPS, WIDTH, HEIGHT,
                               detections)
        for owner, track_id in zip(owners, result.track_ids, strict=True):
            if track_id is not None:
                owner_of_track.setdefault(track_id, Counter())[owner] += 1
                ids_of_shape.setdefault(owner, []).append(track_id)
        events.extend(result.events)
    events.extend(stage.finish(1_900_000_000.0))

    def shape(event: Event) -> str:
        return owner_of_track[event.track_id].most_common(1)[0][0]

    reported = Counter((shape(e), e.direction if e.kind == "line.cross" else e.kind) for e in events
                       if e.kind in ("line.cross", "zone.enter", "zone.leave", "zone.loiter"))
    # Exactly once each; C passing below the gate's end, and D touching the border, make nothing.
    assert reported == Counter({("A", "in"): 1, ("B", "out"): 1, ("C", "zone.enter"): 1, ("C", "zone.loiter"): 1,
                                ("C", "zone.leave"): 1})
    for (owner, what), truth in truth_frames().items():
        (event,) = [e for e in events if shape(e) == owner and what in (e.kind, e.direction)]
        assert 0 <= event.frame - truth <= MAX_LATE_FRAMES, (owner, what, event.frame, truth)
    loiter = next(e for e in events if e.kind == "zone.loiter")
    assert loiter.duration_s is not None and 2.0 <= loiter.duration_s < 2.0 + 2 / FPS
    switches = sum(sum(1 for a, b in pairwise(ids) if a != b) for ids in ids_of_shape.values())
    assert switches <= MAX_ID_SWITCHES, ids_of_shape
    assert sorted(ids_of_shape) == ["A", "B", "C", "D"]
    assert stage.counts().lines["gate"].total == {"in": 1, "out": 1}
    assert stage.counts().zones["porch"] == {"triangle": 0}
