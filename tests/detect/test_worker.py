"""The batching worker: fairness, dead lanes, thresholds, load failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from stream_detect.detect.batching import Take
from stream_detect.detect.worker import BatchStats, DetectorWorker, WorkerState
from stream_detect.errors import ModelError, ModelNotReadyError
from stream_detect.frame_queue import DropPolicy, FrameQueue
from stream_detect.records import Detections


class ScoreDetector:
    """Returns one detection whose score is the image's mean value / 255."""

    model_id = "score"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        self.batches.append(len(images))
        time.sleep(self.delay_s)
        out = []
        for image in images:
            score = float(image.mean()) / 255
            dets = Detections.from_lists([[0, 0, 1, 1]], [score], [0], ["thing"])
            out.append(dets.filter(threshold))
        return out

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def close(self) -> None:
        pass


class ListLane:
    take = Take.IN_ORDER

    def __init__(self, name: str, wakeup: threading.Condition, maxsize: int = 64, threshold: float = 0.0) -> None:
        self.name = name
        self.queue: FrameQueue[int] = FrameQueue(maxsize, DropPolicy.BLOCK, wakeup)
        self._threshold = threshold
        self.results: dict[int, Detections] = {}
        self.errors: dict[int, BaseException] = {}
        self.done = threading.Event()
        self.expected = 0
        self.drained_after: int | None = None  # items out when the worker said the lane was drained
        self.still_items: set[int] = set()  # items the lane says need no detection
        self.carried: list[int] = []

    def image(self, item: int) -> np.ndarray:
        return np.full((4, 4, 3), item, np.uint8)

    def threshold(self, item: int) -> float:
        return self._threshold

    def deliver(self, item: int, detections: Detections) -> None:
        self.results[item] = detections
        if len(self.results) >= self.expected:
            self.done.set()

    def fail(self, item: int, error: BaseException) -> None:
        self.errors[item] = error
        self.done.set()

    def still(self, item: int) -> bool:
        return item in self.still_items

    def carry(self, item: int) -> None:
        self.carried.append(item)
        self.results[item] = Detections.empty()
        if len(self.results) >= self.expected:
            self.done.set()

    def drained(self) -> None:
        assert self.drained_after is None, "drained twice"
        self.drained_after = len(self.results) + len(self.errors)


def make_worker(detector: ScoreDetector, **kwargs: object) -> tuple[DetectorWorker, list[BatchStats]]:
    stats: list[BatchStats] = []
    options: dict = {"max_batch_size": 4, "max_batch_wait_ms": 20.0, "on_batch": stats.append}
    options.update(kwargs)
    return DetectorWorker(lambda: detector, **options), stats


@pytest.mark.timeout(20)
def test_batches_across_lanes_and_filters_per_lane_threshold() -> None:
    detector = ScoreDetector(delay_s=0.05)
    worker, stats = make_worker(detector)
    low = ListLane("low", worker.wakeup, threshold=0.0)
    high = ListLane("high", worker.wakeup, threshold=0.5)
    low.expected = high.expected = 8
    worker.add_lane(low)
    worker.add_lane(high)
    worker.start()
    try:
        assert worker.wait_ready(5)
        for value in range(8):
            low.queue.put(value * 30 + 1)
            high.queue.put(value * 30)
        assert low.done.wait(10) and high.done.wait(10)
    finally:
        worker.stop()
        assert worker.join(5)
    assert max(s.size for s in stats) > 1
    assert any(s.lanes == 2 for s in stats)
    assert all(len(d) == 1 for d in low.results.values())
    assert {item for item, d in high.results.items() if len(d)} == {v * 30 for v in range(8) if v * 30 / 255 > 0.5}
    assert worker.state == WorkerState.STOPPED


@pytest.mark.timeout(20)
def test_burst_in_one_lane_does_not_starve_another() -> None:
    detector = ScoreDetector(delay_s=0.02)
    worker, _ = make_worker(detector, max_batch_size=2)
    burst = ListLane("burst", worker.wakeup, maxsize=200)
    steady = ListLane("steady", worker.wakeup)
    burst.expected, steady.expected = 100, 5
    for i in range(100):
        burst.queue.put(i)
    worker.add_lane(burst)
    worker.add_lane(steady)
    worker.start()
    try:
        for i in range(5):
            steady.queue.put(i)
        assert steady.done.wait(5)
        # Round-robin: the steady lane finished while most of the burst waits.
        assert len(burst.results) < 60
        assert burst.done.wait(15)
    finally:
        worker.stop()
        worker.join(5)


