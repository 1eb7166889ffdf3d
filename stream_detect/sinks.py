"""Where results go: sinks, each on a thread of its own behind a bounded buffer.

The detector worker hands each processed frame's :class:`FrameResult` to the
:class:`Dispatcher` and goes back to work at once; the dispatcher offers it
to every sink's :class:`SinkRunner`. A runner holds a small buffer and its
own thread, so a slow sink (a websocket fan-out, a disk, a broker) only
loses its own oldest results, counted, and never delays the detector or
another sink. Sinks that must see everything (the files ``annotate``
writes) say so with :attr:`Overflow.BLOCK`: their back-pressure then
reaches the producer, as a file source wants.

Stream state changes go the same way, and so do notices (:class:`Notice`: a
tracked stream's events and counts) to the sinks that take them
(:class:`EventSink`): they are rare and are never dropped in favour of results.

A result is serialised once: :meth:`FrameResult.json` is the websocket
message and the JSON Lines record alike (one shape, in the published schema),
computed by the first sink that asks and shared by the others.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .records import Detections, Frame
from .serialize import detections_message
from .sources.capture import StateChange

if TYPE_CHECKING:
    from .overlay import Overlay

log = logging.getLogger(__name__)

# Status changes and notices a runner holds per result it may hold: a burst of events
# (a crowd entering a zone) waits rather than being dropped.
NOTICES_PER_RESULT = 16


@dataclass(eq=False, slots=True)
class FrameResult:
    """One processed frame: the frame, its detections, the model that made them, when, and on a
    tracked stream each detection's track id (None: not a confirmed track)."""

    frame: Frame
    detections: Detections
    model: str
    emitted_at: float
    track_ids: tuple[int | None, ...] | None = None
    overlay: Overlay | None = field(default=None, repr=False)  # how to draw it on the frames that follow
    still: bool = False  # nothing moved: the detector rested, its last detections carried over
    _json: bytes | None = field(default=None, repr=False)

    @property
    def stream_id(self) -> str:
        return self.frame.stream_id

    def message(self) -> dict[str, Any]:
        """The detections message (``schema/messages.schema.json``)."""
        return detections_message(self.frame, self.detections, self.model, self.emitted_at, self.track_ids,
                                  self.still)

    def json(self) -> bytes:
        """The message as JSON, serialised once for every sink (a race only serialises it twice)."""
        if self._json is None:
            self._json = orjson.dumps(self.message())
        return self._json


@dataclass(eq=False, slots=True)
class Notice:
    """An event or a counts update of one stream: its message (``schema/messages.schema.json``)."""

    stream_id: str
    message: dict[str, Any]
    _json: bytes | None = field(default=None, repr=False)

    @property
    def type(self) -> str:
        """``event`` or ``counts``."""
        return str(self.message["type"])

    def json(self) -> bytes:
        """The message as JSON, serialised once for every sink."""
        if self._json is None:
            self._json = orjson.dumps(self.message)
        return self._json


class Sink(Protocol):
    """Receives results and state changes on its runner's thread; may take its time."""

    name: str

    def on_result(self, result: FrameResult) -> None: ...

    def on_status(self, change: StateChange) -> None: ...

    def close(self) -> None:
        """Called once, on the runner's thread, after the last event."""
        ...


class EventSink(Sink, Protocol):
    """A sink that also takes notices (events and counts); the others never see them."""

    def on_event(self, notice: Notice) -> None: ...


def takes_events(sink: Sink) -> bool:
    return callable(getattr(sink, "on_event", None))


class Overflow(enum.Enum):
    """What a full sink buffer does with the next result."""

    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


_Event = tuple[bool, Any]  # (is a status change or a notice, the result, change or notice)


