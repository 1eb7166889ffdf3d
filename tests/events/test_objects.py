"""Which object an event belongs to: its object.start, found in the history across runs whose track ids repeat."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_detect.analytics import Event, StreamAnalytics
from stream_detect.events import EventReader, EventStore, events_path

from ..analytics.helpers import box_at, run, settings

pytestmark = pytest.mark.timeout(60)

PORCH = {"name": "porch", "polygon": [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]}
GATE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]]}
FPS = 10.0


def two_walkers(t: float) -> list[tuple[float, float, float, float]]:
    """Two people walking right across the gate into the porch; the second starts 1 s later and
    stays 2 s longer. Nobody after 9 s."""
    boxes = []
    if t < 6:
        boxes.append(box_at(200 + 50 * t, 150, 60))
    if 1 <= t < 8:
        boxes.append(box_at(150 + 45 * (t - 1), 300, 60))
    return boxes


def one_run(base: float) -> list[Event]:
    """The events of one run of the analyzer over the stream ``cam`` whose capture times start at ``base``:
    a new :class:`StreamAnalytics`, so its track ids start from 1 again."""
    stage = StreamAnalytics("cam", settings(zones=[PORCH], lines=[GATE], tracker={"lost_s": 1.0}))
    frames = [(i / FPS, two_walkers(i / FPS)) for i in range(round(11 * FPS))]
    seen = run(stage, frames, captured_at=lambda index, pts: base + pts)
    events = [event for frame in seen for event in frame.events]
    return events + stage.finish(base + 12)


def starts_by_track(events: list[Event]) -> dict[int, str]:
    return {event.track_id: event.id for event in events if event.kind == "object.start"}


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[tuple[EventStore, list[Event], list[Event]]]:
    first, second = one_run(1_800_000_000.0), one_run(1_800_000_600.0)
    with EventStore(events_path(tmp_path)) as store:
        for event in first + second:
            store.add(event.message())
        assert store.flush()
        yield store, first, second


def test_every_event_names_the_start_of_its_own_run_when_track_ids_repeat(
        runs: tuple[EventStore, list[Event], list[Event]]) -> None:
    store, first, second = runs
    reader = store.reader
    assert sorted(starts_by_track(first)) == sorted(starts_by_track(second)) == [1, 2]  # the ids repeat
    assert {event.kind for event in first} >= {"object.start", "zone.enter", "line.cross", "zone.leave",
                                               "object.end"}
    for events in (first, second):
        starts = starts_by_track(events)
        for event in events:
            assert reader.object_of(event.id) == starts[event.track_id], (event.kind, event.id)
    assert starts_by_track(first)[1] != starts_by_track(second)[1]


def test_an_event_whose_start_is_missing_names_no_object_rather_than_an_earlier_runs(tmp_path: Path) -> None:
    first, second = one_run(1_800_000_000.0), one_run(1_800_000_600.0)
    lost = starts_by_track(second)[1]  # dropped on the way (a full queue), or never written
    with EventStore(events_path(tmp_path)) as store:
        for event in first + second:
            if event.id != lost:
                store.add(event.message())
        assert store.flush()
        reader = store.reader
        for event in second:
            expected = None if event.track_id == 1 else starts_by_track(second)[event.track_id]
            assert reader.object_of(event.id) == expected, (event.kind, event.id)
        for event in first:  # the earlier run is unaffected
            assert reader.object_of(event.id) == starts_by_track(first)[event.track_id]


def test_unknown_events_have_no_object_and_existing_says_which_ids_are_kept(
        runs: tuple[EventStore, list[Event], list[Event]]) -> None:
    store, first, _ = runs
    reader = EventReader(store.path)  # a reader of its own, as another process would open it
    assert reader.object_of("no-such-event") is None
    known = [event.id for event in first]
    asked = [*known, "no-such-event", known[0]]
    assert reader.existing(asked) == set(known)
    assert reader.existing([]) == set()
    many = [f"missing-{i}" for i in range(1200)] + known[:3]  # more ids than one query takes
    assert reader.existing(many) == set(known[:3])


def test_the_start_is_found_through_its_index_not_by_walking_the_streams_starts(
        runs: tuple[EventStore, list[Event], list[Event]]) -> None:
    store, first, _ = runs
    connection = sqlite3.connect(store.path)
    try:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT id, at FROM events WHERE stream = ? AND track_id = ? "
            "AND kind = 'object.start' AND (at, id) <= (?, ?) ORDER BY at DESC, id DESC LIMIT 1",
            ["cam", 1, first[-1].at, first[-1].id]).fetchall()
    finally:
        connection.close()
    assert "events_stream_track_kind_at" in " ".join(str(row[-1]) for row in plan)
