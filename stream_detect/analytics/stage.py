"""One stream's analytics: masks and filters, tracking, zones and lines, events and counts.

:class:`StreamAnalytics` is pure and thread-confined: one per stream, called
from one thread, frames in order. It reads no clock: every decision runs on
the times it is given (the frame's pts; its capture time only names ``at``).

Time line: ``t`` is the frame's pts, or its capture time for a source without
timestamps. A pts that goes back by :data:`RESTART_S` or more (a looped
file, a reconnect that restarts the clock) starts a new time line: the open
tracks end there (as :meth:`StreamAnalytics.finish` ends them) and ``t``
keeps increasing. A frame with the same pts as the one before, or a little
earlier, is taken a microsecond after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..records import Detections
from .events import Counts, Event, counts_message, event_id, wire_box
from .filters import DetectionFilter
from .lines import LineWatch
from .settings import AnalyticsFields, tracking_enabled
from .tracking import StreamTracker, Track
from .zones import Transition, ZoneWatch

SAME_PTS_STEP_S = 1e-6
# A pts this far behind the last one starts a new time line; a smaller step back is taken as no step.
RESTART_S = 1.0


@dataclass(frozen=True, slots=True)
class FrameAnalytics:
    """What one frame gave.

    Attributes:
        detections: The detections kept after masks and filters.
        track_ids: Per kept detection, its track id, or None (unconfirmed, or the stream is not tracked).
        events: Events decided on this frame, in order.
        counts_changed: A zone occupancy or line count changed on this frame.
        dropped: Detections dropped on this frame per reason (``mask``, ``filter``, and on a tracked
            stream ``duplicate``: see :func:`.filters.duplicates`).
        velocities: ``(N, 4) float64`` pixels per second of pts of each kept box's corners, from its
            track (zeros without a track). Overlays drawn on another thread move a box by
            ``velocity * clamp(t - pts, 0, max_prediction_s)``: the rule of :meth:`StreamTracker.predict`.
    """

    detections: Detections
    track_ids: tuple[int | None, ...]
    events: tuple[Event, ...]
    counts_changed: bool
    dropped: Mapping[str, int]
    velocities: np.ndarray


@dataclass(frozen=True, slots=True)
class PredictedBox:
    """Where a track's box is predicted on a frame shown between detections."""

    track_id: int
    label: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class _FrameContext:
    index: int
    captured_at: float


