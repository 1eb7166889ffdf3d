"""The event history (issue 18): every tracking event kept in an SQLite database in the data directory.

- :mod:`.envelope`: the websocket's event envelope to a row and back (pure);
- :mod:`.migrations`: the schema as ordered, versioned migrations, and the checks before opening;
- :mod:`.store`: :class:`EventStore`, the one writer thread, retention, durability;
- :mod:`.query`: :class:`EventReader`, pages newest first with cursors, one event, counts per bucket.

The HTTP routes over it are in :mod:`stream_detect.server.events_api`.
"""

from .envelope import KINDS
from .migrations import LATEST_VERSION
from .query import BUCKETS, DEFAULT_LIMIT, MAX_LIMIT, EventQueries, EventReader
from .store import EVENTS_FILE, EventStore, WriterStats, events_path

__all__ = [
    "BUCKETS",
    "DEFAULT_LIMIT",
    "EVENTS_FILE",
    "KINDS",
    "LATEST_VERSION",
    "MAX_LIMIT",
    "EventQueries",
    "EventReader",
    "EventStore",
    "WriterStats",
    "events_path",
]
