"""Clips of tracked objects: ``<directory>/<stream>/<object.start event id>.mp4``.

:class:`ClipSink` is an event sink and, per stream, an output of the
stream's one encoder (:meth:`ClipSink.output`: the composition root adds it
to each tracked stream's :class:`~stream_detect.restream.encoder.StreamEncoder`,
which also feeds recording, RTSP and HLS). Each stream's packets are kept
in a ring (:mod:`.clip_ring`) on the stream's clip thread
(:mod:`.clip_stream`). An ``object.start`` notice opens the object's clip, an
``object.end`` notice sets when it closes; every open clip copies the same
packets (:mod:`.clip_file`), so many overlapping objects cost no encode at
all. Recording on or off, clips are the same.

Timing rule (all times are the frames' stream times: pts, or capture time
without one):

- **First frame.** ``object.start`` is decided on the frame that confirms the
  track, ``minimum_consecutive_frames`` processed frames after its first
  detection (the tracker confirms a track seen on that many processed frames
  in a row). The sink remembers the time of each processed frame it is given,
  so the first frame's time is that of the processed frame ``lead_frames - 1``
  before the event's ``frame``. The clip starts at the last keyframe at or
  before ``first - pre_s`` (or at the ring's start).
- **Last frame.** The latest processed frame whose result carried the track's
  id, and at least ``first + duration_s`` of the ``object.end`` event (the
  tracker's own span: covers results this sink lost). The clip ends at the
  first frame at or after ``last + post_s``, or at the stream's end. An
  ``object.end`` is decided ``lost_s`` after the last frame, so with
  ``lost_s > post_s`` the clip holds what was encoded meanwhile (copied
  packets cannot be taken back).
- **Order.** The encoder runs ahead of the events (frames are tapped before
  they are detected on), or behind them when it is slow: an object's open and
  close are applied once the clip thread has taken the frame the event was
  decided on, so a clip starts in the ring of that frame's time line.

Bounds: frames' packets waiting for a stream's clip thread (``queue_size``,
the oldest dropped), the ring (``pre_s`` + one GOP + ``ring_extra_s`` seconds, at most
``max_ring_bytes``), clips open per stream (``max_open``; more are refused),
a clip's length (``max_clip_s``, then closed). Every drop is counted in
:meth:`ClipSink.stats`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import STREAM_ID
from ..overlay import frame_time
from ..restream.feed import EncodedFrame, PacketFeed
from ..sinks import FrameResult, Notice
from ..sources.base import SourceState
from ..sources.capture import StateChange
from .clip_stream import ClipLimits, CloseClip, EndStream, OpenClip, StreamClips
from .media import media_path

log = logging.getLogger(__name__)

__all__ = ["ClipLimits", "ClipSink", "clip_path"]

_ENDS = (SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED)
CLIP_SUFFIX = ".mp4"
# Processed frames remembered per stream to find an object's first frame from its start event.
TIMELINE = 256
# Objects whose end a stream's sink waits for, at most.
MAX_OBJECTS = 1024
JOIN_S = 10.0
COUNTERS = ("frames_taken", "frames_dropped", "packets_skipped", "clips_open", "clips_written", "clips_refused",
            "clips_cut", "clips_failed", "clips_empty")


def clip_path(directory: Path, stream_id: str, start_event_id: str) -> Path | None:
    """Where the clip of the object whose ``object.start`` event is ``start_event_id`` is written
    (:func:`.media.media_path`: None for names that are not plain)."""
    return media_path(directory, stream_id, start_event_id, CLIP_SUFFIX)


@dataclass(slots=True)
class _Object:
    clip_id: str
    first_t: float | None
    last_t: float | None = None


@dataclass(slots=True)
class _Timeline:
    """What the results of one stream said: processed frames' times and each open object's frames."""

    processed: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=TIMELINE))
    objects: dict[int, _Object] = field(default_factory=dict)  # by track id

    def time_of(self, index: int) -> int | None:
        """The position of processed frame ``index`` (None: not remembered)."""
        for position in range(len(self.processed) - 1, -1, -1):
            if self.processed[position][0] == index:
                return position
        return None


class ClipSink:
    """Writes a clip per tracked object. Add :meth:`output` to each tracked stream's encoder and the sink
    as an event sink.

    Args:
        directory: Clips go to ``<directory>/<stream>/<object.start event id>.mp4``.
        pre_s: Seconds of video before an object's first frame.
        post_s: Seconds of video after its last frame.
        limits: Queue, ring and clip bounds.
        rate_of: A stream's nominal frame rate (sets its GOP), or None when unknown.
        lead_frames: Processed frames from an object's first detection to its ``object.start`` (the
            tracker's ``minimum_consecutive_frames``), per stream or for all.
    """

    name = "clips"

    def __init__(self, directory: Path, pre_s: float = 5.0, post_s: float = 5.0, *,
                 limits: ClipLimits | None = None,
                 rate_of: Callable[[str], float | None] = lambda stream_id: None,
                 lead_frames: int | Callable[[str], int] = 2) -> None:
        if pre_s < 0 or post_s < 0:
            raise ValueError(f"pre_s and post_s must be >= 0, got {pre_s} and {post_s}")
        self.directory = directory
        self.pre_s = pre_s
        self.post_s = post_s
        self.limits = limits or ClipLimits()
        self._rate_of = rate_of
        self._lead_frames = lead_frames
        self._lock = threading.Lock()
        self._streams: dict[str, StreamClips] = {}
        self._retired: list[StreamClips] = []
        self._retired_counts = dict.fromkeys(COUNTERS, 0)
        self._timelines: dict[str, _Timeline] = {}  # the sink runner's thread only
        self._closed = False
        self.events_ignored = 0  # ids that cannot name a file

    # -- the encoders' outputs (their threads) --------------------------------------

    def output(self, stream_id: str) -> PacketFeed:
        """What stream ``stream_id``'s encoder feeds: each frame's packets, queued for its clip thread
        (started with the first; a stream that ended gets a new one when its frames come back)."""

        def deliver(encoded: EncodedFrame) -> None:
            clips = self._stream(stream_id)
            if clips is not None:
                clips.put(encoded)

        def describe() -> dict[str, Any]:
            clips = self._streams.get(stream_id)
            return clips.stats() if clips is not None else {}

        return PacketFeed("clips", deliver, describe)

    # -- the sink (its runner's thread) ------------------------------------------

    def on_result(self, result: FrameResult) -> None:
        clips = self._stream(result.stream_id)
        if clips is None:
            return
        timeline = self._timelines.setdefault(result.stream_id, _Timeline())
        t = frame_time(result.frame)
        timeline.processed.append((result.frame.index, t))
        for track_id in result.track_ids or ():
            if track_id is not None and (known := timeline.objects.get(track_id)) is not None:
                known.last_t = t

    def on_event(self, notice: Notice) -> None:
        message = notice.message
        if notice.type != "event" or message.get("kind") not in ("object.start", "object.end"):
            return
        clips = self._stream(notice.stream_id)
        if clips is None:
            return
        timeline = self._timelines.setdefault(notice.stream_id, _Timeline())
        track_id = int(message["track_id"])
        if message["kind"] == "object.start":
            clip_id = str(message["id"])
            path = clip_path(self.directory, notice.stream_id, clip_id)
            if path is None:
                self.events_ignored += 1
                log.warning("stream %s: event id %r cannot name a clip", notice.stream_id, clip_id)
                return
            first_t = self._first_time(timeline, int(message["frame"]), self._lead(notice.stream_id))
            if len(timeline.objects) >= MAX_OBJECTS:  # ends never told (lost notices): forget the oldest
                del timeline.objects[next(iter(timeline.objects))]
            timeline.objects[track_id] = _Object(clip_id, first_t, last_t=None)
            from_t = float("-inf") if first_t is None else first_t - self.pre_s
            clips.command(OpenClip(clip_id, path, from_t, int(message["frame"])))
        else:
            known = timeline.objects.pop(track_id, None)
            if known is None:
                return
            clips.command(CloseClip(known.clip_id, self._close_time(known, message.get("duration_s")),
                                    int(message["frame"])))

    def on_status(self, change: StateChange) -> None:
        """A stream that ends, fails or stops closes its open clips (after its queued frames)."""
        if change.state not in _ENDS:
            return
        self._timelines.pop(change.stream_id, None)
        with self._lock:  # replaced, never mutated: the frame tap reads it without the lock
            clips = self._streams.get(change.stream_id)
            if clips is not None:
                self._streams = {key: value for key, value in self._streams.items() if key != change.stream_id}
                self._retired.append(clips)
        if clips is not None:  # its frames of a later run go to a new encoder
            clips.command(EndStream())
            clips.stop()

    def close(self) -> None:
        """Writes what is queued, closes every open clip and joins the clip threads."""
        with self._lock:
            self._closed = True
            self._retired.extend(self._streams.values())  # their counters stay in stats()
            streams = list(self._retired)
            self._streams = {}
        deadline = time.monotonic() + JOIN_S
        for clips in streams:
            clips.stop()
        for clips in streams:
            if not clips.join(max(0.1, deadline - time.monotonic())):
                log.error("stream %s: the clip thread did not stop within %.0f s", clips.stream_id, JOIN_S)

    # -- numbers ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per stream (``streams``) and for all (the counters summed, ended streams included)."""
        with self._lock:
            self._reap()
            streams = dict(self._streams)
            retired = list(self._retired)
            totals = dict(self._retired_counts)
        per_stream = {stream_id: clips.stats() for stream_id, clips in streams.items()}
        for described in [*per_stream.values(), *(clips.stats() for clips in retired)]:
            for key in COUNTERS:
                value = described[key]
                totals[key] += value if isinstance(value, int) else 0
        return {**totals, "events_ignored": self.events_ignored, "streams": per_stream}

    # -- inside -----------------------------------------------------------------

    def _stream(self, stream_id: str) -> StreamClips | None:
        clips = self._streams.get(stream_id)
        if clips is not None:
            return clips
        if not STREAM_ID.fullmatch(stream_id):
            return None
        with self._lock:
            if self._closed:
                return None
            clips = self._streams.get(stream_id)
            if clips is None:
                self._reap()
                clips = StreamClips(stream_id, self.directory / stream_id, self.post_s,
                                    self.pre_s + self.limits.keyframe_s + self.limits.ring_extra_s,
                                    self._rate_of(stream_id), self.limits)
                clips.start()
                self._streams = {**self._streams, stream_id: clips}
        return clips

    def _reap(self) -> None:
        """Folds the counters of ended streams' finished threads into the totals (under the lock)."""
        for clips in [c for c in self._retired if not c.alive]:
            self._retired.remove(clips)
            described = clips.stats()
            for key in COUNTERS:
                value = described[key]
                if key != "clips_open" and isinstance(value, int):
                    self._retired_counts[key] += value

    def _lead(self, stream_id: str) -> int:
        lead = self._lead_frames(stream_id) if callable(self._lead_frames) else self._lead_frames
        return max(1, lead)

    @staticmethod
    def _first_time(timeline: _Timeline, frame_index: int, lead: int) -> float | None:
        position = timeline.time_of(frame_index)
        if position is None:  # its result was not seen (dropped): the newest one known
            return timeline.processed[-1][1] if timeline.processed else None
        return timeline.processed[max(0, position - (lead - 1))][1]

    def _close_time(self, known: _Object, duration_s: object) -> float | None:
        candidates = [t for t in (known.last_t,) if t is not None]
        if known.first_t is not None and isinstance(duration_s, (int, float)):
            candidates.append(known.first_t + float(duration_s))
        if not candidates:
            return None
        return max(candidates) + self.post_s
