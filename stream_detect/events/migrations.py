"""The event database's schema, as an ordered list of migrations.

The schema version is SQLite's ``PRAGMA user_version``: 0 for a new file,
``N`` once the first ``N`` migrations are applied. Each migration runs in
one transaction together with the version bump, so a crash leaves the
database at the old version or the new one. A later issue appends a
migration (snapshot and clip columns, a deliveries table); one already
released is never edited.

Before anything is written, :func:`check_file` reads the file read-only: a
file that is not an SQLite database, is damaged, belongs to another program
or has a newer schema than this code knows is an :class:`EventStoreError`
naming the file, and its bytes are left as they were.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ..errors import EventStoreError
from ..sqlite_files import Migration, apply_migrations

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SQLITE_HEADER", "Migration", "check_file", "migrate"]

SQLITE_HEADER = b"SQLite format 3\x00"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events with their envelope's fields as columns, indexed for the history's queries", (
        """CREATE TABLE events (
            id TEXT PRIMARY KEY NOT NULL,
            at REAL NOT NULL,
            stream TEXT NOT NULL,
            kind TEXT NOT NULL,
            version INTEGER NOT NULL,
            frame INTEGER NOT NULL,
            track_id INTEGER NOT NULL,
            label TEXT NOT NULL,
            score REAL NOT NULL,
            xmin REAL NOT NULL,
            ymin REAL NOT NULL,
            xmax REAL NOT NULL,
            ymax REAL NOT NULL,
            zone TEXT,
            line TEXT,
            direction TEXT,
            duration_s REAL,
            extra TEXT
        )""",
        # Pages are newest first on (at, id); each filter has an index that ends in (at, id) so a page
        # is a range scan, not a sort. (stream, kind, at) also serves /counts.
        "CREATE INDEX events_at ON events (at, id)",
        "CREATE INDEX events_stream_at ON events (stream, at, id)",
        "CREATE INDEX events_stream_kind_at ON events (stream, kind, at, id)",
        "CREATE INDEX events_kind_at ON events (kind, at, id)",
        "CREATE INDEX events_label_at ON events (label, at, id)",
        "CREATE INDEX events_zone_at ON events (zone, at, id) WHERE zone IS NOT NULL",
        "CREATE INDEX events_line_at ON events (line, at, id) WHERE line IS NOT NULL",
    )),
    # EventReader.object_of: an event's object.start (and an object.end between them) is one seek on
    # (stream, track_id, kind) and a step back in (at, id). Without it SQLite walks back through every
    # object.start of the stream since the object began: 35 ms at 100,000 events, 0.3 ms with it.
    Migration(2, "events indexed by stream, track id and kind, for the object an event belongs to", (
        "CREATE INDEX events_stream_track_kind_at ON events (stream, track_id, kind, at, id)",
    )),
)

LATEST_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1)), "migrations are numbered 1, 2, ..."
OWN_TABLES = frozenset({"events"})


def check_file(path: Path, *, thorough: bool = False) -> int:
    """The schema version of the database at ``path`` (0 when it does not exist or is empty).

    Reads only: a file this code must not touch raises and stays as it was. ``thorough`` also
    runs SQLite's ``quick_check`` over every page (about 45 ms per 100,000 events), so that a
    damaged file is refused at open rather than failing writes later.

    Raises:
        EventStoreError: not an SQLite database, damaged, not an events database, or a newer schema.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise EventStoreError(f"events database {path} cannot be read: {error.strerror or error}") from None
    if header != SQLITE_HEADER:
        raise EventStoreError(f"events database {path} is not an SQLite database (corrupt or another file); "
                              "move it away to start a new history")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as error:
        raise EventStoreError(f"events database {path} cannot be opened: {error}") from None
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if thorough:
            problem = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise EventStoreError(f"events database {path} is corrupt ({str(problem)[:200]}); "
                                      "move it away to start a new history")
    except sqlite3.DatabaseError as error:
        raise EventStoreError(f"events database {path} is corrupt ({error}); "
                              "move it away to start a new history") from None
    finally:
        connection.close()
    if version > LATEST_VERSION:
        raise EventStoreError(f"events database {path} has schema version {version}, this stream-detect "
                              f"knows up to {LATEST_VERSION}: run a newer stream-detect or use another data directory")
    if version == 0 and tables - OWN_TABLES:
        raise EventStoreError(f"events database {path} is an SQLite database of another program "
                              f"(tables {', '.join(sorted(tables)[:5])}); use another data directory")
    return version


def migrate(connection: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Applies the ``migrations`` ``connection``'s database lacks, one transaction each; returns the version.

    ``connection`` is in autocommit mode (``isolation_level=None``) and is the only writer;
    ``migrations`` are in order, numbered from 1 without gaps.

    Raises:
        EventStoreError: the schema is newer than this code, or a migration failed (it is rolled back).
    """
    latest = migrations[-1].version
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > latest:
        raise EventStoreError(f"events database {path} has schema version {version}, this stream-detect "
                              f"knows up to {latest}")
    return apply_migrations(connection, migrations, lambda migration, error: EventStoreError(
        f"events database {path}: migration to schema version {migration.version} "
        f"({migration.description}) failed: {error}"))