class SinkRunner:
    """One sink's buffer and thread.

    Args:
        sink: The sink.
        maxsize: Results buffered at most (status changes may add ``maxsize`` more).
        overflow: What happens to a result that finds the buffer full.
    """

    def __init__(self, sink: Sink, maxsize: int = 16, overflow: Overflow = Overflow.DROP_OLDEST) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.sink = sink
        self.name = sink.name
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self.delivered = 0
        self.failures = 0
        self.takes_events = takes_events(sink)
        self._events: collections.deque[_Event] = collections.deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"sink:{self.name}")

    def start(self) -> None:
        self._thread.start()

    def offer_result(self, result: FrameResult, timeout_s: float | None = None) -> bool:
        """Buffers ``result``. Never blocks a ``DROP_OLDEST`` runner; a ``BLOCK`` runner waits for room
        (at most ``timeout_s``). False only when a ``BLOCK`` runner is still full: offer it again.
        A closing runner takes nothing more (counted as dropped)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while not self._closing and self._results() >= self.maxsize:
                if self.overflow is Overflow.DROP_OLDEST:
                    self._drop_oldest_result()
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            if self._closing:
                self.dropped += 1
                return True
            self._events.append((False, result))
            self._changed.notify_all()
        return True

    def offer_status(self, change: StateChange | Notice) -> None:
        """Buffers a state change or a notice; results give way to them, and only when
        ``NOTICES_PER_RESULT * maxsize`` of them wait does the oldest go (counted)."""
        with self._changed:
            if self._closing:
                return
            if len(self._events) - self._results() >= NOTICES_PER_RESULT * self.maxsize:
                index = next(i for i, (status, _) in enumerate(self._events) if status)
                del self._events[index]
                self.dropped += 1
            self._events.append((True, change))
            self._changed.notify_all()

    def close(self, timeout_s: float) -> bool:
        """Delivers what is buffered, closes the sink and joins; True if done within ``timeout_s``."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._thread.ident is None:
            self._close_sink()
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            queued = len(self._events)
        return {"name": self.name, "queued": queued, "delivered": self.delivered, "dropped": self.dropped,
                "failures": self.failures}

    def _results(self) -> int:
        return sum(1 for status, _ in self._events if not status)

    def _drop_oldest_result(self) -> None:
        index = next(i for i, (status, _) in enumerate(self._events) if not status)
        del self._events[index]
        self.dropped += 1

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    while not self._events and not self._closing:
                        self._changed.wait(1.0)
                    if not self._events:
                        return
                    status, payload = self._events.popleft()
                    self._changed.notify_all()
                self._deliver(status, payload)
        finally:
            self._close_sink()

    def _deliver(self, status: bool, payload: Any) -> None:
        try:
            if isinstance(payload, Notice):
                self.sink.on_event(payload)  # type: ignore[attr-defined]  # only runners that take events get them
            elif status:
                self.sink.on_status(payload)
            else:
                self.sink.on_result(payload)
                self.delivered += 1
        except Exception as error:  # one sink's failure is its own
            self.failures += 1
            log.error("sink %s failed: %s: %s", self.name, type(error).__name__, error)
            log.debug("the sink's failure", exc_info=error)

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as error:
            log.error("closing sink %s failed: %s: %s", self.name, type(error).__name__, error)


class Dispatcher:
    """Offers every result and state change to each sink's runner; sinks come and go at run time."""

    def __init__(self) -> None:
        self._runners: tuple[SinkRunner, ...] = ()
        self._lock = threading.Lock()
        self._started = False

    @property
    def runners(self) -> tuple[SinkRunner, ...]:
        return self._runners

    def add(self, sink: Sink, maxsize: int = 16, overflow: Overflow = Overflow.DROP_OLDEST) -> SinkRunner:
        runner = SinkRunner(sink, maxsize, overflow)
        with self._lock:
            self._runners = (*self._runners, runner)
            if self._started:
                runner.start()
        return runner

    def remove(self, runner: SinkRunner, timeout_s: float = 5.0) -> bool:
        with self._lock:
            self._runners = tuple(r for r in self._runners if r is not runner)
        return runner.close(timeout_s)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for runner in self._runners:
                runner.start()

    def publish_result(self, result: FrameResult, should_stop: Callable[[], bool] = lambda: False) -> None:
        """From the detector thread: never waits on a dropping sink; waits on a blocking one
        (checking ``should_stop`` every half second)."""
        for runner in self._runners:
            if runner.overflow is Overflow.DROP_OLDEST:
                runner.offer_result(result)
                continue
            while not runner.offer_result(result, timeout_s=0.5) and not should_stop():
                pass

    def publish_status(self, change: StateChange) -> None:
        for runner in self._runners:
            runner.offer_status(change)

    def publish_notice(self, notice: Notice) -> None:
        """An event or a counts update, to the sinks that take them; never waits."""
        for runner in self._runners:
            if runner.takes_events:
                runner.offer_status(notice)

    def close(self, timeout_s: float) -> bool:
        """Delivers what is buffered and closes every sink; True if all finished within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            runners, self._runners = self._runners, ()
        done = True
        for runner in runners:
            done &= runner.close(max(0.1, deadline - time.monotonic()))
        return done
