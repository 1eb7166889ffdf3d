"""Reading the event history: filtered pages newest first, one event, counts per time bucket.

Every call opens its own read-only connection (``mode=ro``, ``query_only``):
in WAL mode a reader sees the last committed state and neither waits for the
writer nor makes it wait, whether the writer is a thread of this process or
another process. Opening costs well under a millisecond.

Pages are ordered by ``(at, id)`` descending and continue from a cursor
(keyset pagination): a page is an index range scan, as fast on the
thousandth page as on the first, and events added meanwhile neither shift
nor repeat the pages that follow. The cursor is opaque to clients; it is the
base64url (unpadded) of the JSON ``[1, at, id]`` of the last event of the
page, ``1`` being the cursor format's version. A cursor is a position in
that order, so it may be used with other filters too.

Times are epoch seconds (UTC); ``after`` is inclusive and ``before``
exclusive: ``[after, before)``.

Objects: every event of a tracked object names its stream and ``track_id``,
and the object is its ``object.start`` event. Track ids restart from 1 in
every run of the analyzer, so :meth:`EventReader.object_of` takes the newest
``object.start`` of the same stream and track id at or before the event, and
refuses it when that track id ended (an ``object.end``) in between: the
event's own start is then missing (dropped or deleted), and the start found
belongs to an earlier run.
"""

from __future__ import annotations

import base64
import binascii
import math
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import EventStoreError, InputError
from .envelope import COLUMNS, KINDS, event_of
from .migrations import LATEST_VERSION, check_file

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_COUNT_ROWS = 100_000
CURSOR_VERSION = 1
MAX_CURSOR_CHARS = 1000
MAX_PARAMS = 500  # ids per IN (...) of existing(): well under SQLite's variable limit

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM events"


def encode_cursor(at: float, event_id: str) -> str:
    """The cursor that continues after the event at ``(at, event_id)``."""
    return base64.urlsafe_b64encode(orjson.dumps([CURSOR_VERSION, at, event_id])).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The ``(at, id)`` position a cursor of :func:`encode_cursor` holds.

    Raises:
        InputError: ``cursor`` is not one this module made.
    """
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        version, at, event_id = data
        if (version != CURSOR_VERSION or isinstance(at, bool) or not isinstance(at, int | float)
                or not math.isfinite(at) or not isinstance(event_id, str)):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InputError(f"cursor {cursor[:40]!r} is not a cursor of this server: pass the 'next' of a page") from None
    return float(at), event_id


def _time(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number of epoch seconds, not {value!r:.100}")
    return float(value)


def _time_range(after: float | None, before: float | None) -> tuple[float | None, float | None]:
    after, before = _time("after", after), _time("before", before)
    if after is not None and before is not None and after > before:
        raise InputError(f"after ({after}) is later than before ({before})")
    return after, before


class EventQueries(Protocol):
    """What the HTTP routes need of the history (an :class:`EventReader` or an ``EventStore``)."""

    def query(self, *, stream: str | None = None, kind: str | None = None, label: str | None = None,
              zone: str | None = None, line: str | None = None, after: float | None = None,
              before: float | None = None, limit: int = DEFAULT_LIMIT,
              cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]: ...

    def get(self, event_id: str) -> dict[str, Any] | None: ...

    def counts(self, *, stream: str | None = None, after: float | None = None, before: float | None = None,
               bucket: str = "hour") -> dict[str, Any]: ...


class ObjectQueries(EventQueries, Protocol):
    """The history with the objects' questions too (an :class:`EventReader`)."""

    def object_of(self, event_id: str) -> str | None: ...

    def existing(self, event_ids: Collection[str]) -> set[str]: ...