@pytest.mark.timeout(20)
def test_dead_lane_never_delays_a_live_one() -> None:
    detector = ScoreDetector()
    worker, _ = make_worker(detector, max_batch_size=8, max_batch_wait_ms=50.0)
    dead = ListLane("dead", worker.wakeup)
    live = ListLane("live", worker.wakeup)
    live.expected = 1
    worker.add_lane(dead)
    worker.add_lane(live)
    worker.start()
    try:
        assert worker.wait_ready(5)
        latencies = []
        for i in range(10):
            live.done.clear()
            live.results.clear()
            started = time.monotonic()
            live.queue.put(i)
            assert live.done.wait(5)
            latencies.append(time.monotonic() - started)
        # At most the batch wait (50 ms) plus scheduling, never a dead lane's timeout.
        assert sorted(latencies)[len(latencies) // 2] < 0.2
    finally:
        worker.stop()
        worker.join(5)


@pytest.mark.timeout(20)
def test_closed_lane_is_removed_and_load_failure_is_reported() -> None:
    def broken() -> ScoreDetector:
        raise ModelError("cannot load model 'nope': not found")

    worker = DetectorWorker(broken, max_batch_size=2, max_batch_wait_ms=1)
    lane = ListLane("api", worker.wakeup)
    lane.expected = 1
    worker.add_lane(lane)
    with pytest.raises(ModelNotReadyError):
        worker.check_ready()
    worker.start()
    try:
        assert not worker.wait_ready(5)
        assert worker.state == WorkerState.FAILED
        with pytest.raises(ModelError, match="nope"):
            worker.check_ready()
        lane.queue.put(1)
        assert lane.done.wait(5)
        assert isinstance(lane.errors[1], ModelError)
    finally:
        worker.stop()
        assert worker.join(5)


@pytest.mark.timeout(20)
def test_a_closed_lane_is_told_it_is_drained_after_its_last_result() -> None:
    worker, _ = make_worker(ScoreDetector(delay_s=0.05), max_batch_size=2)
    lane = ListLane("file", worker.wakeup)
    for item in range(7):
        lane.queue.put(item)
    lane.queue.close()
    worker.add_lane(lane)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while lane.drained_after is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lane.drained_after == 7  # told once, after every item was delivered
        assert sorted(lane.results) == list(range(7))
    finally:
        worker.stop()
        assert worker.join(5)


@pytest.mark.timeout(20)
def test_a_live_lane_gives_its_freshest_frame_once_per_batch() -> None:
    detector = ScoreDetector(delay_s=0.05)
    worker, stats = make_worker(detector, max_batch_size=4)
    camera = ListLane("camera", worker.wakeup)
    camera.queue = FrameQueue(2, DropPolicy.DROP_OLDEST, worker.wakeup)
    camera.take = Take.FRESHEST
    file = ListLane("file", worker.wakeup)
    camera.expected, file.expected = 1, 3
    for value in (10, 20, 30):  # the queue keeps 20 and 30
        camera.queue.put(value)
    for value in (1, 2, 3):
        file.queue.put(value)
    worker.add_lane(camera)
    worker.add_lane(file)
    worker.start()
    try:
        assert camera.done.wait(5) and file.done.wait(5)
    finally:
        worker.stop()
        assert worker.join(5)
    assert list(camera.results) == [30]  # the newest, not the oldest still queued
    assert camera.queue.dropped == 2  # 10 by the full queue, 20 by the worker: both counted
    assert stats[0].size == 4 and stats[0].lanes == 2  # one camera frame, three file frames


class SizeLane(ListLane):
    """A lane whose items are image heights: item ``h`` is an ``(h, 8, 3)`` image."""

    def image(self, item: int) -> np.ndarray:
        return np.full((item, 8, 3), 200, np.uint8)


class FailsOnHeight(ScoreDetector):
    """Raises on any batch holding an image ``bad_height`` pixels high, as the HF
    processors did on 1-pixel-high images (the whole batch failed)."""

    def __init__(self, bad_height: int) -> None:
        super().__init__()
        self.bad_height = bad_height

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        if any(image.shape[0] == self.bad_height for image in images):
            self.batches.append(-len(images))
            raise RuntimeError(f"output with shape [1, 1, 192, 320] doesn't match ({len(images)} images)")
        return super().detect(images, threshold)


@pytest.mark.timeout(20)
def test_a_failing_item_is_retried_alone_and_the_others_are_delivered(caplog: pytest.LogCaptureFixture) -> None:
    detector = FailsOnHeight(bad_height=1)
    worker, stats = make_worker(detector, max_batch_size=8, max_batch_wait_ms=200.0)
    camera = SizeLane("camera", worker.wakeup)
    api = SizeLane("api", worker.wakeup)
    other = SizeLane("other", worker.wakeup)
    camera.expected = other.expected = 3
    for height in (10, 11, 12):
        camera.queue.put(height)
        other.queue.put(height + 10)
    for height in (1, 16):
        api.queue.put(height)
    for lane in (camera, api, other):
        worker.add_lane(lane)
    with caplog.at_level(logging.DEBUG, "stream_detect.detect.worker"):
        worker.start()
        try:
            assert camera.done.wait(5) and other.done.wait(5)
            assert wait_for(lambda: len(api.errors) == 1 and len(api.results) == 1, 5)
        finally:
            worker.stop()
            assert worker.join(5)
    assert any(size < -1 for size in detector.batches), "the bad image did share a batch with others"
    assert sorted(camera.results) == [10, 11, 12] and sorted(other.results) == [20, 21, 22]
    assert list(api.results) == [16] and list(api.errors) == [1], "only the bad item fails"
    assert isinstance(api.errors[1], RuntimeError)
    assert stats and all(s.size >= 1 for s in stats)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in problems] == [
        "lane api: the detector failed on a 8x1 image: RuntimeError: output with shape [1, 1, 192, 320] "
        "doesn't match (1 images)"]
    assert not any(r.exc_info for r in problems), "one line each, no traceback"


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.timeout(20)
def test_still_items_skip_the_detector_and_come_back_in_their_turn() -> None:
    detector = ScoreDetector()
    worker, stats = make_worker(detector, max_batch_size=8)
    lane = ListLane("camera", worker.wakeup)
    lane.still_items = {2, 3, 5}
    order: list[int] = []
    deliver, carry = lane.deliver, lane.carry
    lane.deliver = lambda item, detections: (order.append(item), deliver(item, detections))  # type: ignore[method-assign]
    lane.carry = lambda item: (order.append(item), carry(item))  # type: ignore[method-assign]
    lane.expected = 7
    for item in range(7):
        lane.queue.put(item)
    worker.add_lane(lane)
    worker.start()
    try:
        assert lane.done.wait(10)
        assert order == list(range(7))  # in their turn
        assert lane.carried == [2, 3, 5]
        assert sum(detector.batches) == 4 and sum(s.size for s in stats) == 4  # only the others were detected
    finally:
        worker.stop()
        assert worker.join(5)


