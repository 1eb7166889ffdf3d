"""What the project's SQLite files share: versioned migrations and the one-writer lock.

The event history (``events.db``) and the webhooks' outbox (``webhooks.db``)
each keep their schema as ordered migrations (:class:`Migration`) applied by
:func:`apply_migrations`, one transaction each, and each has one writer at a
time, held by a :class:`WriterLock`. Each caller says how its failures read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the lock is advisory and only guards against a second writer
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Migration:
    """One step of a schema: ``statements`` take it from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


def apply_migrations(connection: sqlite3.Connection, migrations: Sequence[Migration],
                     failed: Callable[[Migration, sqlite3.Error], Exception]) -> int:
    """Applies the migrations past the file's ``user_version``, each in one transaction with its version
    bump (``connection`` in autocommit); returns the version reached.

    Raises:
        the exception ``failed`` makes of the step that failed (it is rolled back whole).
    """
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    for migration in migrations:
        if migration.version <= version:
            continue
        try:
            connection.execute("BEGIN IMMEDIATE")
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {int(migration.version)}")
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise failed(migration, error) from None
        version = migration.version
    return version


class WriterLock:
    """An exclusive advisory lock on ``DATABASE.lock`` holding the owner's pid, for as long as it is held.

    Args:
        database: The database file the lock guards.
        cannot_open: The error for a lock file that cannot be opened.
        held: The error for a lock another writer holds (given its pid, or ``?``).
    """

    def __init__(self, database: Path, cannot_open: Callable[[OSError, Path], Exception],
                 held: Callable[[str], Exception]) -> None:
        self.path = database.with_name(database.name + ".lock")
        try:
            self._descriptor: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise cannot_open(error, self.path) from None
        if fcntl is None:
            return
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._descriptor, 32, 0).decode(errors="replace").strip() or "?"
            self.release()
            raise held(holder) from None
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the flock
            self._descriptor = None
