"""The capture thread: one per source, from open to queue, reconnecting.

State machine (published through ``on_state``)::

    connecting --first frame--> running --end or error--> reconnecting --frame--> running
        |                          |                           |
        +-- file that cannot open -+-- file at its end -> ended  +-- max_attempts -> failed
                                                                stop() from any state -> stopped

A live source treats the end of its stream like an error: a camera that goes
away looks, to FFmpeg, like the end of a file. A file ends at its end (paced
with ``realtime`` or not) unless it loops. Waits between attempts grow
exponentially to a ceiling and are spent on the stop event, so ``stop()`` is
prompt in every state. They are spaced start to start: an attempt that hung
until its open timeout has already waited, so during an outage an attempt is
always in flight and frames resume as soon as the camera answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import FileSource, LavfiSource, ReconnectConfig, SourceConfig, reopens_at_end
from ..errors import SourceError
from ..frame_queue import DropPolicy, FrameQueue
from ..records import Frame
from ..stats import RateMeter
from .base import RawFrame, Reader, Source, SourceState

log = logging.getLogger(__name__)

BLOCKED_PUT_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class StateChange:
    stream_id: str
    state: SourceState
    at: float
    detail: str | None = None


class CaptureStats:
    """Counters of one capture thread (written by it, read by anyone)."""

    def __init__(self) -> None:
        self.frames = 0
        self.corrupt = 0
        self.reconnects = 0
        self.width: int | None = None
        self.height: int | None = None
        self.last_error: str | None = None
        self.rate = RateMeter()

    @property
    def fps(self) -> float:
        return self.rate.rate()


class Backoff:
    """Capped exponential waits: initial, initial*multiplier, ... up to max."""

    def __init__(self, config: ReconnectConfig) -> None:
        self.config = config
        self.failures = 0

    def next_wait(self) -> float:
        wait = self.config.initial_s * self.config.multiplier ** self.failures
        self.failures += 1
        return min(wait, self.config.max_s)

    def reset(self) -> None:
        self.failures = 0

    @property
    def exhausted(self) -> bool:
        limit = self.config.max_attempts
        return limit is not None and self.failures >= limit


class _Pacer:
    """Releases frames at their timestamps on the wall clock (``realtime``)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: tuple[float, float] | None = None  # (pts, monotonic)

    def wait(self, pts: float | None) -> bool:
        """Sleeps until the frame is due; False if stopped meanwhile."""
        if pts is None:
            return not self._stop.is_set()
        now = time.monotonic()
        if self._origin is None or pts < self._origin[0] or pts - self._origin[0] > (now - self._origin[1]) + 5:
            self._origin = (pts, now)  # first frame, a loop, or a jump: start again from here
            return not self._stop.is_set()
        due = self._origin[1] + (pts - self._origin[0])
        return not self._stop.wait(max(0.0, due - now))


