import threading
import time

import pytest

from stream_detect.frame_queue import DropPolicy, FrameQueue, QueueClosed


def test_drop_oldest_keeps_freshest_and_counts() -> None:
    queue: FrameQueue[int] = FrameQueue(2, DropPolicy.DROP_OLDEST)
    for i in range(5):
        assert queue.put(i)
    assert queue.dropped == 3
    assert [queue.get_nowait(), queue.get_nowait()] == [3, 4]
    assert queue.get_nowait() is None


@pytest.mark.timeout(10)
def test_block_loses_nothing_and_times_out() -> None:
    queue: FrameQueue[int] = FrameQueue(1, DropPolicy.BLOCK)
    assert queue.put(1)
    started = time.monotonic()
    assert not queue.put(2, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2
    received: list[int] = []

    def consume() -> None:
        deadline = time.monotonic() + 5
        while len(received) < 50 and time.monotonic() < deadline:
            item = queue.get_nowait()
            if item is None:
                time.sleep(0.001)
            else:
                received.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(2, 51):
        assert queue.put(i, timeout=5)
    consumer.join(5)
    assert received == list(range(1, 51))
    assert queue.dropped == 0


@pytest.mark.timeout(10)
def test_close_wakes_blocked_producer_and_drains() -> None:
    queue: FrameQueue[int] = FrameQueue(1, DropPolicy.BLOCK)
    queue.put(7)
    result: list[bool] = []
    producer = threading.Thread(target=lambda: result.append(queue.put(8, timeout=5)))
    producer.start()
    time.sleep(0.1)
    queue.close()
    producer.join(2)
    assert result == [False]
    assert queue.get_nowait() == 7
    with pytest.raises(QueueClosed):
        queue.get_nowait()


def test_get_freshest_drops_and_counts_the_older_items() -> None:
    queue: FrameQueue[int] = FrameQueue(3, DropPolicy.DROP_OLDEST)
    for value in range(3):
        queue.put(value)
    assert queue.get_freshest_nowait() == 2
    assert queue.dropped == 2 and len(queue) == 0
    assert queue.get_freshest_nowait() is None
    queue.close()
    with pytest.raises(QueueClosed):
        queue.get_freshest_nowait()
