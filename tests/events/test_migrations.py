"""Schema migrations: a later one applies on top of a database with events, in one transaction,
and one that fails leaves the database at its previous version."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from stream_detect.errors import EventStoreError
from stream_detect.events import EventStore, events_path
from stream_detect.events.migrations import MIGRATIONS, Migration, migrate

from .sample import DAY, event

pytestmark = pytest.mark.timeout(30)

SNAPSHOTS = Migration(2, "a snapshot file per event, and notification deliveries", (
    "ALTER TABLE events ADD COLUMN snapshot TEXT",
    "CREATE TABLE deliveries (event_id TEXT NOT NULL REFERENCES events (id), target TEXT NOT NULL, at REAL)",
))


def version_one_with_events(tmp_path: Path) -> Path:
    path = events_path(tmp_path)
    with EventStore(path) as store:
        for i in range(3):
            store.add(event(DAY + i))
    return path


def columns(connection: sqlite3.Connection) -> list[str]:
    return [row[1] for row in connection.execute("PRAGMA table_info(events)")]


def test_a_later_migration_applies_on_top_and_keeps_the_events(tmp_path: Path) -> None:
    path = version_one_with_events(tmp_path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(connection, path, (*MIGRATIONS, SNAPSHOTS)) == 2
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        assert columns(connection)[-1] == "snapshot"
        assert connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
        assert migrate(connection, path, (*MIGRATIONS, SNAPSHOTS)) == 2  # applied once only
    finally:
        connection.close()
    with pytest.raises(EventStoreError, match="schema version 2, this stream-detect knows up to 1"):
        EventStore(path)  # this code's migrations end at 1


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    path = version_one_with_events(tmp_path)
    broken = Migration(2, "half a change", ("ALTER TABLE events ADD COLUMN snapshot TEXT", "CREATE TABLE oops ("))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(EventStoreError, match=re.escape("migration to schema version 2 (half a change) failed")):
            migrate(connection, path, (*MIGRATIONS, broken))
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "snapshot" not in columns(connection)
    finally:
        connection.close()
    with EventStore(path) as store:  # still a good version 1 database
        assert len(store.query()[0]) == 3
