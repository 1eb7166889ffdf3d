"""Still-image requests as a lane of the detector worker.

API requests share the worker, and so its batches, with the video streams:
concurrent requests are batched together, and the worker's round-robin keeps a
burst of requests from starving the streams (and the other way round).
Results come back through a :class:`concurrent.futures.Future`, which the
asyncio side awaits with ``asyncio.wrap_future``.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .detect.batching import Take
from .frame_queue import DropPolicy, FrameQueue
from .records import Detections


class QueueFullError(Exception):
    """Too many requests are already waiting for the detector."""


@dataclass(eq=False, slots=True)
class ImageRequest:
    image: np.ndarray
    threshold: float
    future: Future[Detections] = field(default_factory=Future)


class InferenceLane:
    """The worker lane that carries API requests.

    Args:
        maxsize: Requests waiting at most; ``submit`` refuses more.
        wakeup: The worker's wake-up condition.
    """

    name = "api"
    take = Take.IN_ORDER  # requests are answered oldest first

    def __init__(self, maxsize: int, wakeup: threading.Condition) -> None:
        self.queue: FrameQueue[ImageRequest] = FrameQueue(maxsize, DropPolicy.BLOCK, wakeup)

    def submit(self, image: np.ndarray, threshold: float) -> Future[Detections]:
        request = ImageRequest(image, threshold)
        if not self.queue.put(request, timeout=0):
            raise QueueFullError("too many requests are waiting for the detector")
        return request.future

    def image(self, item: ImageRequest) -> np.ndarray:
        return item.image

    def threshold(self, item: ImageRequest) -> float:
        return item.threshold

    def deliver(self, item: ImageRequest, detections: Detections) -> None:
        if not item.future.cancelled():
            item.future.set_result(detections)

    def fail(self, item: ImageRequest, error: BaseException) -> None:
        if not item.future.cancelled():
            item.future.set_exception(error)

    def drained(self) -> None:
        """Never called: the API's queue stays open for the server's life."""

    def still(self, item: ImageRequest) -> bool:
        return False  # every image sent is detected

    def carry(self, item: ImageRequest) -> None:
        raise AssertionError("API requests are never still")


class AnswerCache:
    """A bounded LRU of answers keyed by the request's image bytes and parameters."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._answers: collections.OrderedDict[str, object] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    @staticmethod
    def key(image_bytes: bytes, threshold: float, model: str = "default") -> str:
        return f"{model}:{hashlib.sha256(image_bytes).hexdigest()}:{threshold!r}"

    def get(self, key: str) -> object | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
                self.hits += 1
            return answer

    def put(self, key: str, answer: object) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
