"""The webhooks' durable outbox: one row per (event, webhook) in ``DATA_DIR/webhooks.db`` (SQLite).

A file of its own rather than a table in ``events.db``: webhooks work with
the event history turned off, and the history keeps its single writer (and
its lock); each file has one writer and versioned migrations of its own,
applied at open in one transaction each (``PRAGMA user_version``).

Durability: WAL journal, ``synchronous=FULL``. :meth:`Outbox.add` returns
once its transaction is committed and fsynced: the deliveries it wrote
survive the process being killed and the machine losing power. Events are
rare next to frames, so each ``add`` is one transaction (measured on 2 shared
cores, ext4 on a virtual disk: ``WebhookSink.on_event`` for an event matching
two webhooks, one transaction with its fsync, took 0.35 ms median, 1.1 ms at
the 99th percentile, over 500 events while both workers retried). Every
attempt's outcome is committed the same way before the next attempt of that
webhook starts; a kill between a receiver's answer and that commit repeats
the attempt after the restart with the same ``webhook-id`` (at-least-once,
which receivers de-duplicate).

Writer exclusivity: an advisory lock (``flock``) on ``webhooks.db.lock`` for
as long as the outbox is open; a second writer, in this process or another,
is a :class:`WebhookOutboxError` naming the holder's pid. Readers
(:class:`DeliveryReader`, the HTTP route) open their own read-only
connections and never wait for the writer.

Retention: delivered and failed rows are deleted ``keep_finished_days``
after they finished (:meth:`Outbox.prune`); pending rows are kept until
they are delivered or their webhook's ``max_age_h`` passes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, StreamDetectError
from ..events.migrations import SQLITE_HEADER
from ..events.query import decode_cursor, encode_cursor
from ..sqlite_files import Migration, WriterLock, apply_migrations

OUTBOX_FILE = "webhooks.db"
STATUSES = ("pending", "delivered", "failed")
PRUNE_BATCH = 10_000
MAX_ERROR_CHARS = 500


class WebhookOutboxError(StreamDetectError, RuntimeError):
    """The outbox cannot be used: its file is corrupt, another program's, from a newer version, or held
    by another writer."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "deliveries: one per event and webhook, with its state and schedule", (
        """CREATE TABLE deliveries (
            webhook_id TEXT PRIMARY KEY NOT NULL,
            hook TEXT NOT NULL,
            url TEXT NOT NULL,
            event_id TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL,
            last_at REAL,
            last_status INTEGER,
            last_error TEXT,
            finished_at REAL
        )""",
        # A webhook's worker asks for its due rows: a range scan over the pending ones only.
        "CREATE INDEX deliveries_due ON deliveries (hook, next_at) WHERE status = 'pending'",
        # Pages are newest first on (created_at, webhook_id), with or without a status.
        "CREATE INDEX deliveries_created ON deliveries (created_at, webhook_id)",
        "CREATE INDEX deliveries_status_created ON deliveries (status, created_at, webhook_id)",
        "CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL",
    )),
)
LATEST_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1)), "migrations are numbered 1, 2, ..."
OWN_TABLES = frozenset({"deliveries"})

_FIELDS = ("webhook_id", "event_id", "url", "status", "attempts", "created_at", "last_at", "last_status",
           "last_error", "next_at", "finished_at")