class Capture:
    """Reads one source on its own thread into ``queue``.

    Args:
        source: What to open (again after a disconnect).
        config: The source's configuration (policy, pacing, reconnects).
        queue: Where frames go; closed when the thread ends.
        on_state: Called on every state change, on the capture thread.
        on_frame: Called with every captured frame before it is queued.
    """

    def __init__(
        self,
        source: Source,
        config: SourceConfig,
        queue: FrameQueue[Frame],
        on_state: Callable[[StateChange], None],
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.queue = queue
        self._on_state = on_state
        self._on_frame = on_frame
        self.stats = CaptureStats()
        self.state = SourceState.CONNECTING
        self._stop = threading.Event()
        self._reader: Reader | None = None
        self._reader_lock = threading.Lock()
        self._next_index = 0
        self._session_frames = 0
        self._reopens = reopens_at_end(config)
        self._realtime = isinstance(config, FileSource | LavfiSource) and config.realtime
        reconnect = getattr(config, "reconnect", None)
        self._backoff = Backoff(reconnect if isinstance(reconnect, ReconnectConfig) else ReconnectConfig())
        self._thread = threading.Thread(target=self._run, name=f"capture:{config.id}")

    @property
    def stream_id(self) -> str:
        return self.config.id

    @property
    def thread_name(self) -> str:
        return self._thread.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Asks the thread to end: interrupts waits and the current reader."""
        self._stop.set()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
        self.queue.close()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread ----------------------------------------------------------

    def _set_state(self, state: SourceState, detail: str | None = None) -> None:
        if state is self.state and state is not SourceState.CONNECTING:
            return
        self.state = state
        self._on_state(StateChange(self.stream_id, state, time.time(), detail))

    def _run(self) -> None:
        self._on_state(StateChange(self.stream_id, SourceState.CONNECTING, time.time()))
        try:
            self._loop()
        except Exception as error:  # a bug must not pass silently, nor take the process down
            log.exception("capture of %s crashed", self.stream_id)
            self._set_state(SourceState.FAILED, f"internal error: {type(error).__name__}")
        finally:
            if self._stop.is_set():
                self._set_state(SourceState.STOPPED)
            self.queue.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            frames, error = self._session()
            if self._stop.is_set():
                return
            if not self._reopens:
                if frames or error is None:
                    self._set_state(SourceState.ENDED, error)
                else:
                    self._set_state(SourceState.FAILED, error)
                return
            if frames:
                self._backoff.reset()
            if self._loops_at_once(frames, error, time.monotonic() - started):
                continue
            if self._backoff.exhausted:
                self._set_state(SourceState.FAILED, error or "stream ended")
                return
            spent = 0.0 if frames else time.monotonic() - started  # a failed attempt's own wait counts
            wait = self._backoff.next_wait() - spent
            self.stats.last_error = error or "stream ended"
            self._set_state(SourceState.RECONNECTING, self.stats.last_error)
            if self._stop.wait(max(0.0, wait)):
                return

    def _loops_at_once(self, frames: int, error: str | None, played_s: float) -> bool:
        """A looping file that played to its end starts again at once, as the same stream: a loop is not a
        reconnect (no wait, no state change, no reconnect counted). The last frame of a looped 5 s clip
        otherwise stayed the freshest for the whole first backoff wait (0.5 s), and a detector that fell
        free then emitted it that much older. A file that played for less than that wait (a single
        frame, say) waits like a reconnect, so it cannot spin."""
        looping = isinstance(self.config, FileSource) and self.config.loop
        return looping and error is None and frames > 0 and played_s >= self._backoff.config.initial_s

    def _session(self) -> tuple[int, str | None]:
        """Opens the source once and pumps frames; returns (frames read, error)."""
        try:
            reader = self.source.open()
        except SourceError as error:
            return 0, str(error)
        with self._reader_lock:
            if self._stop.is_set():
                reader.close()
                return 0, None
            self._reader = reader
        self._session_frames = 0
        try:
            self._pump(reader)
            return self._session_frames, None
        except SourceError as error:
            return self._session_frames, str(error)
        finally:
            with self._reader_lock:
                self._reader = None
            reader.close()

    def _pump(self, reader: Reader) -> None:
        """Delivers frames until the reader ends, counting them in ``_session_frames``."""
        pacer = _Pacer(self._stop)
        min_interval = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        last_kept: float | None = None
        for raw in reader:
            if self._stop.is_set():
                break
            if self._realtime and not pacer.wait(raw.pts):
                break
            if min_interval:
                now = time.monotonic()
                if last_kept is not None and now - last_kept < min_interval * 0.95:
                    continue
                last_kept = now
            self._deliver(raw)
            self._session_frames += 1

    def _deliver(self, raw: RawFrame) -> None:
        frame = Frame(
            stream_id=self.stream_id,
            index=self._next_index,
            image=raw.image,
            pts=raw.pts,
            captured_at=time.time(),
            corrupt=raw.corrupt,
        )
        self._next_index += 1
        stats = self.stats
        stats.frames += 1
        stats.corrupt += raw.corrupt + raw.skipped
        stats.height, stats.width = raw.image.shape[:2]
        stats.rate.tick()
        if self.state is not SourceState.RUNNING:
            if self.state is SourceState.RECONNECTING:
                stats.reconnects += 1
            self._set_state(SourceState.RUNNING)
        if self._on_frame is not None:
            self._on_frame(frame)
        if self.queue.policy is DropPolicy.DROP_OLDEST:
            self.queue.put(frame)
            return
        while not self._stop.is_set() and not self.queue.put(frame, timeout=BLOCKED_PUT_POLL_S):
            if self.queue.closed:
                return
