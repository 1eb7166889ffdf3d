"""Sinks: each on its own thread behind a bounded buffer; a slow one only loses its own results."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline
from stream_detect.records import Detections, Frame
from stream_detect.sinks import Dispatcher, FrameResult, Notice, Overflow, SinkRunner
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange


def result(index: int, stream: str = "cam") -> FrameResult:
    frame = Frame(stream, index, np.zeros((4, 4, 3), np.uint8), pts=index / 10, captured_at=1.0 + index)
    return FrameResult(frame, Detections.empty(), "fake", emitted_at=2.0 + index)


class RecordingSink:
    """Keeps what it gets, with arrival times; can be told to block on its first result."""

    def __init__(self, name: str, block_s: float = 0.0) -> None:
        self.name = name
        self.block_s = block_s
        self.results: list[tuple[float, FrameResult]] = []
        self.statuses: list[StateChange] = []
        self.closed = threading.Event()
        self.release = threading.Event()

    def on_result(self, result: FrameResult) -> None:
        if self.block_s and not self.results:
            self.release.wait(self.block_s)
        self.results.append((time.monotonic(), result))

    def on_status(self, change: StateChange) -> None:
        self.statuses.append(change)

    def close(self) -> None:
        self.closed.set()


def test_a_full_buffer_drops_its_oldest_result_and_counts_it() -> None:
    sink = RecordingSink("slow")
    runner = SinkRunner(sink, maxsize=3)  # not started: everything stays buffered
    for index in range(5):
        assert runner.offer_result(result(index))
    runner.offer_status(StateChange("cam", SourceState.RUNNING, 1.0))
    assert runner.dropped == 2 and runner.describe()["queued"] == 4
    runner.start()
    assert runner.close(5)
    assert [r.frame.index for _, r in sink.results] == [2, 3, 4]
    assert [c.state for c in sink.statuses] == [SourceState.RUNNING]  # state changes are not dropped for results
    assert sink.closed.is_set()


def test_a_blocking_sink_makes_its_producer_wait_and_loses_nothing() -> None:
    sink = RecordingSink("file", block_s=0.5)
    runner = SinkRunner(sink, maxsize=2, overflow=Overflow.BLOCK)
    runner.start()
    try:
        started = time.monotonic()
        assert runner.offer_result(result(0))
        assert runner.offer_result(result(1))
        assert runner.offer_result(result(2))
        assert not runner.offer_result(result(3), timeout_s=0.05)  # still full: offer it again
        assert runner.offer_result(result(3), timeout_s=5)
        waited = time.monotonic() - started
    finally:
        assert runner.close(5)
    assert [r.frame.index for _, r in sink.results] == [0, 1, 2, 3] and runner.dropped == 0
    assert waited >= 0.3  # it waited for the sink to take the first result


def test_a_failing_sink_is_counted_and_keeps_taking_results() -> None:
    class Failing(RecordingSink):
        def on_result(self, result: FrameResult) -> None:
            if result.frame.index % 2:
                raise OSError("broker went away")
            super().on_result(result)

    sink = Failing("flaky")
    dispatcher = Dispatcher()
    runner = dispatcher.add(sink)
    dispatcher.start()
    for index in range(6):
        dispatcher.publish_result(result(index))
        time.sleep(0.01)
    assert dispatcher.close(5)
    assert [r.frame.index for _, r in sink.results] == [0, 2, 4] and runner.failures == 3


def test_a_result_is_serialised_once_for_every_sink() -> None:
    one = result(7)
    assert one.json() is one.json()
    assert one.message()["frame"] == 7 and one.message()["model"] == "fake"


@pytest.mark.timeout(60)
def test_a_sink_blocked_for_5_s_costs_the_other_sinks_and_streams_nothing() -> None:
    config = parse_config({
        "model": {"id": "fake", "max_batch_wait_ms": 1},
        "sources": [{"kind": "synthetic", "id": cam, "fps": 20, "width": 160, "height": 120} for cam in ("a", "b")],
    })
    pipeline = Pipeline(config, lambda model: FakeDetector())
    blocked, healthy = RecordingSink("blocked", block_s=5.0), RecordingSink("healthy")
    blocked_runner = pipeline.dispatcher.add(blocked, maxsize=8)
    pipeline.dispatcher.add(healthy, maxsize=8)
    with pipeline:
        deadline = time.monotonic() + 20
        while not blocked.results and time.monotonic() < deadline and not blocked.release.is_set():
            if len(healthy.results) >= 10:
                break
            time.sleep(0.05)
        window_from = time.monotonic()
        time.sleep(4.0)  # the blocked sink still sits in its first result
        window_to = time.monotonic()
        dropped_while_blocked = blocked_runner.dropped
        blocked.release.set()
        deadline = time.monotonic() + 10
        while len(blocked.results) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    in_window = [r for t, r in healthy.results if window_from <= t < window_to]
    per_stream = {cam: sum(1 for r in in_window if r.stream_id == cam) / (window_to - window_from)
                  for cam in ("a", "b")}
    print(f"healthy sink {per_stream} results/s per stream while the other was blocked; the blocked one dropped "
          f"{dropped_while_blocked}")
    assert all(rate >= 0.8 * 20 for rate in per_stream.values()), per_stream  # the cameras' own rate
    assert dropped_while_blocked >= 40  # 2 cameras x 20 fps x 4 s, less its 8 slots
    assert len(blocked.results) >= 8  # it caught up with what it kept
    assert blocked.closed.is_set() and healthy.closed.is_set()


class NoticeSink(RecordingSink):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.notices: list[Notice] = []

    def on_event(self, notice: Notice) -> None:
        self.notices.append(notice)


def event(number: int) -> Notice:
    return Notice("cam", {"type": "event", "id": f"e{number}", "stream": "cam"})


def test_notices_reach_only_the_sinks_that_take_them_and_results_give_way_to_them() -> None:
    dispatcher = Dispatcher()
    plain, taking = RecordingSink("plain"), NoticeSink("events")
    dispatcher.add(plain, maxsize=2)
    runner = dispatcher.add(taking, maxsize=2)
    for number in range(20):  # before the runners start: all of it stays buffered
        dispatcher.publish_result(result(number))
        dispatcher.publish_notice(event(number))
    assert runner.dropped == 18  # results only: the oldest give way
    dispatcher.start()
    assert dispatcher.close(5)
    assert [n.message["id"] for n in taking.notices] == [f"e{number}" for number in range(20)]
    assert taking.notices[0].json() == b'{"type":"event","id":"e0","stream":"cam"}'
    assert [r.frame.index for _, r in taking.results] == [18, 19]
    assert len(plain.results) == 2 and not hasattr(plain, "notices")


def test_a_tracked_result_carries_track_ids_on_its_confirmed_detections_only() -> None:
    frame = Frame("cam", 3, np.zeros((40, 40, 3), np.uint8), pts=0.3, captured_at=1.0)
    detections = Detections.from_lists([[1, 2, 10, 20], [5, 5, 30, 30]], [0.9, 0.8], [0, 0], ["a", "a"])
    elements = FrameResult(frame, detections, "m", 2.0, track_ids=(7, None)).message()["detections"]
    assert elements[0]["track_id"] == 7 and "track_id" not in elements[1]
    assert "track_id" not in FrameResult(frame, detections, "m", 2.0).message()["detections"][0]
