"""Analytics events and counts (pure); their messages are built by :mod:`stream_detect.serialize`.

The event envelope, one shape for every kind::

    {"type": "event", "version": 1, "id": "1764748800123-cam1-0000000042-0000",
     "kind": "zone.enter", "stream": "cam1", "at": 1764748800.123, "frame": 42,
     "track_id": 7, "label": "person", "score": 0.93,
     "box": {"xmin": 12, "ymin": 50, "xmax": 310, "ymax": 470},
     "zone": "porch", "line": null, "direction": null, "duration_s": null}

``frame`` is the index of the frame the event was decided on and ``at`` that
frame's capture time; every decision and ``duration_s`` (set on
``zone.leave``, ``zone.loiter`` and ``object.end``) come from pts, so a
replay gives the same events at the same frames. The ``id`` is
``<at in ms, 13 digits>-<stream>-<frame, 10 digits>-<n, 4 digits>``, ``n``
counting the stream's events within the frame: unique, the same for the
same input, and sorting by time (then stream, frame, order of decision).

The counts message, sent when a count changed::

    {"type": "counts", "version": 1, "stream": "cam1", "at": 1764748800.123,
     "zones": {"porch": {"person": 1, "car": 0}},
     "lines": {"gate": {"in": 12, "out": 3,
                        "labels": {"car": {"in": 12, "out": 3}}}}}

``zones``: every zone of the stream, and per label the tracks inside now (a
label once seen stays listed, at 0 when gone). ``lines``: every line, the
crossings since the stream started per direction, and the same per label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..serialize import counts_message as wire_counts_message
from ..serialize import event_message
from .lines import LineCount
from .zones import Direction, EventKind

SCHEMA_VERSION = 1
KINDS: tuple[EventKind, ...] = ("object.start", "object.end", "zone.enter", "zone.leave", "zone.loiter",
                                "line.cross")


def event_id(at: float, stream: str, frame: int, number: int) -> str:
    """The id of the ``number``-th event decided on ``frame`` of ``stream`` (see the module's docstring)."""
    return f"{round(at * 1000):013d}-{stream}-{frame:010d}-{number:04d}"


def wire_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """A box as the wire's integers, truncated like :func:`stream_detect.serialize.to_hf_elements`."""
    xmin, ymin, xmax, ymax = np.trunc(np.asarray(box, np.float64)).astype(np.int64).tolist()
    return xmin, ymin, xmax, ymax


@dataclass(frozen=True, slots=True)
class Event:
    """One analytics event (fields as in the envelope; ``box`` in integer pixels)."""

    id: str
    kind: EventKind
    stream: str
    at: float
    frame: int
    track_id: int
    label: str
    score: float
    box: tuple[int, int, int, int]
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    duration_s: float | None = None

    def message(self) -> dict[str, Any]:
        """The ``{"type": "event", ...}`` websocket message."""
        return event_message(event_id=self.id, kind=self.kind, stream_id=self.stream, at=self.at, frame=self.frame,
                             track_id=self.track_id, label=self.label, score=self.score, box=self.box,
                             zone=self.zone, line=self.line, direction=self.direction, duration_s=self.duration_s)


@dataclass(frozen=True, slots=True)
class Counts:
    """A stream's counts at one moment: zone occupancy per label, line crossings so far."""

    zones: Mapping[str, Mapping[str, int]]
    lines: Mapping[str, LineCount]


def counts_message(stream: str, at: float, counts: Counts) -> dict[str, Any]:
    """The ``{"type": "counts", ...}`` websocket message (shape in the module's docstring)."""
    return wire_counts_message(
        stream, at,
        {zone: dict(labels) for zone, labels in counts.zones.items()},
        {line: {**count.total, "labels": {label: dict(d) for label, d in count.by_label.items()}}
         for line, count in counts.lines.items()},
    )