class EventReader:
    """Queries on an events database, safe from any thread and beside any writer.

    Raises:
        EventStoreError: (at construction) the file is missing, corrupt, or not at this code's schema version.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise EventStoreError(f"events database {path} does not exist")
        version = check_file(path)
        if version != LATEST_VERSION:
            raise EventStoreError(f"events database {path} has schema version {version}, older than this "
                                  f"stream-detect's {LATEST_VERSION}: open it for writing once to migrate it")
        self._uri = f"{path.resolve().as_uri()}?mode=ro"

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self._uri, uri=True, timeout=5, check_same_thread=False)
            connection.execute("PRAGMA query_only = 1")
        except sqlite3.Error as error:
            raise EventStoreError(f"events database {self.path} cannot be read: {error}") from None
        return connection

    def _rows(self, sql: str, params: list[Any], max_rows: int) -> list[tuple[Any, ...]]:
        connection = self._connect()
        try:
            return connection.execute(sql, params).fetchmany(max_rows)
        except sqlite3.DatabaseError as error:
            raise EventStoreError(f"events database {self.path} cannot be read: {error}") from None
        finally:
            connection.close()

    def query(self, *, stream: str | None = None, kind: str | None = None, label: str | None = None,
              zone: str | None = None, line: str | None = None, after: float | None = None,
              before: float | None = None, limit: int = DEFAULT_LIMIT,
              cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of events matching every filter given, newest first.

        Args:
            stream, kind, label, zone, line: exact values to match (``None``: any).
            after, before: epoch seconds, ``after <= at < before``.
            limit: events per page, 1 to 1000.
            cursor: the ``next`` of the previous page.

        Returns:
            The page's events (envelopes, newest first) and the cursor of the next page,
            ``None`` when this page is the last.

        Raises:
            InputError: an unknown kind, a limit out of range, ``after > before``, a bad cursor.
            EventStoreError: the database cannot be read.
        """
        if kind is not None and kind not in KINDS:
            raise InputError(f"kind {kind!r:.100} is not one of {', '.join(KINDS)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r:.100}")
        after, before = _time_range(after, before)
        terms: list[str] = []
        params: list[Any] = []
        for column, value in (("stream", stream), ("kind", kind), ("label", label), ("zone", zone), ("line", line)):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            terms.append("at >= ?")
            params.append(after)
        if before is not None:
            terms.append("at < ?")
            params.append(before)
        if cursor is not None:
            terms.append("(at, id) < (?, ?)")
            params.extend(decode_cursor(cursor))
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        rows = self._rows(f"{_SELECT}{where} ORDER BY at DESC, id DESC LIMIT ?", [*params, limit + 1], limit + 1)
        page = [event_of(row) for row in rows[:limit]]
        following = encode_cursor(page[-1]["at"], page[-1]["id"]) if len(rows) > limit else None
        return page, following

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The event with ``event_id``, or ``None``."""
        rows = self._rows(f"{_SELECT} WHERE id = ?", [event_id], 1)
        return event_of(rows[0]) if rows else None

    def object_of(self, event_id: str) -> str | None:
        """The id of the ``object.start`` event of the object ``event_id`` belongs to (itself for an
        ``object.start``), or ``None``: no such event, or its object's start is not in the history.

        The start is the newest ``object.start`` of the event's stream and track id at or before the
        event in ``(at, id)`` order, provided no ``object.end`` of that stream and track id lies
        strictly between the two (see the module's docstring).

        Raises:
            EventStoreError: the database cannot be read.
        """
        connection = self._connect()
        try:
            found = connection.execute("SELECT stream, track_id, at, kind FROM events WHERE id = ?",
                                       [event_id]).fetchone()
            if found is None:
                return None
            stream, track_id, at, kind = found
            if kind == "object.start":
                return event_id
            start = connection.execute(
                "SELECT id, at FROM events WHERE stream = ? AND track_id = ? AND kind = 'object.start' "
                "AND (at, id) <= (?, ?) ORDER BY at DESC, id DESC LIMIT 1",
                [stream, track_id, at, event_id]).fetchone()
            if start is None:
                return None
            start_id, start_at = start
            ended_between = connection.execute(
                "SELECT 1 FROM events WHERE stream = ? AND track_id = ? AND kind = 'object.end' "
                "AND (at, id) > (?, ?) AND (at, id) < (?, ?) LIMIT 1",
                [stream, track_id, start_at, start_id, at, event_id]).fetchone()
            return None if ended_between is not None else str(start_id)
        except sqlite3.DatabaseError as error:
            raise EventStoreError(f"events database {self.path} cannot be read: {error}") from None
        finally:
            connection.close()

    def existing(self, event_ids: Collection[str]) -> set[str]:
        """Which of ``event_ids`` are in the history (one connection, :data:`MAX_PARAMS` ids a query).

        Raises:
            EventStoreError: the database cannot be read.
        """
        wanted = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        connection = self._connect()
        try:
            for first in range(0, len(wanted), MAX_PARAMS):
                chunk = wanted[first:first + MAX_PARAMS]
                marks = ", ".join("?" * len(chunk))
                found.update(row[0] for row in connection.execute(f"SELECT id FROM events WHERE id IN ({marks})",
                                                                  chunk))
        except sqlite3.DatabaseError as error:
            raise EventStoreError(f"events database {self.path} cannot be read: {error}") from None
        finally:
            connection.close()
        return found

    def counts(self, *, stream: str | None = None, after: float | None = None, before: float | None = None,
               bucket: str = "hour") -> dict[str, Any]:
        """Line crossings per line and direction, and zone entries per zone, per time bucket.

        Buckets are aligned on the epoch in UTC (an hour bucket starts at a whole UTC hour); only
        buckets with at least one crossing or entry are listed, oldest first::

            {"bucket": "hour", "bucket_s": 3600, "after": 1700000000.0 | null, "before": ... | null,
             "buckets": [{"start": 1700000000, "end": 1700003600,
                          "lines": [{"stream": "gate-cam", "line": "gate", "in": 3, "out": 1}],
                          "zones": [{"stream": "gate-cam", "zone": "porch", "entered": 2}]}]}

        ``lines`` and ``zones`` are sorted by stream and name; a line with crossings one way only
        still has both directions (the other 0).

        Raises:
            InputError: an unknown bucket, ``after > before``, or more rows than one answer holds.
            EventStoreError: the database cannot be read.
        """
        if bucket not in BUCKETS:
            raise InputError(f"bucket {bucket!r:.100} is not one of {', '.join(BUCKETS)}")
        size = BUCKETS[bucket]
        after, before = _time_range(after, before)
        terms = ["kind IN ('line.cross', 'zone.enter')"]
        params: list[Any] = []
        for term, value in (("stream = ?", stream), ("at >= ?", after), ("at < ?", before)):
            if value is not None:
                terms.append(term)
                params.append(value)
        # floor(at / size): CAST truncates toward zero, the comparison corrects negative quotients.
        start = f"(CAST(at / {size} AS INTEGER) - (at / {size} < CAST(at / {size} AS INTEGER)))"
        sql = (f"SELECT {start} AS bucket_start, stream, kind, COALESCE(line, zone) AS name, direction, COUNT(*) "
               f"FROM events WHERE {' AND '.join(terms)} "
               "GROUP BY bucket_start, stream, kind, name, direction ORDER BY bucket_start, stream, name")
        rows = self._rows(sql, params, MAX_COUNT_ROWS + 1)
        if len(rows) > MAX_COUNT_ROWS:
            raise InputError(f"more than {MAX_COUNT_ROWS} counts: narrow after and before or use a larger bucket")
        buckets: dict[int, dict[str, Any]] = {}
        lines: dict[tuple[int, str, str], dict[str, Any]] = {}
        for index, stream_id, kind, name, direction, count in rows:
            entry = buckets.setdefault(index, {"start": index * size, "end": (index + 1) * size,
                                               "lines": [], "zones": []})
            if kind == "line.cross":
                key = (index, stream_id, name)
                if key not in lines:
                    lines[key] = {"stream": stream_id, "line": name, "in": 0, "out": 0}
                    entry["lines"].append(lines[key])
                if direction in ("in", "out"):
                    lines[key][direction] += count
            else:
                entry["zones"].append({"stream": stream_id, "zone": name, "entered": count})
        return {"bucket": bucket, "bucket_s": size, "after": after, "before": before,
                "buckets": list(buckets.values())}
