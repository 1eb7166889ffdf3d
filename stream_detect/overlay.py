"""What is drawn over a stream's frames between two detections: boxes that follow moving objects.

The preview and the recordings draw each captured frame with the latest
detections. At a few detections per second a moving object's box would
trail behind it, so :class:`Overlay` moves the box of each tracked object
to where it is predicted on the frame being drawn:

    box(t) = box + velocity * clamp(t - t_detected, 0, max_ahead_s)

``t`` is the drawn frame's time and ``t_detected`` the detected frame's
(their pts, or their capture times for a source without timestamps);
``velocity`` is the track's, in pixels per second of pts, estimated by the
tracker from its recent observations (:mod:`.analytics.tracking`). Boxes
without a track stay where they were detected. An overlay is immutable:
it is made once per processed frame on the detector thread and read by any
thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .analytics.geometry import to_pixels
from .analytics.settings import LineConfig, ZoneConfig
from .records import Detections, Frame
from .render import Regions, draw_detections


def frame_time(frame: Frame) -> float:
    """The time predictions run on: the frame's pts, or its capture time without one."""
    return frame.pts if frame.pts is not None else frame.captured_at


@dataclass(frozen=True, eq=False)
class Overlay:
    """The latest detections of a stream and how to draw them on a later frame.

    Attributes:
        detections: The detections, in the detected frame's pixels.
        track_ids: Each detection's track id (None: not a confirmed track); None for untracked streams.
        velocities: ``(N, 4) float64`` pixels per second of each box's corners (zeros: no motion known).
        detected_t: The detected frame's time (:func:`frame_time`).
        max_ahead_s: Predictions go at most this far past ``detected_t``.
        zones, lines: The stream's zones and lines (drawn under the boxes).
    """

    detections: Detections
    track_ids: tuple[int | None, ...] | None = None
    velocities: np.ndarray | None = None
    detected_t: float | None = None
    max_ahead_s: float = 1.0
    zones: tuple[ZoneConfig, ...] = field(default=())
    lines: tuple[LineConfig, ...] = field(default=())

    @classmethod
    def empty(cls, zones: Sequence[ZoneConfig] = (), lines: Sequence[LineConfig] = ()) -> Overlay:
        return cls(Detections.empty(), zones=tuple(zones), lines=tuple(lines))

    def boxes_at(self, t: float | None) -> Detections:
        """The detections with each tracked box moved to where it is predicted at ``t``."""
        if self.velocities is None or t is None or self.detected_t is None or not len(self.detections):
            return self.detections
        ahead = min(max(0.0, t - self.detected_t), self.max_ahead_s)
        if ahead == 0.0:
            return self.detections
        moved = self.detections.xyxy + (self.velocities * ahead).astype(np.float32)
        return Detections(moved, self.detections.confidence, self.detections.class_id, self.detections.labels)

    def regions(self, width: int, height: int) -> Regions:
        """The zones and lines in the pixels of a ``width`` x ``height`` frame."""
        lines = []
        for line in self.lines:
            (xa, ya), (xb, yb) = to_pixels(line.points, line.units, width, height).tolist()
            lines.append((line.name, (xa, ya), (xb, yb)))
        return Regions(
            zones=tuple((zone.name, to_pixels(zone.polygon, zone.units, width, height)) for zone in self.zones),
            lines=tuple(lines),
        )

    def draw(self, frame: Frame, *, predict: bool = True, stream_name: str | None = None,
             clock: float | None = None, fps: float | None = None) -> np.ndarray:
        """``frame``'s image with the zones, lines and boxes (predicted at its time unless ``predict`` is
        False) drawn on it."""
        boxes = self.boxes_at(frame_time(frame)) if predict else self.detections
        return draw_detections(frame.image, boxes, stream_name=stream_name, clock=clock, fps=fps,
                               track_ids=self.track_ids, regions=self.regions(frame.width, frame.height))
