"""Per-source analytics settings: tracking, zones, lines, masks and per-label filters.

:class:`AnalyticsFields` holds the keys a source entry gains; every source
model inherits it, so a source in YAML reads::

    zones:
      - name: porch
        polygon: [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]
        labels: [person]
        min_score: 0.6
        loiter_s: 30
    lines:
      - name: gate
        points: [[0.5, 0], [0.5, 1]]   # A -> B
    masks:
      - polygon: [[0, 0], [0.2, 0], [0.2, 0.3], [0, 0.3]]
    filters:
      "*": {min_area: 0.001}
      person: {min_score: 0.7}

Coordinates are fractions of the frame's width and height (they survive a
resolution change) unless ``units: px``. Validation is pure (no I/O) and
its messages name the bad value.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ANY_LABEL = "*"
WHOLE_FRAME = "all"  # the name of the whole frame in counts and MQTT topics
Units = Literal["fraction", "px"]
Point = tuple[float, float]


class _Strict(BaseModel):
    # Same rules as stream_detect.config's models (unknown keys are errors, values frozen).
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(name: str, what: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"{what} name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name


def _check_points(points: tuple[Point, ...], units: Units) -> None:
    for x, y in points:
        if units == "fraction" and not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"point [{x:g}, {y:g}] is outside [0, 1] (fractions of the frame; "
                             "write 'units: px' for pixels)")
        if units == "px" and (x < 0 or y < 0):
            raise ValueError(f"point [{x:g}, {y:g}] has a negative pixel coordinate")


def _check_polygon(polygon: tuple[Point, ...], units: Units) -> None:
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
    _check_points(polygon, units)
    twice_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True))
    if twice_area == 0:
        raise ValueError(f"polygon {[list(p) for p in polygon]} has no area (its points are on one line)")


def _check_labels(labels: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if labels is not None:
        if not labels:
            raise ValueError("labels is empty; leave it out to accept every label")
        for label in labels:
            if not label.strip():
                raise ValueError(f"label {label!r} is empty")
    return labels


class ZoneConfig(_Strict):
    """A polygon; an object is in it when its box's bottom centre is."""

    name: str = Field(description="Zone name used in events, counts and metrics.")
    polygon: tuple[Point, ...] = Field(description="Corners [[x, y], ...], at least 3.")
    labels: tuple[str, ...] | None = Field(None, description="Only these labels count (default: every label).")
    min_score: float | None = Field(None, ge=0, le=1, description="Detections scoring less do not count as inside.")
    loiter_s: float | None = Field(None, gt=0, le=86_400, description="zone.loiter when a track stays this long.")
    units: Units = Field("fraction", description="fraction of the frame (default) or px.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, "zone")

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _check_labels(value)

    @model_validator(mode="after")
    def _check_geometry(self) -> ZoneConfig:
        try:
            _check_polygon(self.polygon, self.units)
        except ValueError as error:
            raise ValueError(f"zone {self.name!r}: {error}") from None
        return self


class LineConfig(_Strict):
    """A segment from A to B; ``in`` is A->B turned 90 degrees counter-clockwise on screen."""

    name: str = Field(description="Line name used in events, counts and metrics.")
    points: tuple[Point, Point] = Field(description="[[xA, yA], [xB, yB]]: the segment, A -> B.")
    labels: tuple[str, ...] | None = Field(None, description="Only these labels count (default: every label).")
    min_score: float | None = Field(None, ge=0, le=1, description="Detections scoring less are not counted.")
    units: Units = Field("fraction", description="fraction of the frame (default) or px.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, "line")

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _check_labels(value)

    @model_validator(mode="after")
    def _check_geometry(self) -> LineConfig:
        try:
            _check_points(self.points, self.units)
        except ValueError as error:
            raise ValueError(f"line {self.name!r}: {error}") from None
        if self.points[0] == self.points[1]:
            raise ValueError(f"line {self.name!r}: A and B are the same point {list(self.points[0])}")
        return self


class MaskConfig(_Strict):
    """A polygon where nothing is detected: detections whose bottom centre lies inside are dropped."""

    name: str | None = Field(None, description="For messages only.")
    polygon: tuple[Point, ...] = Field(description="Corners [[x, y], ...], at least 3.")
    units: Units = Field("fraction", description="fraction of the frame (default) or px.")

    @model_validator(mode="after")
    def _check_geometry(self) -> MaskConfig:
        try:
            _check_polygon(self.polygon, self.units)
        except ValueError as error:
            raise ValueError(f"mask {self.name!r}: {error}" if self.name else f"mask: {error}") from None
        return self


class LabelFilter(_Strict):
    """Limits for one label's detections; areas are fractions of the frame's area."""

    min_score: float | None = Field(None, ge=0, le=1, description="Drop detections scoring less.")
    min_area: float | None = Field(None, ge=0, le=1, description="Drop boxes smaller than this part of the frame.")
    max_area: float | None = Field(None, gt=0, le=1, description="Drop boxes larger than this part of the frame.")

    @model_validator(mode="after")
    def _check_range(self) -> LabelFilter:
        if self.min_area is not None and self.max_area is not None and self.min_area > self.max_area:
            raise ValueError(f"min_area {self.min_area:g} is larger than max_area {self.max_area:g}")
        return self


class TrackerConfig(_Strict):
    """ByteTrack's settings and the timing of tracks and zone decisions (durations in seconds of pts)."""

    activation_threshold: float = Field(
        0.6, ge=0, le=1, description="A new track needs a detection scoring at least this (and high confidence).")
    high_confidence_threshold: float = Field(
        0.6, ge=0, le=1, description="Detections at or above are matched first and may start tracks; those "
                                     "below only continue existing tracks (ByteTrack's second stage).")
    minimum_iou_threshold: float = Field(0.3, gt=0, le=1, description="Least overlap to continue a track.")
    minimum_consecutive_frames: int = Field(
        2, ge=1, le=100, description="Detections in a row before a track is confirmed and gets an id.")
    lost_s: float = Field(2.0, gt=0, le=3600, description="A track unseen this long (by pts) ends.")
    inertia: int = Field(
        3, ge=1, le=100, description="Processed frames in a row on the new side before entering or leaving "
                                     "a zone, or crossing a line, is decided.")
    max_prediction_s: float = Field(
        1.0, ge=0, le=10, description="Overlays move a box at most this far ahead of its last detection.")
    duplicate_iou: float | None = Field(
        0.7, gt=0, le=1, description="Before tracking, drop a detection overlapping a stronger one of its label "
                                     "by this IoU (a duplicate box); null keeps them.")


class AnalyticsFields(_Strict):
    """The analytics keys of a source entry (every source model inherits them)."""

    tracking: bool | None = Field(None, description="Track objects (default: on when there are zones or lines).")
    tracker: TrackerConfig = Field(TrackerConfig(), description="Tracker settings.")
    zones: tuple[ZoneConfig, ...] = Field((), description="Zones: enter, leave and loiter events, occupancy.")
    lines: tuple[LineConfig, ...] = Field((), description="Lines: crossing events and counts per direction.")
    masks: tuple[MaskConfig, ...] = Field((), description="Detections whose bottom centre is inside are dropped.")
    filters: dict[str, LabelFilter] = Field(
        default_factory=dict, description="Per label ('*': every label) limits on score and box area.")

    @field_validator("zones", "lines")
    @classmethod
    def _unique_names(cls, items: tuple[ZoneConfig | LineConfig, ...]) -> tuple[ZoneConfig | LineConfig, ...]:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                what = "zone" if isinstance(item, ZoneConfig) else "line"
                raise ValueError(f"duplicate {what} name {item.name!r}")
            seen.add(item.name)
        return items

    @model_validator(mode="after")
    def _distinct_regions(self) -> AnalyticsFields:
        # Zones and lines share one namespace in counts, metrics and MQTT topics (<stream>/<name>/...),
        # where 'all' stands for the whole frame.
        zones = {zone.name for zone in self.zones}
        for line in self.lines:
            if line.name in zones:
                raise ValueError(f"zone and line both named {line.name!r}: give them different names")
        for name in (*zones, *(line.name for line in self.lines)):
            if name == WHOLE_FRAME:
                raise ValueError(f"{name!r} stands for the whole frame; give this zone or line another name")
        return self

    @field_validator("filters")
    @classmethod
    def _filter_labels(cls, filters: dict[str, LabelFilter]) -> dict[str, LabelFilter]:
        for label in filters:
            if not label.strip():
                raise ValueError(f"filter label {label!r} is empty (use '*' for every label)")
        return filters


def tracking_enabled(fields: AnalyticsFields) -> bool:
    """Whether the source tracks objects: ``tracking`` when set, else whether it has zones or lines."""
    if fields.tracking is not None:
        return fields.tracking
    return bool(fields.zones or fields.lines)


def filter_for(filters: dict[str, LabelFilter], label: str) -> LabelFilter | None:
    """The limits for ``label``: each of its own values, else the ``'*'`` entry's; None when neither exists."""
    own, common = filters.get(label), filters.get(ANY_LABEL)
    if own is None or common is None:
        return own or common
    return LabelFilter.model_construct(  # each value was checked; the mix needs no min <= max check
        min_score=own.min_score if own.min_score is not None else common.min_score,
        min_area=own.min_area if own.min_area is not None else common.min_area,
        max_area=own.max_area if own.max_area is not None else common.max_area,
    )
