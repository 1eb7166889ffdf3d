"""The per-stream stage: pts-based timing, wall time ignored, finish, time line restarts, messages, drops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from stream_detect.analytics import KINDS, StreamAnalytics

from .helpers import box_at, detections, events_of, kinds, moving, run, settings

PORCH = {"name": "porch", "polygon": [[0.6, 0], [1, 0], [1, 1], [0.6, 1]], "loiter_s": 2.0}
GATE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]]}


def walk(t: float) -> tuple[float, float]:
    """Right across the gate (x = 320) into the porch (x > 384), stays, back out, then gone at 10 s."""
    if t < 4:
        return 250 + 40 * t, 200  # in the porch from t = 3.35, at x = 410 at t = 4
    if t < 7:
        return 410, 200
    return 410 - 20 * (t - 7), 200  # out of the porch from t = 8.3


def frames_at(fps: float) -> list[tuple[float, list[tuple[float, float, float, float]]]]:
    return [(pts, boxes if pts < 10 else []) for pts, boxes in moving(fps, 14, walk)]


def analyse(fps: float) -> list[tuple[float, str, float | None]]:
    stage = StreamAnalytics("cam", settings(zones=[PORCH], lines=[GATE], tracker={"lost_s": 2.0}))
    # 120 px boxes: at 2 fps the 20 px steps still overlap enough for the tracker.
    frames = [(pts, [box_at(*walk(pts), 120)] if pts < 10 else []) for pts, _ in frames_at(fps)]
    seen = run(stage, frames)
    return [(frame.pts, event.kind, event.duration_s) for frame in seen for event in frame.events]


def test_a_2_fps_and_a_25_fps_stream_of_the_same_motion_give_the_same_events_at_the_same_times() -> None:
    slow, fast = analyse(2.0), analyse(25.0)
    assert [kind for _, kind, _ in slow] == [kind for _, kind, _ in fast] == [
        "object.start", "line.cross", "zone.enter", "zone.loiter", "zone.leave", "object.end"]
    inertia = 3
    for (slow_pts, kind, slow_duration), (fast_pts, _, fast_duration) in zip(slow, fast, strict=True):
        # Decisions wait for inertia frames: at most that many frames of the slower stream apart.
        assert abs(slow_pts - fast_pts) <= inertia / 2.0 + 1e-9, kind
        if slow_duration is not None:
            # Durations are measured on pts between observed transitions: within one slow frame.
            assert slow_duration == pytest.approx(fast_duration, abs=0.5 + 1e-9), kind
    for events, fps in ((slow, 2.0), (fast, 25.0)):
        by_kind = {kind: (pts, duration) for pts, kind, duration in events}
        assert by_kind["zone.loiter"][1] == pytest.approx(2.0, abs=1 / fps + 1e-9)
        # Last seen just before 10 s; ended lost_s = 2 s of pts later, at the first frame after that.
        last_seen = max(pts for pts, _ in frames_at(fps) if pts < 10)
        assert last_seen + 2.0 <= by_kind["object.end"][0] < last_seen + 2.0 + 1 / fps + 1e-9


def test_the_same_pts_give_the_same_events_whatever_the_wall_time() -> None:
    def events_with(captured_at: Callable[[int, float], float]) -> list[tuple[object, ...]]:
        stage = StreamAnalytics("cam", settings(zones=[PORCH], lines=[GATE]))
        seen = run(stage, frames_at(10.0), captured_at=captured_at)
        return [(e.kind, e.frame, e.track_id, e.zone, e.line, e.direction, e.duration_s) for e in events_of(seen)]

    rng = np.random.default_rng(0)
    real_time = events_with(lambda index, pts: 1_800_000_000.0 + pts)
    faster = events_with(lambda index, pts: 1_800_000_000.0 + pts / 7 + float(rng.uniform(0, 0.01)))
    stalled = events_with(lambda index, pts: 1_800_000_000.0 + (5.0 if index > 30 else 0.0))
    assert len(real_time) >= 6
    assert real_time == faster == stalled


def test_finish_closes_every_open_track_leave_before_end() -> None:
    stage = StreamAnalytics("cam", settings(zones=[PORCH], lines=[GATE]))
    frames = [(i / 10, [box_at(420, 200), box_at(100, 200)]) for i in range(30)]
    seen = run(stage, frames)
    assert stage.counts().zones == {"porch": {"person": 1}}
    closing = stage.finish(1_900_000_000.0)
    assert [(e.kind, e.track_id) for e in closing] == [("object.end", 1), ("zone.leave", 2), ("object.end", 2)] or \
        [(e.kind, e.track_id) for e in closing] == [("zone.leave", 1), ("object.end", 1), ("object.end", 2)]
    leave = next(e for e in closing if e.kind == "zone.leave")
    assert leave.duration_s == pytest.approx(2.9 - 0.1)  # from the first zone observation: when confirmed
    assert all(e.frame == seen[-1].index and e.at == 1_900_000_000.0 for e in closing)
    assert stage.counts().zones == {"porch": {"person": 0}}
    assert stage.finish(1_900_000_001.0) == []


def test_pts_going_backwards_ends_the_open_tracks_and_starts_new_ones() -> None:
    stage = StreamAnalytics("cam", settings(zones=[PORCH]))
    frames = [(i / 10, [box_at(420, 200)]) for i in range(20)] + [(i / 10, [box_at(420, 200)]) for i in range(20)]
    seen = run(stage, frames)
    restart = seen[20].events
    assert kinds(restart) == ["zone.leave", "object.end"]
    assert [e.track_id for e in events_of(seen) if e.kind == "object.start"] == [1, 2]


def test_event_and_counts_messages_have_exactly_the_envelopes_keys() -> None:
    stage = StreamAnalytics("cam-1", settings(zones=[PORCH], lines=[GATE]))
    seen = run(stage, frames_at(10.0))
    events = events_of(seen) + stage.finish(1_900_000_000.0)
    messages = [event.message() for event in events]
    keys = {"type", "version", "id", "kind", "stream", "at", "frame", "track_id", "label", "score", "box",
            "zone", "line", "direction", "duration_s"}
    for message in messages:
        assert set(message) == keys and message["type"] == "event" and message["version"] == 1
        assert message["kind"] in KINDS and message["stream"] == "cam-1"
        assert set(message["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert all(type(v) is int for v in message["box"].values())
        assert isinstance(message["at"], float) and isinstance(message["score"], float)
        assert (message["duration_s"] is not None) == (message["kind"] in ("zone.leave", "zone.loiter",
                                                                             "object.end"))
        assert (message["direction"] is not None) == (message["kind"] == "line.cross")
    ids = [message["id"] for message in messages]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids  # decided in time order, so sorted by id
    assert stage.counts_message(1.5) == {
        "type": "counts", "version": 1, "stream": "cam-1", "at": 1.5,
        "zones": {"porch": {"person": 0}},
        "lines": {"gate": {"in": 1, "out": 0, "labels": {"person": {"in": 1, "out": 0}}}},
    }


@pytest.mark.parametrize("tracking", [True, False])
def test_masks_and_filters_drop_before_tracking_and_count_by_reason(tracking: bool) -> None:
    stage = StreamAnalytics("cam", settings(
        tracking=tracking,
        masks=[{"polygon": [[0, 0], [0.25, 0], [0.25, 1], [0, 1]]}],  # the left quarter: x < 160
        filters={"*": {"min_area": 0.005}, "car": {"min_score": 0.8}},
    ))
    boxes = [box_at(100, 200), box_at(300, 200), box_at(400, 200), box_at(500, 200, 10), box_at(500, 100)]
    scores = [0.9, 0.9, 0.7, 0.9, 0.9]
    labels = ["person", "person", "car", "person", "car"]
    for i in range(3):
        result = stage.process(i, i / 10, 0.0, 640, 360, detections(boxes, scores, labels))
    # Masked: the first (anchor x 100). Filtered: the car under 0.8, the 10 px box (area below 0.5%).
    assert dict(result.dropped) == {"mask": 1, "filter": 2, "duplicate": 0}
    assert result.detections.xyxy.tolist() == [list(boxes[1]), list(boxes[4])]
    assert result.track_ids == ((1, 2) if tracking else (None, None))


@pytest.mark.parametrize(("tracking", "kept", "dropped"), [(True, 3, 1), (False, 4, 0)])
def test_a_weaker_duplicate_box_of_the_same_label_is_dropped_on_a_tracked_stream(tracking: bool, kept: int,
                                                                                dropped: int) -> None:
    stage = StreamAnalytics("cam", settings(tracking=tracking))
    boxes = [(100, 100, 140, 140), (101, 99, 141, 141), (300, 100, 340, 140), (301, 100, 341, 140)]
    # Rows 0 and 1 are one person seen twice; rows 2 and 3 overlap as much but are a person and a car.
    result = stage.process(0, 0.0, 0.0, 640, 360, detections(boxes, [0.6, 0.95, 0.9, 0.8],
                                                             ["person", "person", "person", "car"]))
    assert len(result.detections) == kept and result.dropped["duplicate"] == dropped
    if tracking:
        assert result.detections.confidence.tolist() == pytest.approx([0.95, 0.9, 0.8])


def test_a_source_without_pts_runs_on_capture_times() -> None:
    stage = StreamAnalytics("cam", settings(tracking=True, tracker={"lost_s": 1.0}))
    frames = [(i, [box_at(300, 200)] if i < 10 else []) for i in range(25)]
    ends: list[int] = []
    for index, boxes in frames:
        result = stage.process(index, None, 1_800_000_000.0 + index / 10, 640, 360, detections(boxes))
        ends.extend(index for event in result.events if event.kind == "object.end")
    assert ends == [19]  # last seen at frame 9: 1 s of capture time later


def test_an_untracked_stream_has_no_events_predictions_or_counts() -> None:
    stage = StreamAnalytics("cam", settings())
    result = stage.process(0, 0.0, 0.0, 640, 360, detections([box_at(300, 200)]))
    assert not stage.tracking and result.track_ids == (None,) and result.events == ()
    assert stage.predicted(0.5) == [] and stage.finish(1.0) == []
    assert stage.counts_message(1.0)["zones"] == {} and stage.counts_message(1.0)["lines"] == {}


def test_a_small_step_back_in_pts_is_no_restart() -> None:
    stage = StreamAnalytics("cam", settings(zones=[PORCH]))
    frames = [(i / 10, [box_at(420, 200)]) for i in range(20)]
    frames[10] = (0.85, frames[10][1])  # 0.05 s behind frame 9
    seen = run(stage, frames)
    assert kinds(events_of(seen)) == ["object.start", "zone.enter"]
