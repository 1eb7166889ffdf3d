"""The event store's figures: adds per second the writer sustains, and query latency at 100k events.

``python -m tests.events.bench [--events 100000]`` prints the figures quoted in
:mod:`stream_detect.events.store`. Not a test: it takes some 30 s.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_detect.events import EventStore, events_path

from .sample import DAY, event

KINDS = ("object.start", "object.end", "zone.enter", "zone.leave", "line.cross")
REPEATS = 50


class FullSyncStore(EventStore):
    """The store with an fsync per commit, to show what ``synchronous=FULL`` would cost."""

    def _open_writer(self) -> sqlite3.Connection:
        connection = super()._open_writer()
        connection.execute("PRAGMA synchronous = FULL")
        return connection


def sample(serial: int) -> dict[str, Any]:
    return event(DAY + serial * 0.05, KINDS[serial % len(KINDS)], stream=f"cam-{serial % 8}",
                 label=("person", "car", "dog")[serial % 3], event_id=f"{DAY + serial * 0.05:017.6f}-{serial:09d}")


def adds_per_second(store: EventStore, count: int) -> float:
    events = [sample(serial) for serial in range(count)]
    started = time.perf_counter()
    for item in events:
        store.add(item)
    assert store.flush(120)
    elapsed = time.perf_counter() - started
    assert store.stats.dropped == 0, store.stats
    return count / elapsed


def commits_per_second(store: EventStore, count: int) -> float:
    """Events added one at a time, each waited for: one transaction per event, the slowest case."""
    started = time.perf_counter()
    for serial in range(count):
        store.add(sample(serial))
        assert store.flush(10)
    return count / (time.perf_counter() - started)


def median_ms(call: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def deep_cursor(store: EventStore, pages: int) -> str:
    cursor: str | None = None
    for _ in range(pages):
        _, cursor = store.query(cursor=cursor)
    assert cursor is not None
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    count = parser.parse_args().events
    with tempfile.TemporaryDirectory() as directory:
        with FullSyncStore(Path(directory) / "full.db") as full:
            print(f"adds/s, synchronous=FULL:   {adds_per_second(full, count // 5):,.0f}")
        with FullSyncStore(Path(directory) / "full-one.db") as full:
            print(f"one-event transactions/s, synchronous=FULL:   {commits_per_second(full, 1000):,.0f}")
        with EventStore(Path(directory) / "normal-one.db") as normal:
            print(f"one-event transactions/s, synchronous=NORMAL: {commits_per_second(normal, 1000):,.0f}")
        with EventStore(events_path(Path(directory))) as store:
            print(f"adds/s, synchronous=NORMAL: {adds_per_second(store, count):,.0f}")
            cursor = deep_cursor(store, 50)
            some_id = store.query()[0][7]["id"]
            figures = {
                "default page (100), no filter": lambda: store.query(),
                "default page, stream=": lambda: store.query(stream="cam-3"),
                "default page, kind=": lambda: store.query(kind="line.cross"),
                "default page, stream= kind= label=": lambda: store.query(stream="cam-3", kind="zone.enter",
                                                                          label="car"),
                "50th page through its cursor": lambda: store.query(cursor=cursor),
                "page of 1000": lambda: store.query(limit=1000),
                "get(id)": lambda: store.get(some_id),
                "counts, hour buckets, everything": lambda: store.counts(),
            }
            for name, call in figures.items():
                print(f"{name:40s} {median_ms(call):7.2f} ms")
            stop = threading.Event()

            def keep_adding() -> None:
                for serial in range(count, count * 2):
                    if stop.is_set():
                        return
                    store.add(sample(serial))

            adder = threading.Thread(target=keep_adding, name="bench-adder")
            adder.start()
            try:
                print(f"{'default page while the writer is busy':40s} {median_ms(lambda: store.query()):7.2f} ms")
            finally:
                stop.set()
                adder.join(60)


if __name__ == "__main__":
    main()
