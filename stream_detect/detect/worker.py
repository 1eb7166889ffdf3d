"""The detector worker: one thread per device that batches across sources.

Work arrives in *lanes*: one per video stream (its capture queue) and one for
API requests. The worker waits on the queues' shared wake-up condition, then
collects a batch round-robin across lanes (one item from each lane per round,
starting at a different lane every batch), up to ``max_batch_size`` items or
until ``max_batch_wait_ms`` has passed since the first item. A lane with
nothing to give is skipped, so a dead source never delays the others, and a
burst in one lane cannot starve another. The decision is the pure function
:func:`.batching.plan`; this module is its shell of threads and queues.

The worker knows nothing about DETR: it calls :meth:`Detector.detect` with
the lowest threshold in the batch and lets each lane filter its own results.
When a batch fails, each of its items is tried alone, so one bad image (an API
client's) fails only its own request and never costs a camera its frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..errors import InputError, ModelError, ModelNotReadyError
from ..frame_queue import FrameQueue, QueueClosed
from ..records import Detections
from .base import Detector
from .batching import LaneHead, Take, plan

log = logging.getLogger(__name__)

T = TypeVar("T")


class Lane(Protocol[T]):
    """A source of work for the worker and the destination of its results.

    ``take`` declares how the worker takes from ``queue`` (the freshest item of
    a live camera, or in order), apart from how the queue fills.
    """

    name: str
    queue: FrameQueue[T]
    take: Take

    def image(self, item: T) -> np.ndarray:
        """The ``(H, W, 3) uint8`` RGB image of ``item``."""
        ...

    def threshold(self, item: T) -> float: ...

    def deliver(self, item: T, detections: Detections) -> None:
        """Receives the item's detections, already filtered by its threshold."""
        ...

    def fail(self, item: T, error: BaseException) -> None: ...

    def drained(self) -> None:
        """Called once, on the worker thread, when the lane's queue is closed and every item
        taken from it has been delivered or failed: the lane's last result is out."""
        ...

    def still(self, item: T) -> bool:
        """Called once per item as it is taken, in order: True when it needs no detection (a camera's
        still frame); the worker then calls :meth:`carry` instead of :meth:`deliver`, in the item's turn."""
        ...

    def carry(self, item: T) -> None:
        """Receives a still item in its turn: the lane carries its previous detections over."""
        ...


@dataclass(frozen=True, slots=True)
class BatchStats:
    size: int
    lanes: int
    forward_s: float
    model: str = "default"


class WorkerState:
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class _Entry(Generic[T]):
    lane: Lane[T]
    item: T
    still: bool = False  # needs no detection: carried over in its turn


