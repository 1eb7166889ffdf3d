"""Each tracked object's best frame, kept while the object lasts and written as a JPEG when it ends.

:class:`SnapshotSink` is a sink of the dispatcher (it takes notices). For
each open tracked object of a stream, keyed by stream and track id and named
by its ``object.start`` event's id once that notice arrives, it keeps the
best frame seen so far; at the object's ``object.end`` it writes
``DIRECTORY/<stream>/<start-event-id>.jpg`` (the clean frame, no drawing)
and beside it ``<start-event-id>.json``, the sidecar::

    {"version": 1, "event": "<start event id>", "stream": "cam1", "track_id": 7, "label": "person",
     "score": 0.93, "quality": 0.71,
     "box": {"xmin": 12.0, "ymin": 50.0, "xmax": 310.0, "ymax": 470.0},
     "frame": {"index": 42, "pts": 2.8, "captured_at": 1764748800.123, "width": 640, "height": 480}}

Both are written to a temporary file in the same directory and renamed into
place (sidecar first, so a JPEG present always has its sidecar); without an
fsync: a power cut may lose the last snapshots, never leave a half file.

The best frame: each detection of a tracked object scores
:func:`frame_quality`, ``(0.7 * confidence + 0.3 * size) * edge`` where
``size = sqrt(box area / frame area)`` (the box's side relative to the
frame's, 0 to 1) and ``edge`` is 0.5 when the box comes within
:data:`EDGE_MARGIN_PX` of the frame's border (the object is likely cut) and
1 otherwise. A frame replaces the kept one when it scores at least
:data:`MIN_GAIN` more, so noise in the scores does not re-encode every frame.

Memory: per open object one JPEG (quality 90 by default, encoded once when a
frame becomes an object's best, and shared by the objects that chose the
same frame) and its box; at most ``max_open`` objects per stream, beyond
which the oldest (the first seen) is forgotten, counted in
:attr:`SnapshotStats.dropped`, and gets no snapshot. Also per stream the
latest written JPEG (:meth:`SnapshotSink.latest_jpeg`) and the start ids of
the last :data:`RECENT_PER_STREAM` objects written. Decoded images are
never kept.

Order of what arrives (as :meth:`stream_detect.pipeline.Pipeline._emit`
publishes it): a frame's result comes before the notices of the events
decided on it, so an object's first frames are kept under its track id
before its ``object.start`` names it. Threads: the sink's calls come on its
runner's thread; :meth:`~SnapshotSink.latest_jpeg`,
:meth:`~SnapshotSink.snapshot_of` and :attr:`~SnapshotSink.stats` are safe
from any thread (the MQTT sink calls ``snapshot_of`` on its own).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import orjson

from ..sinks import FrameResult, Notice
from ..sources.base import SourceState
from ..sources.capture import StateChange
from .media import media_path

log = logging.getLogger(__name__)

CONFIDENCE_WEIGHT = 0.7
SIZE_WEIGHT = 0.3
EDGE_MARGIN_PX = 2.0
EDGE_FACTOR = 0.5
MIN_GAIN = 0.02
DEFAULT_MAX_OPEN = 64
DEFAULT_JPEG_QUALITY = 90
RECENT_PER_STREAM = 256
SIDECAR_VERSION = 1
_OVER = frozenset({SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED})

Box = tuple[float, float, float, float]


def touches_edge(box: Box, width: int, height: int) -> bool:
    """Whether ``box`` (``xmin, ymin, xmax, ymax`` in pixels) comes within :data:`EDGE_MARGIN_PX` of the
    border of a ``width`` x ``height`` frame."""
    xmin, ymin, xmax, ymax = box
    return (xmin < EDGE_MARGIN_PX or ymin < EDGE_MARGIN_PX or xmax > width - EDGE_MARGIN_PX
            or ymax > height - EDGE_MARGIN_PX)


def frame_quality(box: Box, confidence: float, width: int, height: int) -> float:
    """How good a picture of its object a detection is: ``(0.7 * confidence + 0.3 * size) * edge``
    (see the module's docstring); higher is better, 0 to 1."""
    xmin, ymin, xmax, ymax = (min(max(v, 0.0), limit) for v, limit in zip(box, (width, height) * 2, strict=True))
    area = max(0.0, xmax - xmin) * max(0.0, ymax - ymin)
    size = math.sqrt(area / (width * height)) if width > 0 and height > 0 else 0.0
    quality = CONFIDENCE_WEIGHT * min(max(confidence, 0.0), 1.0) + SIZE_WEIGHT * min(size, 1.0)
    return quality * (EDGE_FACTOR if touches_edge(box, width, height) else 1.0)


def encode_rgb_jpeg(image: np.ndarray, quality: int) -> bytes:
    """``(H, W, 3) uint8`` RGB to JPEG bytes."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An object's best frame so far: the clean frame as JPEG, and where the object is in it."""

    jpeg: bytes = field(repr=False)
    box: Box
    label: str
    score: float
    quality: float
    frame_index: int
    pts: float | None
    captured_at: float
    width: int
    height: int

    def sidecar(self, stream: str, start_id: str, track_id: int) -> dict[str, Any]:
        """The JSON written beside the JPEG (shape in the module's docstring)."""
        xmin, ymin, xmax, ymax = (round(v, 2) for v in self.box)
        return {
            "version": SIDECAR_VERSION, "event": start_id, "stream": stream, "track_id": track_id,
            "label": self.label, "score": round(self.score, 5), "quality": round(self.quality, 5),
            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
            "frame": {"index": self.frame_index, "pts": self.pts, "captured_at": round(self.captured_at, 6),
                      "width": self.width, "height": self.height},
        }


@dataclass(slots=True)
class _Open:
    track_id: int
    start_id: str | None = None
    best: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    """Counters of a :class:`SnapshotSink`.

    Attributes:
        open: Objects kept now.
        written: Snapshots written.
        dropped: Open objects forgotten past ``max_open`` (no snapshot).
        unnamed: Objects over without their ``object.start`` notice (dropped on the way): no snapshot.
        failed: Snapshots that could not be written (the disk).
        encodes: JPEGs encoded (frames that became an object's best).
    """

    open: int
    written: int
    dropped: int
    unnamed: int
    failed: int
    encodes: int


class SnapshotSink:
    """Keeps each tracked object's best frame and writes it when the object ends.

    Args:
        directory: Where snapshots go, one directory per stream (created as needed).
        max_open: Objects kept per stream at most; past it the oldest is forgotten (counted).
        jpeg_quality: JPEG quality, 1 to 100.
        min_gain: How much better (in :func:`frame_quality`) a frame must be to replace the kept one.
    """

    name = "snapshots"

    def __init__(self, directory: Path, *, max_open: int = DEFAULT_MAX_OPEN,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY, min_gain: float = MIN_GAIN) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, not {max_open!r}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be from 1 to 100, not {jpeg_quality!r}")
        self.directory = directory
        self.max_open = max_open
        self.jpeg_quality = jpeg_quality
        self.min_gain = min_gain
        self._lock = threading.Lock()
        self._open: dict[str, OrderedDict[int, _Open]] = {}
        self._recent: dict[str, OrderedDict[int, str]] = {}
        self._latest: dict[str, bytes] = {}
        self._written = self._dropped = self._unnamed = self._failed = self._encodes = 0
        self._closed = False

    # --- the sink's side: its runner's thread ---------------------------------------------

    def on_result(self, result: FrameResult) -> None:
        track_ids = result.track_ids
        if track_ids is None:
            return
        frame = result.frame
        stream = frame.stream_id
        detections = result.detections
        jpeg: bytes | None = None  # this frame's JPEG, encoded once for every object that takes it
        for row, track_id in enumerate(track_ids):
            if track_id is None:
                continue
            box: Box = tuple(float(v) for v in detections.xyxy[row])  # type: ignore[assignment]
            score = float(detections.confidence[row])
            quality = frame_quality(box, score, frame.width, frame.height)
            with self._lock:
                kept = self._object(stream, track_id)
                if kept.best is not None and quality < kept.best.quality + self.min_gain:
                    continue
            if jpeg is None:
                jpeg = encode_rgb_jpeg(frame.image, self.jpeg_quality)
                self._encodes += 1
            snapshot = Snapshot(jpeg, box, detections.labels[row], score, quality, frame.index, frame.pts,
                                frame.captured_at, frame.width, frame.height)
            with self._lock:
                kept.best = snapshot

    def on_event(self, notice: Notice) -> None:
        if notice.type != "event":
            return
        message = notice.message
        kind, stream, track_id, event_id = (message.get("kind"), message.get("stream"), message.get("track_id"),
                                            message.get("id"))
        if not isinstance(stream, str) or not isinstance(track_id, int) or not isinstance(event_id, str):
            return
        if kind == "object.start":
            with self._lock:
                kept = self._object(stream, track_id)
                stale = kept.start_id is not None and kept.start_id != event_id
                if stale:  # its end never came (a notice dropped on the way): that object is over
                    self._open[stream].pop(track_id)
                    fresh = self._object(stream, track_id)
                    fresh.start_id = event_id
                else:
                    kept.start_id = event_id
                self._recent.get(stream, OrderedDict()).pop(track_id, None)
            if stale:
                self._write(stream, kept)
        elif kind == "object.end":
            with self._lock:
                ended = self._open.get(stream, OrderedDict()).pop(track_id, None)
            if ended is not None:
                self._write(stream, ended)

    def on_status(self, change: StateChange) -> None:
        if change.state in _OVER:  # its objects' ends came before; what is left never will
            self._write_all(change.stream_id)

    def close(self) -> None:
        """Writes the objects still open that have a name and a frame (the analyzer stops). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._open):
            self._write_all(stream)

    # --- any thread ----------------------------------------------------------------------

    def latest_jpeg(self, stream_id: str) -> bytes | None:
        """The latest snapshot written for ``stream_id`` (MQTT's ``<prefix>/<stream>/snapshot``), or None."""
        with self._lock:
            return self._latest.get(stream_id)

    def snapshot_of(self, event: Mapping[str, Any]) -> bytes | None:
        """The JPEG of ``event``'s object (an event envelope): its snapshot once written, before that its
        best frame so far; None when there is neither. For the MQTT sink's ``snapshot_of``."""
        stream, track_id, kind, event_id = (event.get("stream"), event.get("track_id"), event.get("kind"),
                                            event.get("id"))
        if not isinstance(stream, str) or not isinstance(track_id, int) or not isinstance(event_id, str):
            return None
        with self._lock:
            objects, recent = self._open.get(stream), self._recent.get(stream)
            kept = objects.get(track_id) if objects is not None else None
            if kept is not None and (kind != "object.start" or kept.start_id in (None, event_id)):
                return kept.best.jpeg if kept.best is not None else None
            start_id = event_id if kind == "object.start" else recent.get(track_id) if recent is not None else None
        return None if start_id is None else self.read(stream, start_id)

    def read(self, stream: str, start_id: str) -> bytes | None:
        """The written snapshot of the object started by ``start_id`` on ``stream``, or None."""
        path = media_path(self.directory, stream, start_id, ".jpg")
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    @property
    def stats(self) -> SnapshotStats:
        with self._lock:
            kept = sum(len(objects) for objects in self._open.values())
            return SnapshotStats(kept, self._written, self._dropped, self._unnamed, self._failed, self._encodes)

    # --- inside ----------------------------------------------------------------------------

    def _object(self, stream: str, track_id: int) -> _Open:
        """The open object of ``track_id`` on ``stream``, made if new (the oldest forgotten past the bound).
        Under the lock."""
        objects = self._open.setdefault(stream, OrderedDict())
        kept = objects.get(track_id)
        if kept is None:
            while len(objects) >= self.max_open:
                forgotten_id, _ = objects.popitem(last=False)
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 100 == 0:  # a crowd is logged once, not per object
                    log.warning("snapshots: stream %s has more than %d open objects; track %d gets no snapshot "
                                "(%d objects dropped so far)", stream, self.max_open, forgotten_id, self._dropped)
            kept = objects[track_id] = _Open(track_id)
        return kept

    def _write_all(self, stream: str) -> None:
        with self._lock:
            objects = self._open.pop(stream, OrderedDict())
        for kept in objects.values():
            self._write(stream, kept)

    def _write(self, stream: str, kept: _Open) -> None:
        best, start_id = kept.best, kept.start_id
        if start_id is None:
            with self._lock:
                self._unnamed += 1
            return
        if best is None:  # named, but none of its frames reached this sink (results dropped): nothing to show
            return
        jpeg_path = media_path(self.directory, stream, start_id, ".jpg")
        sidecar_path = media_path(self.directory, stream, start_id, ".json")
        try:
            if jpeg_path is None or sidecar_path is None:
                raise ValueError(f"stream {stream[:100]!r} or event id {start_id[:100]!r} is not a plain name")
            jpeg_path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(sidecar_path, orjson.dumps(best.sidecar(stream, start_id, kept.track_id)))
            _write_atomically(jpeg_path, best.jpeg)
        except (OSError, ValueError) as error:
            with self._lock:
                self._failed += 1
            log.error("snapshots: the snapshot of event %s not written: %s", start_id[:100],
                      getattr(error, "strerror", None) or error)
            return
        with self._lock:
            self._written += 1
            self._latest[stream] = best.jpeg
            recent = self._recent.setdefault(stream, OrderedDict())
            recent[kept.track_id] = start_id
            recent.move_to_end(kept.track_id)
            while len(recent) > RECENT_PER_STREAM:
                recent.popitem(last=False)


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file beside it, renamed into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
