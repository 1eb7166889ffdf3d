"""One stream's clips: its clip thread, its ring of packets and the clips open on it.

:class:`StreamClips` owns a thread (``clips:<stream-id>``) that takes the
packets of the stream's one encoder (:mod:`stream_detect.restream.encoder`,
through a :class:`~stream_detect.restream.feed.PacketFeed`) from a small
drop-oldest queue, keeps them in a :class:`~.clip_ring.PacketRing` and
copies them into every open clip. The encoder's thread and the sinks' only
queue: :meth:`StreamClips.put` (a frame's packets) and
:meth:`StreamClips.command` (open, close, end) never wait on the disk.

Time line: the encoder starts a new time line when the stream restarts its
clock or changes size (:mod:`stream_detect.restream.encoder`); the open
clips end there (as the analytics end their tracks) and a new ring starts.
A frame's packets dropped on the way (a full queue) leave a gap: what
follows is skipped until the next keyframe, counted.

Commands are applied in order, each once the encoder has taken the frame
its event was decided on (an end: once the frames queued before it are
taken), or ``close_wait_s`` after it was queued, for a stream that stalls.

A clip ends at the first packet at or after its close time, or when it
reaches ``max_clip_s``, or when the stream ends. A close time the stream's
frames never reach (a camera that stalls) is given up ``close_wait_s``
wall-clock seconds after the close was asked for.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..frame_queue import DropPolicy, FrameQueue, QueueClosed
from ..restream.feed import EncodedFrame, GapGuard
from .clip_file import PARTIAL, ClipFile
from .clip_ring import EncodedPacket, PacketRing

log = logging.getLogger(__name__)

DEFAULT_RATE = 25.0


@dataclass(frozen=True, slots=True)
class ClipLimits:
    """How much a stream's clips may hold.

    Attributes:
        max_open: Clips open at once per stream; an object that starts beyond it gets no clip (counted).
        max_clip_s: A clip is closed at this length (counted as cut).
        queue_size: Frames' packets waiting for the clip thread; more drop the oldest (counted).
        ring_extra_s: Seconds the ring keeps beyond ``pre_s`` and one GOP: how late an object's start
            may be told (detection latency and the tracker's confirmation).
        max_ring_bytes: Encoded bytes one stream's ring holds at most.
        keyframe_s: Longest time between the encoder's keyframes (the ring keeps one GOP more).
        close_wait_s: Wall-clock seconds a clip waits for frames to reach its close time.
    """

    max_open: int = 16
    max_clip_s: float = 120.0
    queue_size: int = 8
    ring_extra_s: float = 3.0
    max_ring_bytes: int = 32 * 1024 * 1024
    keyframe_s: float = 1.0
    close_wait_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_open < 1 or self.queue_size < 1 or self.max_ring_bytes < 1:
            raise ValueError(f"clip limits must be positive: {self}")
        if self.max_clip_s <= 0 or self.keyframe_s <= 0 or self.ring_extra_s < 0 or self.close_wait_s <= 0:
            raise ValueError(f"clip durations must be positive: {self}")


@dataclass(frozen=True, slots=True)
class OpenClip:
    """An object started on frame ``frame``: open its clip at ``path`` from the last keyframe at or before
    ``from_t``."""

    clip_id: str
    path: Path
    from_t: float
    frame: int | None = None


@dataclass(frozen=True, slots=True)
class CloseClip:
    """An object ended on frame ``frame``: close its clip at ``at_t`` (None: ``post_s`` after the newest
    frame)."""

    clip_id: str
    at_t: float | None
    frame: int | None = None


@dataclass(frozen=True, slots=True)
class EndStream:
    """The stream ended: encode what is queued, then close every open clip."""


Command = OpenClip | CloseClip | EndStream


@dataclass(slots=True)
class _Clip:
    clip_id: str
    file: ClipFile
    close_at: float | None = None
    close_by: float | None = None  # monotonic deadline once a close was asked for
    from_t: float = float("-inf")
    # Packets from the last keyframe at or before ``from_t`` while the encoder has not reached it yet
    # (it lags behind the events): the clip starts with them once a later packet shows it.
    waiting: list[EncodedPacket] | None = None


@dataclass(slots=True)
class ClipCounters:
    """What one stream's clips did (written by its thread, read by anyone)."""

    frames_taken: int = 0
    clips_written: int = 0
    clips_refused: int = 0
    clips_cut: int = 0
    clips_failed: int = 0
    clips_empty: int = 0


class StreamClips:
    """The clips of one stream, on a thread of its own.

    Args:
        stream_id: The stream.
        directory: Its clips' directory (temporary files a crash left there are removed at the start).
        post_s: Seconds of video after an object's last frame (for a close without a time).
        keep_s: Seconds the ring keeps.
        rate: The stream's nominal frame rate, or None (:data:`DEFAULT_RATE`; the encoder's, once it tells).
        limits: The bounds.
    """

    def __init__(self, stream_id: str, directory: Path, post_s: float, keep_s: float, rate: float | None,
                 limits: ClipLimits) -> None:
        self.stream_id = stream_id
        self.directory = directory
        self.post_s = post_s
        self.keep_s = keep_s
        self.rate = rate or DEFAULT_RATE
        self.limits = limits
        self.counters = ClipCounters()
        self._wakeup = threading.Condition()
        self._frames: FrameQueue[EncodedFrame] = FrameQueue(limits.queue_size, DropPolicy.DROP_OLDEST, self._wakeup)
        self._commands: deque[tuple[float, Command]] = deque()  # (monotonic time queued, command)
        self._commands_added = 0
        self._last_index: int | None = None  # the newest frame taken from the queue
        self._ring: PacketRing | None = None
        self._time_line = 0
        self._guard = GapGuard()
        self._clips: dict[str, _Clip] = {}
        self._thread = threading.Thread(target=self._run, name=f"clips:{stream_id}")

    # -- any thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def put(self, encoded: EncodedFrame) -> None:
        """Queues a frame's packets; never waits (a full queue drops its oldest, counted)."""
        self._frames.put(encoded)

    def command(self, command: Command) -> None:
        """Queues a command; commands are never dropped (one per object start or end)."""
        with self._wakeup:
            self._commands.append((time.monotonic(), command))
            self._commands_added += 1
            self._wakeup.notify_all()

    def stop(self) -> None:
        """Encodes what is queued, closes the open clips and ends the thread."""
        self._frames.close()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, object]:
        ring = self._ring
        counters = self.counters
        return {
            "frames_taken": counters.frames_taken,
            "frames_dropped": self._frames.dropped,
            "packets_skipped": self._guard.packets_skipped,
            "clips_open": len(self._clips),
            "clips_written": counters.clips_written,
            "clips_refused": counters.clips_refused,
            "clips_cut": counters.clips_cut,
            "clips_failed": counters.clips_failed,
            "clips_empty": counters.clips_empty,
            "ring_packets": len(ring) if ring is not None else 0,
            "ring_bytes": ring.bytes if ring is not None else 0,
            "ring_span_s": round(ring.span_s, 3) if ring is not None else 0.0,
            "ring_trimmed_bytes": ring.trimmed_bytes if ring is not None else 0,
        }

    # -- the thread --------------------------------------------------------------

    def _run(self) -> None:
        self._remove_partials()
        try:
            while True:
                seen = self._commands_added
                self._apply_commands()
                try:
                    frame = self._frames.get_nowait()
                except QueueClosed:
                    break
                if frame is not None:
                    self._take(frame)
                    continue
                with self._wakeup:  # commands waiting for their frame wait for frames, not in a busy loop
                    idle = not len(self._frames) and not self._frames.closed
                    if idle and self._commands_added == seen:
                        self._wakeup.wait(0.5)
                self._give_up_waiting()
        finally:
            self._apply_commands(force=True)
            self._end_time_line()

    def _remove_partials(self) -> None:
        """What a crash left half-written: never a clip."""
        with contextlib.suppress(OSError):
            for partial in self.directory.glob(f".*.mp4{PARTIAL}"):
                partial.unlink()

    def _apply_commands(self, force: bool = False) -> None:
        """Applies the queued commands in order, each once the encoder has taken the frame it was decided
        on: its clip then starts in the ring of that frame's time line (the encoder may lag behind the
        events). A command waits ``close_wait_s`` at most for its frame (a stream that stalls)."""
        while True:
            with self._wakeup:
                if not self._commands:
                    return
                queued_at, command = self._commands[0]
                if isinstance(command, EndStream):  # after the frames queued before it
                    waiting = bool(len(self._frames))
                else:
                    waiting = command.frame is not None and (self._last_index is None
                                                             or self._last_index < command.frame)
                if waiting and not force and time.monotonic() - queued_at < self.limits.close_wait_s:
                    return
                self._commands.popleft()
            if isinstance(command, OpenClip):
                self._open(command)
            elif isinstance(command, CloseClip):
                self._ask_close(command)
            else:
                self._end_time_line()

    def _open(self, command: OpenClip) -> None:
        if command.clip_id in self._clips:
            return
        if len(self._clips) >= self.limits.max_open:
            self.counters.clips_refused += 1
            log.warning("stream %s: %d clips open; no clip for %s", self.stream_id, len(self._clips),
                        command.clip_id)
            return
        ring = self._ring
        width, height = (ring.width, ring.height) if ring is not None else (0, 0)
        clip = _Clip(command.clip_id, ClipFile(command.path, width, height, self.rate))
        self._clips[clip.clip_id] = clip
        clip.from_t = command.from_t
        if ring is not None:
            for packet in ring.since(command.from_t):
                if not self._append(clip, packet):
                    return

    def _ask_close(self, command: CloseClip) -> None:
        clip = self._clips.get(command.clip_id)
        if clip is None:  # refused, cut, or closed with its time line
            return
        ring = self._ring
        newest = ring.last_t if ring is not None else None
        if command.at_t is not None:
            clip.close_at = command.at_t
        elif newest is not None:
            clip.close_at = newest + self.post_s
        clip.close_by = time.monotonic() + self.post_s + self.limits.close_wait_s
        if clip.close_at is None or (newest is not None and newest >= clip.close_at):
            self._finish(clip)

    def _give_up_waiting(self) -> None:
        now = time.monotonic()
        for clip in list(self._clips.values()):
            if clip.close_by is not None and now >= clip.close_by:
                self._finish(clip)

    def _take(self, encoded: EncodedFrame) -> None:
        self._last_index = encoded.index
        new_time_line = encoded.time_line != self._time_line
        if new_time_line:
            if self._ring is not None:
                self._end_time_line()
            self._time_line = encoded.time_line
            self._ring = self._new_ring(encoded)
        self.counters.frames_taken += 1
        packets = self._guard.usable(encoded, new_time_line)
        if self._ring is not None and packets:
            self._ring.add(packets)
            self._deliver(packets)

    def _new_ring(self, encoded: EncodedFrame) -> PacketRing:
        self.rate = encoded.rate or self.rate
        ring = PacketRing(encoded.width, encoded.height, self.keep_s, max_bytes=self.limits.max_ring_bytes)
        for clip in self._clips.values():  # opened before the first frame: they take its size
            if not clip.file.started:
                clip.file.width, clip.file.height = ring.width, ring.height
        return ring

    def _deliver(self, packets: list[EncodedPacket]) -> None:
        for packet in packets:
            for clip in list(self._clips.values()):
                if not self._append(clip, packet):
                    continue
                if clip.close_at is not None and packet.t >= clip.close_at:
                    self._finish(clip)
                elif clip.file.first_t is not None and packet.t - clip.file.first_t >= self.limits.max_clip_s:
                    self.counters.clips_cut += 1
                    log.info("stream %s: clip %s cut at %.0f s", self.stream_id, clip.clip_id,
                             self.limits.max_clip_s)
                    self._finish(clip)

    def _append(self, clip: _Clip, packet: EncodedPacket) -> bool:
        if not clip.file.started and packet.t <= clip.from_t:
            if packet.keyframe:
                clip.waiting = [packet]
            elif clip.waiting is not None:
                clip.waiting.append(packet)
            return True
        try:
            if clip.waiting is not None:
                waiting, clip.waiting = clip.waiting, None
                for held in waiting:
                    clip.file.append(held)
            clip.file.append(packet)
        except Exception as error:  # disk full, permissions: this clip is lost, the others go on
            self._fail(clip, error)
            return False
        return True

    def _end_time_line(self) -> None:
        """Closes the open clips (the encoder's flush has been delivered); the next time line starts anew."""
        self._ring = None
        for clip in list(self._clips.values()):
            self._finish(clip)

    def _finish(self, clip: _Clip) -> None:
        self._clips.pop(clip.clip_id, None)
        try:
            if clip.waiting is not None:  # the stream ended before reaching the clip's start
                waiting, clip.waiting = clip.waiting, None
                for held in waiting:
                    clip.file.append(held)
            path = clip.file.close()
        except Exception as error:
            self._fail(clip, error)
            return
        if path is None:
            self.counters.clips_empty += 1
            return
        self.counters.clips_written += 1
        log.debug("stream %s: clip %s written (%s to %s)", self.stream_id, path.name, clip.file.first_t,
                  clip.file.last_t)

    def _fail(self, clip: _Clip, error: Exception) -> None:
        self._clips.pop(clip.clip_id, None)
        clip.file.abandon()
        self.counters.clips_failed += 1
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        log.error("stream %s: clip %s failed: %s", self.stream_id, clip.clip_id, detail)
