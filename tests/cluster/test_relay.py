"""The outbox a node's results wait in until the started process has taken them."""

from __future__ import annotations

import threading
import time

import numpy as np

from stream_detect.cluster.relay import Outbox, RelayedResult
from stream_detect.records import Detections, Frame
from stream_detect.sinks import FrameResult, Notice
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange


def result(index: int, stream: str = "cam1") -> FrameResult:
    frame = Frame(stream, index, np.zeros((4, 6, 3), np.uint8), None, 100.0 + index)
    return FrameResult(frame, Detections.empty(), "fake", 101.0 + index)


def test_a_poll_forgets_only_what_it_acknowledged() -> None:
    outbox = Outbox()
    for index in range(3):
        outbox.on_result(result(index))
    first = outbox.drain(0, timeout_s=0)
    assert [item.sequence for item in first.items] == [1, 2, 3]
    again = outbox.drain(0, timeout_s=0)  # the answer was lost: the same items come again
    assert [item.sequence for item in again.items] == [1, 2, 3]
    taken = outbox.drain(2, timeout_s=0)
    assert [item.sequence for item in taken.items] == [3]
    relayed = RelayedResult(taken.items[0].stream_id, taken.items[0].payload)
    assert relayed.message() == result(2).message() and relayed.json() == result(2).json()


def test_results_go_first_when_full_and_notices_and_statuses_stay() -> None:
    outbox = Outbox(results_held=4, notices_held=100)
    outbox.on_status(StateChange("cam1", SourceState.RUNNING, 1.0))
    for index in range(10):
        outbox.on_result(result(index))
        outbox.on_event(Notice("cam1", {"type": "counts", "n": index}))
    drained = outbox.drain(0, timeout_s=0)
    kinds = [item.kind for item in drained.items]
    assert kinds.count("result") == 4 and kinds.count("notice") == 10 and kinds.count("status") == 1
    assert drained.dropped == 6
    frames = [RelayedResult(i.stream_id, i.payload).message()["frame"] for i in drained.items if i.kind == "result"]
    assert frames == [6, 7, 8, 9]  # the newest kept


def test_a_poll_waits_for_the_next_item_and_no_longer_than_asked() -> None:
    outbox = Outbox()
    started = time.monotonic()
    assert outbox.drain(0, timeout_s=0.2).items == ()
    assert 0.15 <= time.monotonic() - started < 2
    threading.Timer(0.1, outbox.on_result, args=(result(0),)).start()
    assert len(outbox.drain(0, timeout_s=5).items) == 1