class StreamAnalytics:
    """Analytics of one stream.

    Args:
        stream_id: The stream's id (in events and counts).
        settings: The source's analytics fields.
    """

    def __init__(self, stream_id: str, settings: AnalyticsFields) -> None:
        self.stream_id = stream_id
        self.settings = settings
        self.tracking = tracking_enabled(settings)
        # Duplicates matter to tracks only: an untracked stream's detections stay as the model gave them.
        duplicate_iou = settings.tracker.duplicate_iou if self.tracking else None
        self._filter = DetectionFilter(settings.masks, settings.filters, duplicate_iou)
        inertia = settings.tracker.inertia
        self._tracker = StreamTracker(settings.tracker) if self.tracking else None
        self._zones = ZoneWatch(settings.zones, inertia)
        self._lines = LineWatch(settings.lines, inertia)
        self._last_t: float | None = None
        self._offset = 0.0
        self._last_frame: _FrameContext | None = None

    def _time_line(self, pts: float | None, captured_at: float) -> tuple[float, bool]:
        """``t`` of a frame, and whether its pts started a new time line."""
        t = (captured_at if pts is None else pts) + self._offset
        restarted = False
        if self._last_t is not None and t <= self._last_t - RESTART_S:
            self._offset += self._last_t - t + SAME_PTS_STEP_S
            t, restarted = self._last_t + SAME_PTS_STEP_S, True
        elif self._last_t is not None and t <= self._last_t:
            t = self._last_t + SAME_PTS_STEP_S
        self._last_t = t
        return t, restarted

    def process(self, frame_index: int, pts: float | None, captured_at: float, width: int, height: int,
                detections: Detections) -> FrameAnalytics:
        """Analyses one frame's detections.

        Args:
            frame_index: The frame's index in the stream (events' ``frame``).
            pts: The frame's presentation time in seconds, or None.
            captured_at: The frame's capture time (epoch seconds; events' ``at``).
            width, height: The frame's size in pixels.
            detections: The detector's output for the frame.
        """
        kept = self._filter.apply(detections, width, height)
        if self._tracker is None:
            return FrameAnalytics(kept.detections, (None,) * len(kept.detections), (), False, kept.dropped,
                                  np.zeros((len(kept.detections), 4)))
        frame = _FrameContext(frame_index, captured_at)
        self._last_frame = frame
        t, restarted = self._time_line(pts, captured_at)
        transitions: list[Transition] = []
        if restarted:
            transitions.extend(self._end_tracks(self._tracker.end_all()))
        update = self._tracker.update(t, kept.detections)
        transitions.extend(self._end_tracks(update.ended))
        transitions.extend(Transition("object.start", track) for track in update.started)
        observed = [(track, float(kept.detections.confidence[row])) for track, row in update.observed]
        transitions.extend(self._zones.observe(t, observed, width, height))
        transitions.extend(self._lines.observe(t, observed, width, height))
        events = self._dress(transitions, frame)
        changed = any(event.kind in ("zone.enter", "zone.leave", "line.cross") for event in events)
        velocities = np.zeros((len(kept.detections), 4))
        for track, row in update.observed:
            velocities[row] = self._tracker.velocity(track)
        return FrameAnalytics(kept.detections, update.track_ids, events, changed, kept.dropped, velocities)

    def _end_tracks(self, tracks: tuple[Track, ...] | list[Track]) -> list[Transition]:
        transitions: list[Transition] = []
        for track in tracks:
            transitions.extend(self._zones.end(track))
            self._lines.end(track)
            transitions.append(Transition("object.end", track, duration_s=track.last_t - track.first_t))
        return transitions

    def _dress(self, transitions: list[Transition], frame: _FrameContext) -> tuple[Event, ...]:
        return tuple(
            Event(
                id=event_id(frame.captured_at, self.stream_id, frame.index, number),
                kind=transition.kind,
                stream=self.stream_id, at=frame.captured_at, frame=frame.index,
                track_id=transition.track.track_id, label=transition.track.label,
                score=transition.track.score, box=wire_box(transition.track.box),
                zone=transition.zone, line=transition.line,
                direction=transition.direction,
                duration_s=transition.duration_s,
            )
            for number, transition in enumerate(transitions)
        )

    def finish(self, captured_at: float) -> list[Event]:
        """The stream ended or was removed: every open track leaves its zones and ends.

        The events carry the last processed frame's index and ``captured_at``.
        """
        if self._tracker is None or self._last_frame is None:
            return []
        frame = _FrameContext(self._last_frame.index, captured_at)
        return list(self._dress(self._end_tracks(self._tracker.end_all()), frame))

    def counts(self) -> Counts:
        """A snapshot of the zone occupancy and the line counts."""
        return Counts(self._zones.occupancy(), self._lines.counts())

    def counts_message(self, at: float) -> dict[str, object]:
        """The ``{"type": "counts", ...}`` message of :meth:`counts`."""
        return counts_message(self.stream_id, at, self.counts())

    def predicted(self, pts: float | None, captured_at: float | None = None) -> list[PredictedBox]:
        """The open tracks' boxes predicted for a frame shown at ``pts`` (the rule: :mod:`.tracking`).

        ``captured_at`` stands in for a source without pts, as in :meth:`process`.
        """
        if self._tracker is None:
            return []
        raw = pts if pts is not None else captured_at
        if raw is None:
            return []
        t = raw + self._offset
        tracks = self._tracker.tracks
        predicted = []
        for track in tracks:
            xmin, ymin, xmax, ymax = (float(v) for v in self._tracker.predict(track, t))
            predicted.append(PredictedBox(track.track_id, track.label, (xmin, ymin, xmax, ymax)))
        return predicted
