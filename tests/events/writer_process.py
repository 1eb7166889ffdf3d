"""A process that writes events, for the tests that kill it or read beside it.

``python -m tests.events.writer_process steady DB RATE MAX_S``: adds events
at ``RATE`` per second and prints each id once ``add`` returned, for at most
``MAX_S`` seconds (the test kills it long before).

``python -m tests.events.writer_process hold DB COUNT MAX_S``: adds ``COUNT``
events, flushes, prints ``ready <pid>``, then keeps the store open until its
stdin closes or ``MAX_S`` seconds pass, and closes it.

``python -m tests.events.writer_process forget DB COUNT MAX_S``: adds
``COUNT`` events and ends without closing the store.
"""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

from stream_detect.events import EventStore

from .sample import DAY, event


def steady(path: Path, rate: float, max_s: float) -> None:
    store = EventStore(path)
    period = 1.0 / rate
    started = time.monotonic()
    for serial in range(int(rate * max_s)):
        added = event(DAY + serial * period, "line.cross", event_id=f"steady-{serial:07d}")
        store.add(added)
        print(added["id"], flush=True)
        time.sleep(max(0.0, started + (serial + 1) * period - time.monotonic()))
    store.close()


def hold(path: Path, count: int, max_s: float) -> None:
    with EventStore(path) as store:
        for serial in range(count):
            store.add(event(DAY + serial, event_id=f"held-{serial:07d}"))
        store.flush(10)
        print(f"ready {os.getpid()}", flush=True)
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sys.stdin], [], [], 0.1)
            if readable and not sys.stdin.readline():
                break


def forget(path: Path, count: int) -> None:
    store = EventStore(path)
    for serial in range(count):
        store.add(event(DAY + serial, event_id=f"forgotten-{serial:07d}"))


if __name__ == "__main__":
    mode, database, amount, seconds = sys.argv[1:5]
    if mode == "steady":
        steady(Path(database), float(amount), float(seconds))
    elif mode == "forget":
        forget(Path(database), int(amount))
    else:
        hold(Path(database), int(amount), float(seconds))
