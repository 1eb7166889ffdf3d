"""The event store as a library: what is added comes back, filtered, paged and counted; retention;
files that must not be touched are refused in one line and left as they were."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_detect.errors import EventStoreError, InputError
from stream_detect.events import LATEST_VERSION, EventReader, EventStore, events_path

from ..faults.helpers import wait_until
from .sample import DAY, event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    events = EventStore(events_path(tmp_path))
    try:
        yield events
    finally:
        events.close()


def every_page(store: EventStore | EventReader, limit: int, max_pages: int = 1000, cursor: str | None = None,
               **filters: Any) -> list[list[dict[str, Any]]]:
    """Every page of a query from ``cursor``, following ``next`` (bounded by ``max_pages``)."""
    pages: list[list[dict[str, Any]]] = []
    for _ in range(max_pages):
        page, cursor = store.query(limit=limit, cursor=cursor, **filters)
        pages.append(page)
        if cursor is None:
            return pages
    raise AssertionError(f"more than {max_pages} pages")


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


def test_an_event_comes_back_as_it_was_added_and_survives_reopening(tmp_path: Path) -> None:
    added = event(DAY + 12.25, "zone.leave", zone="porch", note="kept though unknown")
    with EventStore(events_path(tmp_path)) as store:
        store.add(added)
        assert store.flush(10)
        assert store.get(added["id"]) == added
        assert store.query() == ([added], None)
        assert store.get("no-such-id") is None
    with EventStore(events_path(tmp_path)) as reopened:
        assert reopened.get(added["id"]) == added
    assert EventReader(events_path(tmp_path)).get(added["id"]) == added


def test_filters_match_each_field_and_the_time_range(store: EventStore) -> None:
    events = [
        event(DAY + 1, "object.start", stream="a", label="person"),
        event(DAY + 2, "zone.enter", stream="a", label="car", zone="drive"),
        event(DAY + 3, "zone.enter", stream="b", label="person", zone="porch"),
        event(DAY + 4, "line.cross", stream="b", label="car", line="gate", direction="out"),
        event(DAY + 5, "line.cross", stream="a", label="person", line="fence", direction="in"),
    ]
    for added in events:
        store.add(added)
    assert store.flush(10)
    newest_first = list(reversed(events))

    def matching(**filters: Any) -> list[str]:
        page, following = store.query(**filters)
        assert following is None
        return ids(page)

    assert matching() == ids(newest_first)
    assert matching(stream="a") == ids([events[4], events[1], events[0]])
    assert matching(kind="zone.enter") == ids([events[2], events[1]])
    assert matching(label="car") == ids([events[3], events[1]])
    assert matching(zone="porch") == ids([events[2]])
    assert matching(line="gate") == ids([events[3]])
    assert matching(stream="a", kind="line.cross", label="person", line="fence") == ids([events[4]])
    assert matching(stream="b", label="person", kind="line.cross") == []
    assert matching(after=DAY + 2, before=DAY + 4) == ids([events[2], events[1]])  # [after, before)
    assert matching(after=DAY + 5) == ids([events[4]])
    assert matching(before=DAY + 1) == []


def test_pages_newest_first_with_equal_times_have_no_duplicates_and_no_gaps(store: EventStore) -> None:
    # 30 instants, 8 events at each, ids deliberately not in the order they were added.
    added = [event(DAY + instant, event_id=f"{instant:03d}-{(k * 5) % 8}") for instant in range(30) for k in range(8)]
    for item in added:
        store.add(item)
    assert store.flush(10)
    expected = ids(sorted(added, key=lambda e: (e["at"], e["id"]), reverse=True))
    for limit in (1, 3, 7, 8, 100, 240, 1000):
        pages = every_page(store, limit)
        assert all(len(page) == limit for page in pages[:-1]), limit
        assert 1 <= len(pages[-1]) <= limit
        assert [i for page in pages for i in ids(page)] == expected, limit
    # Events added while a client pages do not shift the pages that follow.
    first, cursor = store.query(limit=50)
    for instant in range(40, 45):
        store.add(event(DAY + instant))
    assert store.flush(10)
    rest = every_page(store, 50, cursor=cursor) if cursor else []
    assert ids(first) + [i for page in rest for i in ids(page)] == expected
    # Filters with a cursor page their own subset.
    filtered = [i for page in every_page(store, 5, before=DAY + 10) for i in ids(page)]
    assert filtered == [i for i in expected if int(i[:3]) < 10]


def test_bad_query_values_are_input_errors_naming_the_value(store: EventStore) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "zone.entered"}, "kind"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
        ({"after": DAY + 2, "before": DAY + 1}, "after"), ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"cursor": "%%%"}, "cursor"), ({"after": float("nan")}, "after")]
    for kwargs, named in cases:
        with pytest.raises(InputError, match=named):
            store.query(**kwargs)
    with pytest.raises(InputError, match="bucket"):
        store.counts(bucket="fortnight")


def test_a_bad_event_is_refused_when_added_and_the_store_goes_on(store: EventStore) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "zone.wander"}, "kind"), ({"at": "noon"}, "at"), ({"at": float("inf")}, "at"),
        ({"box": None}, "box"), ({"frame": 1.5}, "frame"), ({"direction": "up"}, "direction"),
        ({"stream": ""}, "stream"), ({"type": "detections"}, "type")]
    for broken, named in cases:
        with pytest.raises(InputError, match=named):
            store.add({**event(DAY), **broken})
    with pytest.raises(InputError, match="zone"):
        store.add(event(DAY, "zone.enter") | {"zone": None})
    good = event(DAY + 1)
    store.add(good)
    assert store.flush(10)
    assert ids(store.query()[0]) == [good["id"]]


def test_counts_per_bucket_are_line_crossings_by_direction_and_zone_entries(store: EventStore) -> None:
    hour = 3600.0
    timeline = [
        event(DAY + 10, "line.cross", line="gate", direction="in"),
        event(DAY + 20, "line.cross", line="gate", direction="in"),
        event(DAY + 30, "line.cross", line="gate", direction="out"),
        event(DAY + 40, "zone.enter", zone="porch"),
        event(DAY + 41, "zone.leave", zone="porch"),  # not an entry
        event(DAY + 42, "object.start"),  # neither
        event(DAY + hour - 0.001, "zone.enter", zone="porch"),
        event(DAY + hour, "zone.enter", zone="drive"),  # the next hour starts here
        event(DAY + 2.5 * hour, "line.cross", line="gate", direction="out", stream="yard-cam"),
    ]
    for added in timeline:
        store.add(added)
    assert store.flush(10)
    answer = store.counts(bucket="hour")
    assert answer["bucket"] == "hour"
    assert answer["bucket_s"] == 3600
    assert answer["buckets"] == [
        {"start": DAY, "end": DAY + hour,
         "lines": [{"stream": "porch-cam", "line": "gate", "in": 2, "out": 1}],
         "zones": [{"stream": "porch-cam", "zone": "porch", "entered": 2}]},
        {"start": DAY + hour, "end": DAY + 2 * hour, "lines": [],
         "zones": [{"stream": "porch-cam", "zone": "drive", "entered": 1}]},
        {"start": DAY + 2 * hour, "end": DAY + 3 * hour,
         "lines": [{"stream": "yard-cam", "line": "gate", "in": 0, "out": 1}], "zones": []},
    ]
    by_day = store.counts(bucket="day")["buckets"]
    assert [(b["start"], b["lines"], b["zones"]) for b in by_day] == [(DAY, [
        {"stream": "porch-cam", "line": "gate", "in": 2, "out": 1},
        {"stream": "yard-cam", "line": "gate", "in": 0, "out": 1}], [
        {"stream": "porch-cam", "zone": "drive", "entered": 1},
        {"stream": "porch-cam", "zone": "porch", "entered": 2}])]
    minutes = store.counts(bucket="minute", stream="porch-cam", before=DAY + hour)["buckets"]
    assert [(b["start"], b["lines"], b["zones"]) for b in minutes] == [
        (DAY, [{"stream": "porch-cam", "line": "gate", "in": 2, "out": 1}],
         [{"stream": "porch-cam", "zone": "porch", "entered": 1}]),
        (DAY + hour - 60, [], [{"stream": "porch-cam", "zone": "porch", "entered": 1}]),
    ]
    assert store.counts(stream="yard-cam", after=DAY + 3 * hour)["buckets"] == []


def test_retention_by_count_keeps_the_newest_while_running_and_at_open(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    added = [event(DAY + i) for i in range(300)]
    with EventStore(path, max_events=120, retention_interval_s=0.1) as store:
        for item in added[:200]:
            store.add(item)
        assert store.flush(10)
        assert wait_until(lambda: len(store.query(limit=1000)[0]) == 120, 10)
        assert ids(store.query(limit=1000)[0]) == ids(list(reversed(added[80:200])))
        assert store.stats.deleted == 80
    with EventStore(path) as unlimited:
        for item in added[200:]:
            unlimited.add(item)
    with EventStore(path, max_events=50) as reopened:  # applied before the constructor returns
        assert ids(reopened.query(limit=1000)[0]) == ids(list(reversed(added[250:])))


def test_retention_by_age_uses_the_events_times(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    now = [DAY + 30 * 86400]
    old = [event(now[0] - 8 * 86400 + i) for i in range(5)]
    recent = [event(now[0] - 6 * 86400 + i) for i in range(5)]
    with EventStore(path, max_age_days=7, retention_interval_s=0.1, clock=lambda: now[0]) as store:
        for item in old + recent:
            store.add(item)
        assert store.flush(10)
        assert wait_until(lambda: ids(store.query()[0]) == ids(list(reversed(recent))), 10)
        now[0] += 2 * 86400  # time passes: the recent ones are 8 days old too
        assert wait_until(lambda: store.query()[0] == [], 10)
    with EventStore(path) as store:
        store.add(old[0])
    with EventStore(path, max_age_days=7, clock=lambda: now[0]) as reopened:
        assert reopened.query()[0] == []


def test_adds_from_many_threads_are_all_kept(store: EventStore) -> None:
    def add_many(thread: int) -> None:
        for i in range(500):
            store.add(event(DAY + i, event_id=f"{thread}-{i:04d}"))

    threads = [threading.Thread(target=add_many, args=(n,), name=f"adder-{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert store.flush(10)
    stored = [i for page in every_page(store, 1000) for i in ids(page)]
    assert sorted(stored) == sorted(f"{n}-{i:04d}" for n in range(4) for i in range(500))
    assert store.stats.written == 2000
    assert store.stats.dropped == 0


def test_a_full_queue_drops_counts_and_logs_after_a_short_wait(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = events_path(tmp_path)
    with EventStore(path, queue_size=2, full_wait_s=0.01) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer's next transaction waits for this one
        try:
            store.add(event(DAY))
            assert wait_until(lambda: store.stats.queued == 0, 5)  # the writer took it and waits
            started = time.monotonic()
            for i in range(1, 101):
                store.add(event(DAY + i))
            elapsed = time.monotonic() - started
            dropped = store.stats.dropped
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert store.flush(10)
        stats = store.stats
    assert dropped == 98  # two fit in the queue
    assert elapsed < 98 * 0.01 + 2  # each drop waited about full_wait_s, no more
    assert (stats.written, stats.dropped, stats.lost) == (3, 98, 0)
    assert len(EventReader(path).query()[0]) == 3
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        f"events database {path}: the writer is behind; events dropped so far: 1"]  # one line per 10 s


def test_adding_after_close_is_an_error_and_close_is_idempotent(tmp_path: Path) -> None:
    store = EventStore(events_path(tmp_path))
    store.add(event(DAY))
    store.close()
    store.close()
    with pytest.raises(EventStoreError, match="closed"):
        store.add(event(DAY + 1))
    assert len(EventReader(events_path(tmp_path)).query()[0]) == 1


def refused(path: Path) -> str:
    """The one-line error opening ``path`` gives, checking it leaves the file's bytes as they were."""
    before = path.read_bytes()
    with pytest.raises(EventStoreError) as caught:
        EventStore(path)
    with pytest.raises(EventStoreError):
        EventStore(path)  # the same again: the failed attempt left no lock behind
    assert path.read_bytes() == before
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # reading a WAL database may leave an empty log
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_a_file_of_garbage_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    path.write_bytes(bytes(range(256)) * 64)
    assert "is not an SQLite database" in refused(path)


