"""Schema migrations: a later one applies on top of a database with events, in one transaction,
and one that fails leaves the database at its previous version."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from stream_detect.errors import EventStoreError
from stream_detect.events import EventStore, events_path
from stream_detect.events.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate

from .sample import DAY, event

pytestmark = pytest.mark.timeout(30)

NEXT = LATEST_VERSION + 1  # a migration this code does not have yet

SNAPSHOTS = Migration(NEXT, "a snapshot file per event, and notification deliveries", (
    "ALTER TABLE events ADD COLUMN snapshot TEXT",
    "CREATE TABLE deliveries (event_id TEXT NOT NULL REFERENCES events (id), target TEXT NOT NULL, at REAL)",
))


def latest_with_events(tmp_path: Path) -> Path:
    path = events_path(tmp_path)
    with EventStore(path) as store:
        for i in range(3):
            store.add(event(DAY + i))
    return path


def columns(connection: sqlite3.Connection) -> list[str]:
    return [row[1] for row in connection.execute("PRAGMA table_info(events)")]


def test_a_later_migration_applies_on_top_and_keeps_the_events(tmp_path: Path) -> None:
    path = latest_with_events(tmp_path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(connection, path, (*MIGRATIONS, SNAPSHOTS)) == NEXT
        assert connection.execute("PRAGMA user_version").fetchone()[0] == NEXT
        assert columns(connection)[-1] == "snapshot"
        assert connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
        assert migrate(connection, path, (*MIGRATIONS, SNAPSHOTS)) == NEXT  # applied once only
    finally:
        connection.close()
    newer = f"schema version {NEXT}, this stream-detect knows up to {LATEST_VERSION}"
    with pytest.raises(EventStoreError, match=newer):
        EventStore(path)  # this code's migrations end before it


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    path = latest_with_events(tmp_path)
    broken = Migration(NEXT, "half a change", ("ALTER TABLE events ADD COLUMN snapshot TEXT", "CREATE TABLE oops ("))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        failed = re.escape(f"migration to schema version {NEXT} (half a change) failed")
        with pytest.raises(EventStoreError, match=failed):
            migrate(connection, path, (*MIGRATIONS, broken))
        assert connection.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert "snapshot" not in columns(connection)
    finally:
        connection.close()
    with EventStore(path) as store:  # still a good database at the latest version
        assert len(store.query()[0]) == 3
