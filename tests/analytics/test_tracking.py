"""Track ids, ageing by pts, unconfirmed tracks, prediction."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detect.analytics import StreamAnalytics
from stream_detect.analytics.settings import TrackerConfig
from stream_detect.analytics.tracking import StreamTracker

from .helpers import box_at, detections, events_of, kinds, run, settings

ZONE = {"name": "everywhere", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}
LINE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]]}


def test_a_flickering_detection_is_never_confirmed_never_published_and_changes_no_state() -> None:
    # Seen every other frame only, while walking through the zone and across the line.
    frames = [(i / 10, [box_at(200 + 8 * i, 200)] if i % 2 == 0 else []) for i in range(60)]
    stage = StreamAnalytics("cam", settings(zones=[ZONE], lines=[LINE], tracker={"inertia": 1}))
    seen = run(stage, frames)
    assert all(track_id is None for frame in seen for track_id in frame.track_ids)
    assert events_of(seen) == []
    assert stage.counts().zones == {"everywhere": {}}
    assert stage.counts().lines["gate"].total == {"in": 0, "out": 0}


def test_confirmed_and_unconfirmed_side_by_side() -> None:
    stage = StreamAnalytics("cam", settings(tracking=True))
    steady = box_at(100, 100)
    ids = []
    for i in range(6):
        boxes = [steady, box_at(500, 300)] if i == 4 else [steady]  # a one-frame ghost on frame 4
        ids.append(stage.process(i, i / 10, 0.0, 640, 360, detections(boxes)).track_ids)
    assert ids[0] == (None,)  # the first detection of a track is not yet confirmed
    assert ids[1:4] == [(1,)] * 3
    assert ids[4] == (1, None)


@pytest.mark.parametrize("fps", [2.0, 25.0])
def test_a_track_ends_after_lost_s_of_pts_whatever_the_frame_rate(fps: float) -> None:
    # Seen for 3 s, gone for 4 s (frames keep coming, empty), lost_s = 2.5.
    frames = [(i / fps, [box_at(300, 200)] if i / fps < 3 else []) for i in range(round(7 * fps))]
    stage = StreamAnalytics("cam", settings(tracking=True, tracker={"lost_s": 2.5}))
    seen = run(stage, frames)
    ends = [(frame.pts, event) for frame in seen for event in frame.events if event.kind == "object.end"]
    assert len(ends) == 1
    last_seen = max(pts for pts, _ in frames if pts < 3)
    end_pts, end = ends[0]
    assert last_seen + 2.5 <= end_pts < last_seen + 2.5 + 1 / fps + 1e-9
    assert end.duration_s == pytest.approx(last_seen)  # from its first detection, at pts 0


@pytest.mark.parametrize("fps", [2.0, 25.0])
def test_a_gap_shorter_than_lost_s_keeps_the_id(fps: float) -> None:
    frames = [(i / fps, [] if 2 <= i / fps < 3 else [box_at(300, 200)]) for i in range(round(6 * fps))]
    stage = StreamAnalytics("cam", settings(tracking=True, tracker={"lost_s": 2.0}))
    seen = run(stage, frames)
    assert {track_id for frame in seen for track_id in frame.track_ids} - {None} == {1}
    assert kinds(events_of(seen)) == ["object.start"]


def test_ids_are_never_reused_even_when_the_library_revives_an_ended_track() -> None:
    stage = StreamAnalytics("cam", settings(tracking=True, tracker={"lost_s": 1.0}))
    # Gaps of exactly lost_s (the library's budget is a little longer and matches the old track again),
    # then of 3 s (the library forgot it too).
    visible = [(0.0, 1.0), (2.0, 3.0), (6.0, 7.0)]
    frames = [(i / 10, [box_at(300, 200)] if any(a <= i / 10 <= b + 1e-9 for a, b in visible) else [])
              for i in range(80)]
    seen = run(stage, frames)
    events = events_of(seen)
    assert kinds(events) == ["object.start", "object.end", "object.start", "object.end", "object.start"]
    assert [event.track_id for event in events] == [1, 1, 2, 2, 3]
    assert stage.finish(0.0)[-1].track_id == 3
    later = stage.process(80, 8.1, 0.0, 640, 360, detections([box_at(300, 200)]))
    later = stage.process(81, 8.2, 0.0, 640, 360, detections([box_at(300, 200)]))
    assert later.track_ids == (4,)


def test_many_objects_get_distinct_ids() -> None:
    stage = StreamAnalytics("cam", settings(tracking=True))
    boxes = [box_at(40 + 60 * k, 100 + 40 * (k % 5), 30) for k in range(10)]
    results = [stage.process(i, i / 10, 0.0, 640, 360, detections([(x0 + i, y0, x1 + i, y1)
                                                                   for x0, y0, x1, y1 in boxes]))
               for i in range(5)]
    assert sorted(i for i in results[-1].track_ids if i is not None) == list(range(1, 11))
    assert None not in results[-1].track_ids


def test_prediction_moves_a_box_at_its_velocity_for_at_most_the_horizon() -> None:
    tracker = StreamTracker(TrackerConfig(max_prediction_s=1.0))
    speed = 100.0  # px/s to the right, seen at 2 fps; boxes wide enough to overlap from one detection to the next
    for i in range(6):
        tracker.update(i / 2, detections([box_at(100 + speed * i / 2, 200, 120)]))
    (track,) = tracker.tracks
    last = np.array(box_at(100 + speed * 2.5, 200, 120))
    assert tracker.predict(track, 2.5 + 0.25) == pytest.approx(last + np.array([25, 0, 25, 0]), abs=0.5)
    capped = last + np.array([100, 0, 100, 0])  # 1 s ahead at most
    assert tracker.predict(track, 2.5 + 3.0) == pytest.approx(capped, abs=0.5)
    assert tracker.predict(track, 2.0) == pytest.approx(last)  # never backwards
    ids, boxes = tracker.predicted_boxes(2.75)
    assert ids.tolist() == [track.track_id] and boxes[0] == pytest.approx(last + np.array([25, 0, 25, 0]), abs=0.5)


def test_prediction_keeps_a_moving_box_on_its_object_between_detections() -> None:
    # Detections at 2 fps, frames shown at 20 fps: the distance to the true box with and without prediction.
    stage = StreamAnalytics("cam", settings(tracking=True))
    rng = np.random.default_rng(3)
    errors_predicted, errors_last = [], []
    for shown in range(100):
        t = shown / 20
        truth = np.array(box_at(100 + 80 * t, 200, 120))
        if shown % 10 == 0:
            noisy = truth + rng.normal(0, 1.5, 4)
            stage.process(shown, t, 0.0, 640, 360, detections([noisy.tolist()]))
            last = noisy
        elif shown > 20:
            (predicted,) = stage.predicted(t)
            errors_predicted.append(np.abs(np.array(predicted.box) - truth).max())
            errors_last.append(np.abs(last - truth).max())
    assert np.mean(errors_predicted) < 5 < np.mean(errors_last) / 4


def test_each_tracked_detection_carries_its_velocity_for_overlays_on_other_threads() -> None:
    stage = StreamAnalytics("cam", settings(tracking=True))
    for i in range(6):  # 60 px/s to the right, a still box beside it
        result = stage.process(i, i / 10, 0.0, 640, 360,
                               detections([box_at(100 + 6 * i, 200), box_at(400, 100)]))
    assert result.track_ids == (1, 2)
    assert result.velocities[0] == pytest.approx([60, 0, 60, 0], abs=1e-6)
    assert result.velocities[1] == pytest.approx([0, 0, 0, 0], abs=1e-6)
    first = stage.process(6, 0.6, 0.0, 640, 360, detections([box_at(100, 300)]))  # a new box: no track yet
    assert first.track_ids == (None,) and first.velocities.tolist() == [[0, 0, 0, 0]]
