"""Tracking, zones, lines, masks and filters of one stream (issue 18): the pure core.

- :mod:`.settings`: the per-source keys (:class:`AnalyticsFields`), validated;
- :mod:`.geometry`: anchors, point-in-polygon, sides of a line, units to pixels;
- :mod:`.filters`: masks and per-label filters, drops counted by reason;
- :mod:`.tracking`: ByteTrack under public ids that age by pts, and box prediction;
- :mod:`.zones`, :mod:`.lines`: presence with inertia, loitering, crossings, counts;
- :mod:`.events`: the event and counts messages;
- :mod:`.stage`: :class:`StreamAnalytics`, one per stream, from detections to events.
"""

from .events import KINDS, Counts, Event, counts_message
from .settings import (
    AnalyticsFields,
    LabelFilter,
    LineConfig,
    MaskConfig,
    TrackerConfig,
    ZoneConfig,
    tracking_enabled,
)
from .stage import FrameAnalytics, PredictedBox, StreamAnalytics

__all__ = [
    "KINDS",
    "AnalyticsFields",
    "Counts",
    "Event",
    "FrameAnalytics",
    "LabelFilter",
    "LineConfig",
    "MaskConfig",
    "PredictedBox",
    "StreamAnalytics",
    "TrackerConfig",
    "ZoneConfig",
    "counts_message",
    "tracking_enabled",
]
