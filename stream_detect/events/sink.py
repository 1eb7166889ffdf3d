"""The event history as a sink: each event notice of the dispatcher, into the store."""

from __future__ import annotations

import logging

from ..errors import InputError
from ..sinks import FrameResult, Notice
from ..sources.capture import StateChange
from .store import EventStore

log = logging.getLogger(__name__)


class EventStoreSink:
    """Hands every ``event`` notice to ``store`` (counts are not kept: ``/counts`` sums the events).

    The store's ``add`` only queues the row for its writer thread, so this sink
    keeps up with any event rate the analyzer makes; closing it closes the store
    (what is queued is committed first).
    """

    name = "event-history"

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def on_event(self, notice: Notice) -> None:
        if notice.type != "event":
            return
        try:
            self.store.add(notice.message)
        except InputError as error:  # an envelope the store refuses is a bug upstream: said, not fatal
            log.error("event not kept: %s", error)

    def on_result(self, result: FrameResult) -> None:
        pass

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self) -> None:
        self.store.close()
