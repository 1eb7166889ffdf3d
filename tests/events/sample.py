"""Events for the store's tests: valid envelopes with chosen times, kinds and places."""

from __future__ import annotations

import itertools
from typing import Any

# A whole UTC day (and so a whole hour and minute): 2025-12-03T00:00:00Z.
DAY = 1_764_720_000.0

_serial = itertools.count()


def event(at: float, kind: str = "object.start", *, stream: str = "porch-cam", label: str = "person",
          zone: str | None = None, line: str | None = None, direction: str | None = None,
          event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """One envelope as the analyzer sends it; the id sorts by time, then by a serial number."""
    serial = next(_serial)
    if kind.startswith("zone.") and zone is None:
        zone = "porch"
    if kind == "line.cross":
        line = line or "gate"
        direction = direction or "in"
    return {
        "type": "event", "version": 1, "id": event_id or f"{at:017.6f}-{serial:09d}", "kind": kind,
        "stream": stream, "at": at, "frame": serial, "track_id": serial % 97, "label": label, "score": 0.875,
        "box": {"xmin": 10.5, "ymin": 20.0, "xmax": 110.25, "ymax": 220.0}, "zone": zone, "line": line,
        "direction": direction, "duration_s": 4.5 if kind in ("zone.leave", "object.end", "zone.loiter") else None,
        **extra,
    }