@pytest.mark.timeout(20)
def test_a_lane_that_closes_while_the_worker_waits_is_told_it_is_drained() -> None:
    worker, _ = make_worker(ScoreDetector(), max_batch_size=2)
    lane = ListLane("file", worker.wakeup)
    lane.expected = 3
    worker.add_lane(lane)
    worker.start()
    try:
        for item in range(3):
            lane.queue.put(item)
        assert lane.done.wait(10)
        time.sleep(0.3)  # the worker is idle, waiting on an open, empty queue
        lane.queue.close()  # and then the lane ends, with nothing in flight
        deadline = time.monotonic() + 10
        while lane.drained_after is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lane.drained_after == 3
    finally:
        worker.stop()
        assert worker.join(5)


@pytest.mark.timeout(20)
def test_a_detector_batch_limit_caps_the_batches_and_each_result_goes_out_alone() -> None:
    detector = ScoreDetector(delay_s=0.05)
    detector.batch_limit = 1  # type: ignore[attr-defined]  # as HFDetector on a CPU
    worker, stats = make_worker(detector)
    lanes = [ListLane(name, worker.wakeup) for name in ("a", "b")]
    for lane in lanes:
        lane.expected = 6
        worker.add_lane(lane)
    for value in range(6):
        for lane in lanes:
            lane.queue.put(value + 1)
    worker.start()
    try:
        assert worker.wait_ready(5)
        assert all(lane.done.wait(10) for lane in lanes)
    finally:
        worker.stop()
        assert worker.join(5)
    assert worker.max_batch_size == 1 and detector.batches == [1] * 12
    assert {s.lanes for s in stats} == {1}