def test_a_damaged_sqlite_file_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    with EventStore(path) as store:
        for i in range(50):
            store.add(event(DAY + i))
    data = bytearray(path.read_bytes())
    data[16:4096] = bytes(4080)  # the header's page size and the schema page, zeroed
    path.write_bytes(bytes(data))
    assert "corrupt" in refused(path)


def test_a_truncated_database_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    with EventStore(path) as store:
        for i in range(3000):
            store.add(event(DAY + i))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy cut short: the first pages are intact
    assert "is corrupt" in refused(path)


def test_a_database_from_a_newer_stream_detect_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE events (id TEXT PRIMARY KEY, at REAL, snapshot BLOB)")
    connection.execute("PRAGMA user_version = 7")
    connection.commit()
    connection.close()
    message = refused(path)
    assert message == (f"events database {path} has schema version 7, this stream-detect knows up to "
                       f"{LATEST_VERSION}: run a newer stream-detect or use another data directory")
    with pytest.raises(EventStoreError, match="schema version 7"):
        EventReader(path)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (number INTEGER)")
    connection.commit()
    connection.close()
    assert "another program" in refused(path)


def test_a_second_writer_in_the_same_process_is_refused_and_readers_are_not(store: EventStore) -> None:
    store.add(event(DAY))
    assert store.flush(10)
    with pytest.raises(EventStoreError, match="open for writing already"):
        EventStore(store.path)
    assert len(EventReader(store.path).query()[0]) == 1
    store.add(event(DAY + 1))  # the first store goes on
    assert store.flush(10)
    assert len(store.query()[0]) == 2


def test_queries_do_not_wait_for_a_writer_holding_the_write_lock(store: EventStore) -> None:
    store.add(event(DAY))
    assert store.flush(10)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO events SELECT * FROM events WHERE 0")
    try:
        started = time.monotonic()
        assert len(store.query()[0]) == 1
        assert store.get(event(DAY, event_id="x")["id"]) is None
        assert store.counts()["buckets"] == []
        assert time.monotonic() - started < 1.0  # the busy timeout is 5 s: nothing waited for the lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_the_schema_is_at_its_latest_version_in_wal_mode(store: EventStore) -> None:
    connection = sqlite3.connect(store.path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indices = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"events_at", "events_stream_at", "events_kind_at", "events_stream_kind_at"} <= indices
    finally:
        connection.close()
