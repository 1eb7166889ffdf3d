"""Line crossing per track: once per track and direction, with the zones' inertia, and running counts.

A track's side of a line (of the anchor, the box's bottom centre) is known
once ``inertia`` observations in a row agree, and changes after as many on
the other side. When it changes, the crossing counts if the move from the
last observation on the old side to the first on the new side meets the
line within the segment A-B (walking around its end is no crossing), and if
this track has not yet crossed this line in that direction. ``in`` is A->B
turned 90 degrees counter-clockwise on screen (a line drawn top to bottom:
left to right is ``in``). A detection failing the line's ``labels`` or
``min_score``, or an anchor exactly on the line, is no observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .geometry import PixelGeometry, crosses_segment, side_of_line
from .settings import LineConfig
from .tracking import Track
from .zones import Direction, Hysteresis, Transition

DIRECTIONS = ("in", "out")


@dataclass(slots=True)
class _Side:
    state: Hysteresis
    last_on_side: np.ndarray = field(default_factory=lambda: np.zeros(2))
    first_on_new: np.ndarray = field(default_factory=lambda: np.zeros(2))
    crossed: set[str] = field(default_factory=set)


@dataclass(slots=True)
class LineCount:
    """Crossings of one line so far: per direction, and per label and direction."""

    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)


class LineWatch:
    """Crossings of one stream's lines by its tracks.

    Args:
        lines: The stream's lines.
        inertia: Observations in a row needed on a side.
    """

    def __init__(self, lines: Sequence[LineConfig], inertia: int) -> None:
        self.lines = list(lines)
        self.inertia = inertia
        self._geometry = PixelGeometry([(line.points, line.units) for line in lines])
        self._sides: dict[tuple[int, str], _Side] = {}
        self._counts = {line.name: LineCount() for line in lines}

    def observe(self, t: float, observed: Sequence[tuple[Track, float]], width: int,
                height: int) -> list[Transition]:
        """One frame's detected tracks (with the score of their detection on it) at time ``t``."""
        if not self.lines or not observed:
            return []
        points = np.array([[(track.box[0] + track.box[2]) / 2, track.box[3]] for track, _ in observed])
        transitions: list[Transition] = []
        for line, (a, b) in zip(self.lines, self._geometry.for_size(width, height), strict=True):
            sides = side_of_line(points, a, b)
            for (track, score), point, side in zip(observed, points, sides.tolist(), strict=True):
                if side == 0 or (line.labels is not None and track.label not in line.labels):
                    continue
                if line.min_score is not None and score < line.min_score:
                    continue
                crossing = self._step(line, track, point, 1 if side > 0 else -1, t, a, b)
                if crossing is not None:
                    transitions.append(crossing)
        return transitions

    def _step(self, line: LineConfig, track: Track, point: np.ndarray, side: int, t: float,
              a: np.ndarray, b: np.ndarray) -> Transition | None:
        key = (track.track_id, line.name)
        state = self._sides.get(key)
        if state is None:
            state = self._sides[key] = _Side(Hysteresis(self.inertia))
        before = state.state.value
        if side == before:
            state.last_on_side = point
        elif side != state.state.candidate:
            state.first_on_new = point
        if not state.state.observe(side, t):
            return None
        start, end = state.last_on_side, state.first_on_new
        state.last_on_side = point
        if before is None or not crosses_segment(start, end, a, b):
            return None
        direction: Direction = "in" if side > 0 else "out"
        if direction in state.crossed:
            return None
        state.crossed.add(direction)
        count = self._counts[line.name]
        count.total[direction] += 1
        count.by_label.setdefault(track.label, dict.fromkeys(DIRECTIONS, 0))[direction] += 1
        return Transition("line.cross", track, line=line.name, direction=direction)

    def end(self, track: Track) -> None:
        """Forgets ``track``'s sides."""
        for line in self.lines:
            self._sides.pop((track.track_id, line.name), None)

    def counts(self) -> dict[str, LineCount]:
        """Per line, the crossings so far (copies)."""
        return {name: LineCount(dict(count.total), {label: dict(d) for label, d in count.by_label.items()})
                for name, count in self._counts.items()}
