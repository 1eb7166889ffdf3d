"""The event history's writer: events kept in SQLite, written by one thread.

:class:`EventStore` owns the database file ``DATA_DIR/events.db`` (one
writer at a time, see below). Callers hand it events with :meth:`~EventStore.add`,
which checks the envelope, puts its row on a bounded queue and returns; the
``events-writer`` thread takes what the queue holds and commits it, at most
1,000 rows per transaction, as soon as it takes it. Queries run on their own
read-only connections (:class:`~stream_detect.events.query.EventReader`) and
never wait for the writer.

Durability: WAL journal, ``synchronous=NORMAL``. A commit is a ``write()``
into the WAL, so it survives the process being killed (SIGKILL, OOM killer);
what a kill loses is what sat in the queue, i.e. the events of the last
transaction's duration: milliseconds at these rates, well under the second
issue 18 allows, as long as events arrive slower than the writer commits
them. An operating system crash or a power cut may also roll back the commits
since the last checkpoint, never corrupting the file; ``synchronous=FULL``
(an fsync per commit) would close that window at the cost measured below,
which events do not warrant.

Back-pressure: the queue holds ``queue_size`` rows (10,000 by default; the
writer empties it in a sixth of a second). When it is full, ``add`` waits up to
``full_wait_s`` (0.25 s) for room, then drops the event, counts it in
:attr:`WriterStats.dropped` and logs a warning (at most one per 10 s).
Events are never lost silently: a transaction that fails (disk full) is
retried once, then its rows are counted in ``lost`` and logged.

Retention: by age (``max_age_days``, on the events' own ``at``) and by count
(``max_events``, the newest kept), applied when the store opens and then by
the writer every ``retention_interval_s`` (60 s), in transactions of 10,000
rows. Between two passes the count may exceed ``max_events`` by what arrived
meanwhile.

Shutdown: :meth:`~EventStore.close` commits what is queued and stops the
writer. A program that ends without calling it still exits: the writer sees
the main thread gone (within a second), commits what is queued and stops.

Writer exclusivity: the writer holds an advisory lock (``flock``) on
``events.db.lock`` beside the database for as long as it is open. A second
``EventStore`` on the same file, in this process or another, is an
:class:`EventStoreError` naming the holder's pid; an :class:`EventReader`
may read beside it at any time.

Measured (``python -m tests.events.bench``; 2 shared cores, ext4 on a virtual
disk, SQLite 3.40, Python 3.11):

- adds: about 60,000 events per second sustained from one thread, ``add``
  through commit (the caller's envelope check is the limit, not SQLite);
  one event per transaction, each waited for, the worst case: about 6,900 per
  second (``synchronous=FULL``: about 3,500, an fsync each);
- queries on 100,000 events (medians): the default page of 100, newest first,
  0.35 ms unfiltered and filtered by stream or kind, 0.7 ms by stream, kind
  and label together; the 50th page through its cursor as fast as the first;
  a page of 1,000 2.8 ms; ``get`` 0.08 ms; ``counts`` by hour over all of it
  48 ms; the default page while the writer adds at full speed 0.45 ms.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EventStoreError, InputError
from ..sqlite_files import WriterLock
from .envelope import COLUMNS, Row, row_of
from .migrations import check_file, migrate
from .query import DEFAULT_LIMIT, EventReader

log = logging.getLogger(__name__)

EVENTS_FILE = "events.db"
MAX_BATCH = 1000
RETENTION_BATCH = 10_000
MAX_RETENTION_BATCHES = 1000  # a pass deletes at most 10 million rows; the next pass goes on
DROP_LOG_INTERVAL_S = 10.0
WRITE_RETRY_WAIT_S = 0.2

_INSERT = f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


@dataclass(frozen=True)
class WriterStats:
    """What the writer did since the store opened (counters, for metrics)."""

    written: int  # rows committed (an id already stored is ignored, and still counted here)
    dropped: int  # add() found the queue full for full_wait_s
    lost: int  # rows of transactions that failed twice
    deleted: int  # rows removed by retention
    queued: int  # rows waiting for the writer now


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


_STOP = object()


def events_path(data_dir: Path) -> Path:
    """Where the event history of a data directory is kept."""
    return data_dir / EVENTS_FILE


def _writer_lock(database: Path) -> WriterLock:
    return WriterLock(
        database,
        cannot_open=lambda error, lock: EventStoreError(
            f"events database {database} cannot be opened for writing: {error.strerror or error} ({lock})"),
        held=lambda holder: EventStoreError(
            f"events database {database} is open for writing already (by pid {holder}): "
            "one stream-detect writes a data directory at a time"))


class EventStore:
    """The event history of one data directory: ``add`` from any thread, query from any thread.

    Args:
        path: the database file (``events_path(data_dir)``); created with its directory if missing.
        max_age_days: events whose ``at`` is older are deleted (``None``: kept whatever their age).
        max_events: only the newest this many are kept (``None``: no limit).
        queue_size: rows waiting for the writer at most.
        full_wait_s: how long ``add`` waits for room in a full queue before dropping the event.
        retention_interval_s: how often the writer applies retention.
        clock: epoch seconds now, for retention by age.

    Raises:
        EventStoreError: the file is corrupt, not an events database, from a newer stream-detect,
            or open for writing by another process. The file is left as it was.
    """

    def __init__(self, path: Path, *, max_age_days: float | None = None, max_events: int | None = None,
                 queue_size: int = 10_000, full_wait_s: float = 0.25, retention_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        if max_age_days is not None and not max_age_days > 0:
            raise InputError(f"max_age_days must be positive, not {max_age_days!r}")
        if max_events is not None and not max_events >= 1:
            raise InputError(f"max_events must be at least 1, not {max_events!r}")
        if queue_size < 1:
            raise InputError(f"queue_size must be at least 1, not {queue_size!r}")
        self.path = path
        self.max_age_days = max_age_days
        self.max_events = max_events
        self.full_wait_s = full_wait_s
        self.retention_interval_s = retention_interval_s
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._counts_lock = threading.Lock()
        self._written = self._dropped = self._lost = self._deleted = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EventStoreError(f"events database {path}: its directory cannot be made: "
                                  f"{error.strerror or error}") from None
        self._lock = _writer_lock(path)
        try:
            check_file(path, thorough=True)
            self._connection = self._open_writer()
        except BaseException:
            self._lock.release()
            raise
        self.reader = EventReader(path)  # cannot fail now: the file is checked and at the latest version
        self._thread = threading.Thread(target=self._run, name="events-writer")
        self._thread.start()

    def _open_writer(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=5, check_same_thread=False)
        except sqlite3.Error as error:
            raise EventStoreError(f"events database {self.path} cannot be opened: {error}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise EventStoreError(f"events database {self.path} cannot use a write-ahead log "
                                      f"(journal mode stays {mode!r}): is its file system a network one?")
            connection.execute("PRAGMA synchronous = NORMAL")
            migrate(connection, self.path)
            self._retain(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise EventStoreError(f"events database {self.path} is corrupt ({error}); "
                                  "move it away to start a new history") from None
        except BaseException:
            connection.close()
            raise
        return connection

    # --- the caller's side ---------------------------------------------------------------

    def add(self, event: Mapping[str, Any]) -> None:
        """Queues ``event`` (the envelope) for the writer and returns.

        Waits at most ``full_wait_s`` when the queue is full, then drops the event (counted, logged).

        Raises:
            InputError: the event is not a valid envelope.
            EventStoreError: the store is closed.
        """
        if self._closed:
            raise EventStoreError(f"events database {self.path} is closed")
        row = row_of(event)
        try:
            self._queue.put(row, timeout=self.full_wait_s)
        except queue.Full:
            with self._counts_lock:
                self._dropped += 1
                dropped = self._dropped
                now = time.monotonic()
                report = now - self._last_drop_log >= DROP_LOG_INTERVAL_S
                if report:
                    self._last_drop_log = now
            if report:
                log.warning("events database %s: the writer is behind; events dropped so far: %d", self.path, dropped)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every event added before the call is committed; False if ``timeout`` passed first."""
        if self._closed or not self._thread.is_alive():
            return self._queue.empty()
        deadline = time.monotonic() + timeout
        marker = _Flush(threading.Event())
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """Commits what is queued and closes the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("events database %s: the writer did not stop within %.0f s; %d events not committed",
                      self.path, timeout, self._queue.qsize())
            return  # the writer still owns the connection and the lock
        self._lock.release()
        late = sum(1 for _ in range(self._queue.qsize()) if isinstance(self._queue.get_nowait(), tuple))
        if late:  # added by another thread while the store was closing
            with self._counts_lock:
                self._lost += late
            log.error("events database %s: %d events added while closing were not written", self.path, late)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def stats(self) -> WriterStats:
        with self._counts_lock:
            return WriterStats(self._written, self._dropped, self._lost, self._deleted, self._queue.qsize())

    # --- queries, on their own connections --------------------------------------------------

    def query(self, *, stream: str | None = None, kind: str | None = None, label: str | None = None,
              zone: str | None = None, line: str | None = None, after: float | None = None,
              before: float | None = None, limit: int = DEFAULT_LIMIT,
              cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """See :meth:`EventReader.query`."""
        return self.reader.query(stream=stream, kind=kind, label=label, zone=zone, line=line, after=after,
                                 before=before, limit=limit, cursor=cursor)

    def get(self, event_id: str) -> dict[str, Any] | None:
        """See :meth:`EventReader.get`."""
        return self.reader.get(event_id)

    def counts(self, *, stream: str | None = None, after: float | None = None, before: float | None = None,
               bucket: str = "hour") -> dict[str, Any]:
        """See :meth:`EventReader.counts`."""
        return self.reader.counts(stream=stream, after=after, before=before, bucket=bucket)

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        next_retention = time.monotonic() + self.retention_interval_s
        stopping = False
        try:
            while not stopping:
                wait = max(0.01, min(1.0, next_retention - time.monotonic()))
                rows, markers, stopping = self._take(wait)
                if rows:
                    self._write(rows)
                for marker in markers:
                    marker.done.set()
                if not stopping and not threading.main_thread().is_alive():
                    # The program ends without close(): commit what is queued, and do not hold up its exit.
                    self._closed = True
                    stopping = self._drain()
                if time.monotonic() >= next_retention:
                    try:
                        self._retain(self._connection)
                    except sqlite3.Error as error:  # kept events are only kept longer; try again next time
                        log.error("events database %s: retention failed: %s", self.path, error)
                    next_retention = time.monotonic() + self.retention_interval_s
        except Exception:
            log.exception("events database %s: the writer failed; events are no longer kept", self.path)
        finally:
            self._connection.close()

    def _drain(self) -> bool:
        """Writes what is queued now (bounded by the queue's size); True once done."""
        for _ in range(self._queue.maxsize // MAX_BATCH + 2):
            rows, markers, _ = self._take(0.01)
            if rows:
                self._write(rows)
            for marker in markers:
                marker.done.set()
            if not rows and not markers:
                break
        return True

    def _take(self, wait_s: float) -> tuple[list[Row], list[_Flush], bool]:
        """What the queue holds now (waiting up to ``wait_s`` for a first item), at most MAX_BATCH rows."""
        rows: list[Row] = []
        markers: list[_Flush] = []
        stopping = False
        try:
            item = self._queue.get(timeout=wait_s)
        except queue.Empty:
            return rows, markers, stopping
        for _ in range(MAX_BATCH + 1):
            if item is _STOP:
                stopping = True  # nothing is added after close(); what is queued before it is written
            elif isinstance(item, _Flush):
                markers.append(item)
            else:
                rows.append(item)
            if len(rows) >= MAX_BATCH:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return rows, markers, stopping

    def _write(self, rows: list[Row]) -> None:
        for attempt in range(2):
            try:
                self._connection.execute("BEGIN")
                self._connection.executemany(_INSERT, rows)
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    if self._connection.in_transaction:
                        self._connection.execute("ROLLBACK")
                if attempt == 0:
                    time.sleep(WRITE_RETRY_WAIT_S)
                    continue
                with self._counts_lock:
                    self._lost += len(rows)
                log.error("events database %s: %d events not written: %s", self.path, len(rows), error)
                return
            with self._counts_lock:
                self._written += len(rows)
            return

    def _retain(self, connection: sqlite3.Connection) -> None:
        """Deletes what retention no longer keeps, in small transactions."""
        deleted = 0
        if self.max_age_days is not None:
            oldest = self._clock() - self.max_age_days * 86400.0
            deleted += self._delete(connection, "at < ?", [oldest])
        if self.max_events is not None:
            kept_last = connection.execute("SELECT at, id FROM events ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?",
                                           [self.max_events - 1]).fetchone()
            if kept_last is not None:
                deleted += self._delete(connection, "(at, id) < (?, ?)", list(kept_last))
        if deleted:
            with self._counts_lock:
                self._deleted += deleted
            log.info("events database %s: retention deleted %d events", self.path, deleted)

    def _delete(self, connection: sqlite3.Connection, condition: str, params: list[Any]) -> int:
        deleted = 0
        for _ in range(MAX_RETENTION_BATCHES):
            cursor = connection.execute(
                f"DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE {condition} LIMIT ?)",
                [*params, RETENTION_BATCH])
            deleted += cursor.rowcount
            if cursor.rowcount < RETENTION_BATCH:
                break
        return deleted