def outbox_path(data_dir: Path) -> Path:
    """Where the webhooks' outbox of a data directory is kept."""
    return data_dir / OUTBOX_FILE


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to queue: ``body`` (the event's JSON) to the webhook ``hook``."""

    webhook_id: str
    hook: str
    url: str  # already redacted: the outbox never holds credentials
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Due:
    """A pending delivery whose next attempt is due."""

    webhook_id: str
    event_id: str
    body: bytes
    created_at: float
    attempts: int


def check_file(path: Path) -> int:
    """The schema version of the outbox at ``path`` (0 when missing or empty); reads only.

    Raises:
        WebhookOutboxError: not SQLite, damaged, another program's database, or a newer schema.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise WebhookOutboxError(f"webhook outbox {path} is not an SQLite database; move it away to start anew")
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except (OSError, sqlite3.Error) as error:
        raise WebhookOutboxError(f"webhook outbox {path} cannot be opened: {error}") from None
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise WebhookOutboxError(f"webhook outbox {path} is corrupt ({error}); move it away to start anew") from None
    finally:
        connection.close()
    if version > LATEST_VERSION:
        raise WebhookOutboxError(f"webhook outbox {path} has schema version {version}, this stream-detect knows "
                                 f"up to {LATEST_VERSION}: run a newer stream-detect or use another data directory")
    if version == 0 and tables - OWN_TABLES:
        raise WebhookOutboxError(f"webhook outbox {path} is an SQLite database of another program; "
                                 "use another data directory")
    return version


def migrate(connection: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Applies the migrations the outbox lacks, one transaction each (autocommit ``connection``)."""
    return apply_migrations(connection, migrations, lambda migration, error: WebhookOutboxError(
        f"webhook outbox {path}: migration to version {migration.version} ({migration.description}) "
        f"failed: {error}"))


def _writer_lock(database: Path) -> WriterLock:
    return WriterLock(
        database,
        cannot_open=lambda error, lock: WebhookOutboxError(
            f"webhook outbox {database} cannot be opened: {error.strerror or error}"),
        held=lambda holder: WebhookOutboxError(
            f"webhook outbox {database} is open already (by pid {holder}): "
            "one stream-detect uses a data directory at a time"))


class Outbox:
    """The writer of ``webhooks.db``: one connection, used by any thread under a lock; short transactions.

    Raises:
        WebhookOutboxError: see :func:`check_file`, or another writer holds the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WebhookOutboxError(f"webhook outbox {path}: its directory cannot be made: "
                                     f"{error.strerror or error}") from None
        self._writer_lock = _writer_lock(path)
        try:
            check_file(path)
            self._connection = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
            try:
                if self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                    raise WebhookOutboxError(f"webhook outbox {path} cannot use a write-ahead log")
                self._connection.execute("PRAGMA synchronous = FULL")
                migrate(self._connection, path)
            except BaseException:
                self._connection.close()
                raise
        except sqlite3.DatabaseError as error:
            self._writer_lock.release()
            raise WebhookOutboxError(f"webhook outbox {path} is corrupt ({error}); "
                                     "move it away to start anew") from None
        except BaseException:
            self._writer_lock.release()
            raise
        self._closed = False
        self.reader = DeliveryReader(path)

    def _transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int]:
        """Runs ``statements`` in one committed transaction; their row counts."""
        with self._lock:
            if self._closed:
                raise WebhookOutboxError(f"webhook outbox {self.path} is closed")
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                counts = [self._connection.execute(sql, params).rowcount for sql, params in statements]
                self._connection.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    if self._connection.in_transaction:
                        self._connection.execute("ROLLBACK")
                raise
            return counts

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    def add(self, deliveries: Sequence[NewDelivery], now: float) -> list[bool]:
        """Queues ``deliveries`` in one transaction, committed when this returns; per delivery, whether
        it is new (a ``webhook_id`` already in the outbox is left as it is)."""
        counts = self._transaction(
            ("INSERT OR IGNORE INTO deliveries (webhook_id, hook, url, event_id, body, created_at, status, next_at) "
             "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)", (d.webhook_id, d.hook, d.url, d.event_id, d.body, now, now))
            for d in deliveries)
        return [count == 1 for count in counts]

    def due(self, hook: str, now: float, limit: int) -> list[Due]:
        """The webhook's pending deliveries due at ``now``, the most overdue first."""
        rows = self._select("SELECT webhook_id, event_id, body, created_at, attempts FROM deliveries "
                            "WHERE hook = ? AND status = 'pending' AND next_at <= ? ORDER BY next_at, created_at "
                            "LIMIT ?", (hook, now, limit))
        return [Due(str(r[0]), str(r[1]), bytes(r[2]), float(r[3]), int(r[4])) for r in rows]

    def next_due(self, hook: str) -> float | None:
        """When the webhook's next pending delivery is due (None: none pending)."""
        rows = self._select("SELECT min(next_at) FROM deliveries WHERE hook = ? AND status = 'pending'", (hook,))
        return None if rows[0][0] is None else float(rows[0][0])

    def pending_by_hook(self) -> dict[str, int]:
        return {str(hook): int(count) for hook, count in self._select(
            "SELECT hook, count(*) FROM deliveries WHERE status = 'pending' GROUP BY hook", ())}

    def record(self, webhook_id: str, *, at: float, status: str, status_code: int | None, error: str | None,
               next_at: float | None = None) -> None:
        """An attempt's outcome: ``status`` ``pending`` (again at ``next_at``), ``delivered`` or ``failed``."""
        finished = None if status == "pending" else at
        self._transaction([(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_at = ?, last_status = ?, "
            "last_error = ?, next_at = ?, finished_at = ? WHERE webhook_id = ?",
            (status, at, status_code, None if error is None else error[:MAX_ERROR_CHARS], next_at, finished,
             webhook_id))])

    def expire(self, webhook_id: str, *, at: float, reason: str) -> None:
        """Gives up on a pending delivery without an attempt (its retry horizon passed)."""
        self._transaction([("UPDATE deliveries SET status = 'failed', next_at = NULL, finished_at = ?, "
                            "last_error = coalesce(last_error || '; ', '') || ? WHERE webhook_id = ?",
                            (at, reason, webhook_id))])

    def hurry(self, hook: str, now: float) -> int:
        """Makes every pending delivery of the webhook that waits for a retry due now (the receiver is back)."""
        return self._transaction([("UPDATE deliveries SET next_at = ? WHERE hook = ? AND status = 'pending' "
                                   "AND attempts > 0 AND next_at > ?", (now, hook, now))])[0]

    def abandon_hooks(self, kept: Iterable[str], at: float) -> int:
        """Fails the pending deliveries of webhooks no longer configured; how many."""
        kept = list(kept)
        marks = ", ".join("?" * len(kept)) or "NULL"
        return self._transaction([(
            f"UPDATE deliveries SET status = 'failed', next_at = NULL, finished_at = ?, last_error = "
            f"coalesce(last_error || '; ', '') || 'its webhook is no longer configured' "
            f"WHERE status = 'pending' AND hook NOT IN ({marks})", (at, *kept))])[0]

    def prune(self, finished_before: float) -> int:
        """Deletes delivered and failed rows that finished before ``finished_before``, in small transactions."""
        deleted = 0
        while True:
            count = self._transaction([(
                "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries "
                "WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)", (finished_before, PRUNE_BATCH))])[0]
            deleted += count
            if count < PRUNE_BATCH:
                return deleted

    def close(self) -> None:
        """Closes the connection and releases the lock (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._connection.close()
        self._writer_lock.release()


class DeliveryReader:
    """Pages of deliveries, newest first, each on its own read-only connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection | None:
        if not self.path.exists():
            return None
        try:
            connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            connection.execute("PRAGMA query_only = 1")
        except sqlite3.Error as error:
            raise WebhookOutboxError(f"webhook outbox {self.path} cannot be read: {error}") from None
        return connection

    def deliveries(self, *, status: str | None = None, limit: int = 100,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page, newest first: the deliveries (without their bodies) and the next page's cursor.

        Raises:
            InputError: ``status`` is not one of :data:`STATUSES`, ``limit`` below 1, or a bad cursor.
            WebhookOutboxError: the file cannot be read.
        """
        if status is not None and status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        if cursor is not None:
            at, webhook_id = decode_cursor(cursor)
            conditions.append("(created_at, webhook_id) < (?, ?)")
            params += [at, webhook_id]
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        connection = self._connect()
        if connection is None:
            return [], None
        try:
            rows = connection.execute(f"SELECT {', '.join(_FIELDS)} FROM deliveries {where}"
                                      "ORDER BY created_at DESC, webhook_id DESC LIMIT ?",
                                      [*params, limit + 1]).fetchall()
        except sqlite3.Error as error:
            raise WebhookOutboxError(f"webhook outbox {self.path} cannot be read: {error}") from None
        finally:
            connection.close()
        page = [dict(zip(_FIELDS, row, strict=True)) for row in rows[:limit]]
        following = encode_cursor(page[-1]["created_at"], page[-1]["webhook_id"]) if len(rows) > limit else None
        return page, following

    def counts(self) -> dict[str, int]:
        """Deliveries in the outbox per status."""
        connection = self._connect()
        counts = dict.fromkeys(STATUSES, 0)
        if connection is None:
            return counts
        try:
            for status, count in connection.execute("SELECT status, count(*) FROM deliveries GROUP BY status"):
                counts[str(status)] = int(count)
        except sqlite3.Error as error:
            raise WebhookOutboxError(f"webhook outbox {self.path} cannot be read: {error}") from None
        finally:
            connection.close()
        return counts
