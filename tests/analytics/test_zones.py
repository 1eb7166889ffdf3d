"""Zone presence through the stage: inertia, border jitter, loitering, label and score filters."""

from __future__ import annotations

import pytest

from stream_detect.analytics import Event, StreamAnalytics

from .helpers import box_at, detections, events_of, kinds, run, settings

FPS = 10.0
# The right 40% of a 640x360 frame: inside when the anchor's x > 384.
PORCH = {"name": "porch", "polygon": [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]}
# Steps small enough for the tracker to follow (the boxes are 40 px wide).
INSIDE_X, OUTSIDE_X, BORDER_X = 392.0, 376.0, 384.0


def analytics(inertia: int = 3, **zone: object) -> StreamAnalytics:  # zone: extra keys of the zone
    return StreamAnalytics("cam", settings(zones=[{**PORCH, **zone}], tracker={"inertia": inertia}))


def frames_from(xs: list[float]) -> list[tuple[float, list[tuple[float, float, float, float]]]]:
    return [(i / FPS, [box_at(x, 200)]) for i, x in enumerate(xs)]


@pytest.mark.parametrize(("pattern", "expected"), [
    ((1, 0), []),                  # in, out, in, out, ...
    ((1, 1, 0), []),               # two in, one out: never three in a row
    ((0, 1, 1, 0, 0), []),
    ((1, 1, 1, 0), ["zone.enter"]),  # three in a row enters; one out never leaves
])
def test_a_box_jittering_on_the_border_does_not_flap(pattern: tuple[int, ...], expected: list[str]) -> None:
    # A few pixels either side of the border, as a detector's jitter puts it.
    xs = [BORDER_X + (3 if pattern[i % len(pattern)] else -3) for i in range(60)]
    seen = run(analytics(), frames_from(xs))
    assert [k for k in kinds(events_of(seen)) if k.startswith("zone.")] == expected


@pytest.mark.parametrize("inertia", [1, 3, 5])
def test_entering_and_leaving_take_inertia_frames_in_a_row(inertia: int) -> None:
    xs = [OUTSIDE_X] * 10 + [INSIDE_X] * 20 + [OUTSIDE_X] * 15
    seen = run(analytics(inertia), frames_from(xs))
    zone_events = [(frame.index, event) for frame in seen for event in frame.events if event.kind.startswith("zone.")]
    assert [(index, event.kind) for index, event in zone_events] == [
        (10 + inertia - 1, "zone.enter"), (30 + inertia - 1, "zone.leave")]
    # The stay runs from the first inside frame to the first outside one, whatever the inertia.
    assert zone_events[1][1].duration_s == pytest.approx(2.0)


def test_loitering_is_reported_once_per_stay_after_loiter_s() -> None:
    stay = [INSIDE_X] * 60  # 6 s
    xs = [OUTSIDE_X] * 5 + stay + [OUTSIDE_X] * 10 + stay
    seen = run(analytics(loiter_s=2.5), frames_from(xs))
    loiters = [(frame.index, event) for frame in seen for event in frame.events if event.kind == "zone.loiter"]
    # Stays start at frames 5 and 75: 2.5 s later is frame 30 and frame 100.
    assert [index for index, _ in loiters] == [30, 100]
    assert [event.duration_s for _, event in loiters] == [pytest.approx(2.5), pytest.approx(2.5)]


@pytest.mark.parametrize(("zone", "label", "score", "enters"), [
    ({"labels": ["person"]}, "person", 0.9, True),
    ({"labels": ["person"]}, "car", 0.9, False),
    ({"min_score": 0.8}, "person", 0.9, True),
    ({"min_score": 0.8}, "person", 0.7, False),
])
def test_zone_labels_and_min_score(zone: dict[str, object], label: str, score: float, enters: bool) -> None:
    stage = analytics(3, **zone)
    found: list[Event] = []
    for i, x in enumerate([OUTSIDE_X] * 5 + [INSIDE_X] * 10):
        result = stage.process(i, i / FPS, 0.0, 640, 360, detections([box_at(x, 200)], [score], [label]))
        found.extend(result.events)
    assert ("zone.enter" in kinds(found)) is enters
    assert "object.start" in kinds(found)  # tracked all the same
    assert stage.counts().zones["porch"] == ({label: 1} if enters else {})


def test_occupancy_counts_per_label_and_the_changed_flag() -> None:
    stage = analytics(inertia=1)
    flags = []
    for i, inside in enumerate([0, 0, 1, 1, 0]):
        x = BORDER_X + (4 if inside else -4)
        result = stage.process(i, i / FPS, 0.0, 640, 360,
                               detections([box_at(x, 200), box_at(100, 300)], labels=["person", "car"]))
        flags.append(result.counts_changed)
        if i == 3:
            assert stage.counts().zones == {"porch": {"person": 1}}
    assert flags == [False, False, True, False, True]
    assert stage.counts().zones == {"porch": {"person": 0}}  # listed at 0 once seen
