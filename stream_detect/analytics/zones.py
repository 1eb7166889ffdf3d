"""Zone presence per track: enter and leave with inertia, loitering by pts, occupancy per label.

An object is where its box's bottom centre (anchor) is. Each (track, zone)
pair is a small state machine fed one observation per processed frame in
which the track was detected:

- **enter** when the anchor has been inside for ``inertia`` observations in a
  row, **leave** after as many outside: a box jittering on the border does
  not flap. The event is decided on the frame that completes the run.
- A stay starts at the time (pts) of the first inside observation of the
  run that entered and ends at the first outside observation of the run that
  left; ``duration_s`` of ``zone.leave`` is that difference.
- **loiter** once per stay, on the first inside observation at least
  ``loiter_s`` after the stay started.
- A detection that fails the zone's ``labels`` or ``min_score`` is no
  observation for that zone (it neither enters nor leaves it).
- A track that ends while inside leaves, its stay ending at its last
  detection (or at the first outside observation of an unfinished leave).

Only confirmed tracks are ever given to this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .geometry import PixelGeometry, inside_polygon
from .settings import ZoneConfig
from .tracking import Track

EventKind = Literal["object.start", "object.end", "zone.enter", "zone.leave", "zone.loiter", "line.cross"]
Direction = Literal["in", "out"]


@dataclass(slots=True)
class Hysteresis:
    """A value (a side, inside or not) that changes only after ``inertia`` observations in a row of another.

    ``value`` is None until the first run of ``inertia`` equal observations.
    """

    inertia: int
    value: int | None = None
    candidate: int | None = None
    count: int = 0
    candidate_since: float = 0.0

    def observe(self, value: int, t: float) -> bool:
        """Takes one observation at time ``t``; returns whether ``value`` changed."""
        if value == self.value:
            self.candidate, self.count = None, 0
            return False
        if value != self.candidate:
            self.candidate, self.count, self.candidate_since = value, 0, t
        self.count += 1
        if self.count < self.inertia:
            return False
        self.value, self.candidate, self.count = value, None, 0
        return True


@dataclass(frozen=True, slots=True)
class Transition:
    """A zone or line event before it is dressed as an :class:`~.events.Event`."""

    kind: EventKind
    track: Track
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    duration_s: float | None = None


@dataclass(slots=True)
class _Presence:
    state: Hysteresis
    stay_since: float = 0.0
    label: str = ""
    loitered: bool = False

    @property
    def inside(self) -> bool:
        return self.state.value == 1


class ZoneWatch:
    """Presence of one stream's tracks in its zones, and the occupancy counts.

    Args:
        zones: The stream's zones.
        inertia: Observations in a row needed to enter or leave.
    """

    def __init__(self, zones: Sequence[ZoneConfig], inertia: int) -> None:
        self.zones = list(zones)
        self.inertia = inertia
        self._geometry = PixelGeometry([(zone.polygon, zone.units) for zone in zones])
        self._presence: dict[tuple[int, str], _Presence] = {}
        # Labels once seen in a zone stay listed (at 0 when gone), so a client sees the count drop.
        self._occupancy: dict[str, dict[str, int]] = {zone.name: {} for zone in zones}

    def observe(self, t: float, observed: Sequence[tuple[Track, float]], width: int,
                height: int) -> list[Transition]:
        """One frame's detected tracks (with the score of their detection on it) at time ``t``."""
        if not self.zones or not observed:
            return []
        points = np.array([[(track.box[0] + track.box[2]) / 2, track.box[3]] for track, _ in observed])
        transitions: list[Transition] = []
        for zone, polygon in zip(self.zones, self._geometry.for_size(width, height), strict=True):
            inside = inside_polygon(points, polygon)
            for (track, score), is_inside in zip(observed, inside.tolist(), strict=True):
                if zone.labels is not None and track.label not in zone.labels:
                    continue
                if zone.min_score is not None and score < zone.min_score:
                    continue
                transitions.extend(self._step(zone, track, bool(is_inside), t))
        return transitions

    def _step(self, zone: ZoneConfig, track: Track, is_inside: bool, t: float) -> list[Transition]:
        key = (track.track_id, zone.name)
        presence = self._presence.get(key)
        if presence is None:
            presence = self._presence[key] = _Presence(Hysteresis(self.inertia, value=0))
        if presence.state.observe(int(is_inside), t):
            if presence.inside:
                presence.stay_since = presence.state.candidate_since
                presence.label, presence.loitered = track.label, False
                self._count(zone.name, presence.label, +1)
                return [Transition("zone.enter", track, zone=zone.name)]
            self._count(zone.name, presence.label, -1)
            duration = presence.state.candidate_since - presence.stay_since
            return [Transition("zone.leave", track, zone=zone.name, duration_s=duration)]
        stayed = t - presence.stay_since
        if presence.inside and is_inside and not presence.loitered and zone.loiter_s is not None \
                and stayed >= zone.loiter_s:
            presence.loitered = True
            return [Transition("zone.loiter", track, zone=zone.name, duration_s=stayed)]
        return []

    def end(self, track: Track) -> list[Transition]:
        """``track`` ended: it leaves the zones it is in (stay ending at its last detection)."""
        transitions = []
        for zone in self.zones:
            presence = self._presence.pop((track.track_id, zone.name), None)
            if presence is None or not presence.inside:
                continue
            pending_leave = presence.state.candidate == 0
            until = presence.state.candidate_since if pending_leave else track.last_t
            self._count(zone.name, presence.label, -1)
            transitions.append(Transition("zone.leave", track, zone=zone.name,
                                          duration_s=until - presence.stay_since))
        return transitions

    def _count(self, zone: str, label: str, change: int) -> None:
        labels = self._occupancy[zone]
        labels[label] = labels.get(label, 0) + change

    def occupancy(self) -> dict[str, dict[str, int]]:
        """Per zone, per label, the tracks inside now (a copy)."""
        return {zone: dict(labels) for zone, labels in self._occupancy.items()}
