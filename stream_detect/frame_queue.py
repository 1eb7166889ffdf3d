"""A bounded frame queue with a named back-pressure policy.

``DropPolicy.DROP_OLDEST`` (live sources): a full queue discards its oldest
frame so the detector always sees the freshest one and latency never drifts.
``DropPolicy.BLOCK`` (files): the producer waits, so no frame is lost.
Every dropped frame is counted.

Consumers do not block on one queue: the detector worker polls many queues
and sleeps on a shared :class:`threading.Condition` (``wakeup``) that every
queue notifies when something arrives, so a dead source never stalls it.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.Enum):
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


class QueueClosed(Exception):
    """The queue was closed: no more items will arrive."""


class FrameQueue(Generic[T]):
    """Bounded FIFO between one producer thread and the detector worker.

    Args:
        maxsize: Items held at most.
        policy: What ``put`` does when the queue is full.
        wakeup: Condition notified after every ``put`` and on ``close``; shared
            by all queues a consumer polls.
    """

    def __init__(self, maxsize: int, policy: DropPolicy, wakeup: threading.Condition | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self.wakeup = wakeup if wakeup is not None else threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Adds ``item``. Returns False if it could not be added: the queue is
        closed, or (``BLOCK``) it stayed full for ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while len(self._items) >= self.maxsize and not self._closed:
                if self.policy is DropPolicy.DROP_OLDEST:
                    self._items.popleft()
                    self.dropped += 1
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            if self._closed:
                return False
            self._items.append(item)
            self.put_count += 1
        with self.wakeup:
            self.wakeup.notify_all()
        return True

    def get_nowait(self) -> T | None:
        """Returns the oldest item, or None when empty. Raises QueueClosed when
        the queue is closed and drained."""
        with self._not_full:
            if self._items:
                item = self._items.popleft()
                self._not_full.notify()
                return item
            if self._closed:
                raise QueueClosed
            return None

    def get_freshest_nowait(self) -> T | None:
        """Returns the newest item and drops (and counts) the older ones; None when
        empty. Raises QueueClosed when the queue is closed and drained.

        What a live stream's consumer wants: the frame closest to now.
        """
        with self._not_full:
            if self._items:
                item = self._items.pop()
                self.dropped += len(self._items)
                self._items.clear()
                self._not_full.notify_all()
                return item
            if self._closed:
                raise QueueClosed
            return None

    def close(self) -> None:
        """No more puts; wakes every waiter. Items already queued stay readable."""
        with self._not_full:
            self._closed = True
            self._not_full.notify_all()
        with self.wakeup:
            self.wakeup.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