class DetectorWorker:
    """Runs one detector over batches collected from many lanes.

    Args:
        load_detector: Builds the detector; called on the worker thread so a
            slow model load never blocks the server.
        max_batch_size: Items per ``detect`` call at most.
        max_batch_wait_ms: How long to wait for more items after the first.
        labels: Only report these labels (``None``: all).
        on_batch: Called after every batch with its statistics (metrics).
        wakeup: The condition every lane queue notifies.
        estimated_load_s: Reported to API clients while the model loads.
        name: The model's name (in batch statistics and the thread's name).
    """

    def __init__(
        self,
        load_detector: Callable[[], Detector],
        *,
        max_batch_size: int,
        max_batch_wait_ms: float,
        labels: Sequence[str] | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        wakeup: threading.Condition | None = None,
        estimated_load_s: float = 10.0,
        name: str = "default",
    ) -> None:
        self._load_detector = load_detector
        self.max_batch_size = max_batch_size
        self.max_batch_wait_s = max_batch_wait_ms / 1000.0
        self.allowed_labels = frozenset(labels) if labels else None
        self._on_batch = on_batch
        self.wakeup = wakeup if wakeup is not None else threading.Condition()
        self.estimated_load_s = estimated_load_s
        self.name = name
        self._lanes: list[Lane[Any]] = []
        self._lanes_lock = threading.Lock()
        self._next_lane = 0
        self._drained: list[Lane[Any]] = []  # retired lanes not yet told (worker thread only)
        self._stop = threading.Event()
        # Completed once the model is loaded or has failed to: asyncio code awaits
        # it without a thread. Running from the start, so no waiter can cancel it.
        self.loaded: Future[None] = Future()
        self.loaded.set_running_or_notify_cancel()
        self._thread = threading.Thread(target=self._run, name=f"detector:{name}", daemon=False)
        self._load_started = 0.0
        self.state = WorkerState.LOADING
        self.error: str | None = None
        self.detector: Detector | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._load_started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.wakeup:
            self.wakeup.notify_all()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Waits until the model is loaded (or failed). True when ready."""
        with contextlib.suppress(FutureTimeoutError):
            self.loaded.result(timeout)
        return self.state == WorkerState.READY

    def check_ready(self) -> None:
        """Raises ModelNotReadyError while loading, ModelError if loading failed."""
        if self.state == WorkerState.READY:
            return
        if self.state == WorkerState.LOADING:
            elapsed = time.monotonic() - self._load_started
            remaining = max(1.0, self.estimated_load_s - elapsed)
            raise ModelNotReadyError("model is currently loading", estimated_time=round(remaining, 1))
        raise ModelError(self.error or f"detector is {self.state}")

    # -- lanes ---------------------------------------------------------------

    def add_lane(self, lane: Lane[Any]) -> None:
        with self._lanes_lock:
            self._lanes.append(lane)
        with self.wakeup:
            self.wakeup.notify_all()

    def remove_lane(self, lane: Lane[Any]) -> None:
        with self._lanes_lock:
            if lane in self._lanes:
                self._lanes.remove(lane)

    def _retire(self, lane: Lane[Any]) -> None:
        """Removes a lane whose queue is closed and drained; it is told once the batch being
        collected, which may hold its last items, has been processed (:meth:`_tell_drained`)."""
        with self._lanes_lock:
            if lane not in self._lanes:
                return
            self._lanes.remove(lane)
        self._drained.append(lane)

    def _tell_drained(self) -> None:
        """Tells the retired lanes that their last result is out (items are taken and processed
        on this one thread, so nothing of theirs is left once the current batch is done)."""
        lanes, self._drained = self._drained, []
        for lane in lanes:
            try:
                lane.drained()
            except Exception:
                log.exception("lane %s: its end-of-work hook failed", lane.name)

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.detector = self._load_detector()
            limit = getattr(self.detector, "batch_limit", None)
            if isinstance(limit, int) and 0 < limit < self.max_batch_size:
                log.info("%s: batches of %d at most (its detector gains nothing from more)", self.name, limit)
                self.max_batch_size = limit
            self.state = WorkerState.READY
        except Exception as error:  # reported as state; the server keeps serving
            self.error = str(error) if isinstance(error, ModelError) else f"cannot load model: {error}"
            self.state = WorkerState.FAILED
            log.error("%s", self.error)
            self.loaded.set_result(None)
            self._drain_failing()
            return
        self.loaded.set_result(None)
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    self._process(self.detector, batch)
                self._tell_drained()
        finally:
            self.state = WorkerState.STOPPED
            self.detector.close()

    def _drain_failing(self) -> None:
        """After a failed load, answer queued API work with the error until stopped."""
        error = ModelError(self.error or "model failed to load")
        while not self._stop.is_set():
            for entry in self._take_round(limit=1000):
                entry.lane.fail(entry.item, error)
            self._tell_drained()
            with self.wakeup:
                self.wakeup.wait(0.2)

    def _lanes_now(self) -> list[Lane[Any]]:
        """The lanes, without those whose queue is closed and drained (they are removed)."""
        with self._lanes_lock:
            lanes = list(self._lanes)
        for lane in [lane for lane in lanes if lane.queue.closed and not len(lane.queue)]:
            self._retire(lane)
            lanes.remove(lane)
        return lanes

    def _take(self, lane: Lane[Any]) -> Any | None:
        """One item of ``lane``, the way it is taken from (the freshest, or the oldest); None if gone."""
        try:
            if lane.take is Take.FRESHEST:
                return lane.queue.get_freshest_nowait()  # older frames are dropped and counted
            return lane.queue.get_nowait()
        except QueueClosed:
            self._retire(lane)
            return None

    def _take_round(self, limit: int) -> list[_Entry[Any]]:
        """At most one item of each lane (failing API work after a failed load)."""
        taken = []
        for lane in self._lanes_now()[:limit]:
            item = self._take(lane)
            if item is not None:
                taken.append(_Entry(lane, item))
        return taken

    def _collect(self) -> list[_Entry[Any]]:
        """Collects one batch: what :func:`.batching.plan` says, waiting when it says to."""
        batch: list[_Entry[Any]] = []
        served: set[int] = set()  # ids of the FRESHEST lanes already in the batch
        opened_at: float | None = None
        self._next_lane += 1
        while not self._stop.is_set():
            lanes = self._lanes_now()
            if not batch and self._drained:  # nothing of theirs in flight: their last result is out
                self._tell_drained()
            now = time.monotonic()
            decision = plan(
                [LaneHead(len(lane.queue), lane.take) for lane in lanes],
                start=self._next_lane % len(lanes) if lanes else 0,
                size=len(batch),
                served=frozenset(index for index, lane in enumerate(lanes) if id(lane) in served),
                max_size=self.max_batch_size,
                opened_at=opened_at,
                now=now,
                max_wait_s=self.max_batch_wait_s,
            )
            for index in decision.takes:
                lane = lanes[index]
                item = self._take(lane)
                if item is None:  # emptied meanwhile (a live queue's frame was replaced): decide again
                    continue
                batch.append(_Entry(lane, item, self._is_still(lane, item)))
                if lane.take is Take.FRESHEST:
                    served.add(id(lane))
            if batch and opened_at is None:
                opened_at = now
            if decision.close:
                return batch
            timeout = 0.25 if decision.wait_until is None else max(0.0, decision.wait_until - time.monotonic())
            with self.wakeup:
                if not self._any_waiting(served):
                    self.wakeup.wait(timeout)
        return batch

    def _any_waiting(self, served: set[int]) -> bool:
        """Whether a lane has something to take now (FRESHEST lanes already in the batch aside)."""
        with self._lanes_lock:
            return any((len(lane.queue) and id(lane) not in served) or lane.queue.closed for lane in self._lanes)

    @staticmethod
    def _is_still(lane: Lane[Any], item: Any) -> bool:
        try:
            return lane.still(item)
        except Exception:  # a broken gate never costs a frame its detection
            log.exception("lane %s: its stillness check failed; detecting", lane.name)
            return False

    def _process(self, detector: Detector, batch: list[_Entry[Any]]) -> None:
        """Detects the batch's items that need it, then hands every item back in its turn."""
        detected = [entry for entry in batch if not entry.still]
        found: dict[int, Detections | None] = {}
        forward_s = 0.0
        if detected:
            thresholds = [entry.lane.threshold(entry.item) for entry in detected]
            images = [entry.lane.image(entry.item) for entry in detected]
            started = time.perf_counter()
            results: Sequence[Detections | None]
            try:
                results = detector.detect(images, min(thresholds))
            except Exception as error:
                if len(detected) == 1:
                    self._fail(detected[0], images[0], error)
                    results = [None]
                else:
                    log.debug("detector failed on a batch of %d; trying its items one by one", len(detected),
                              exc_info=True)
                    results = [self._detect_alone(detector, entry, image, threshold)
                               for entry, image, threshold in zip(detected, images, thresholds, strict=True)]
            forward_s = time.perf_counter() - started
            for entry, detections, threshold in zip(detected, results, thresholds, strict=True):
                found[id(entry)] = None if detections is None else detections.filter(threshold, self.allowed_labels)
        for entry in batch:
            try:
                if entry.still:
                    entry.lane.carry(entry.item)
                elif (detections := found.get(id(entry))) is not None:
                    entry.lane.deliver(entry.item, detections)
            except Exception:
                log.exception("delivering detections to lane %s failed", entry.lane.name)
        if detected and self._on_batch is not None:
            self._on_batch(BatchStats(len(detected), len({id(e.lane) for e in detected}), forward_s, self.name))

    def _detect_alone(self, detector: Detector, entry: _Entry[Any], image: np.ndarray,
                      threshold: float) -> Detections | None:
        try:
            return detector.detect([image], threshold)[0]
        except Exception as error:
            self._fail(entry, image, error)
            return None

    def _fail(self, entry: _Entry[Any], image: np.ndarray, error: Exception) -> None:
        """Fails one item. One line, no traceback: a client repeating a bad image
        repeats it, and the log's repeat filter folds identical lines."""
        height, width = image.shape[:2]
        if isinstance(error, InputError):
            log.warning("lane %s: the detector refused a %dx%d image: %s", entry.lane.name, width, height, error)
        else:
            log.error("lane %s: the detector failed on a %dx%d image: %s: %s", entry.lane.name, width, height,
                      type(error).__name__, _first_line(error))
            log.debug("the detector's failure", exc_info=error)
        try:
            entry.lane.fail(entry.item, error)
        except Exception:
            log.exception("failing an item of lane %s failed", entry.lane.name)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""
