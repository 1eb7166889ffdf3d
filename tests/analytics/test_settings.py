"""The analytics keys of a source: the issue's YAML as written, and one clear message per mistake."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ConfigDict, ValidationError

from stream_detect.analytics.settings import AnalyticsFields, LabelFilter, filter_for, tracking_enabled

ISSUE_EXAMPLE = """
id: porch-cam
zones:
  - name: porch
    polygon: [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]
    labels: [person]   # optional
    min_score: 0.6     # optional
    loiter_s: 30       # optional: zone.loiter when a track stays this long
lines:
  - name: gate
    points: [[0.5, 0], [0.5, 1]]   # A -> B
    labels: [person, car]
masks:
  - polygon: [[0, 0], [0.2, 0], [0.2, 0.3]]
filters:
  "*": {min_area: 0.001}
  person: {min_score: 0.7}
tracker: {lost_s: 5, inertia: 4}
"""


class Source(AnalyticsFields):
    """What a source model looks like once it inherits the analytics fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str


def test_the_issue_example_validates_on_a_source_model() -> None:
    source = Source.model_validate(yaml.safe_load(ISSUE_EXAMPLE))
    assert source.zones[0].name == "porch" and source.zones[0].labels == ("person",)
    assert source.zones[0].loiter_s == 30 and source.zones[0].min_score == 0.6
    assert source.lines[0].points == ((0.5, 0.0), (0.5, 1.0))
    assert source.tracker.lost_s == 5 and source.tracker.inertia == 4
    assert source.tracker.minimum_iou_threshold == 0.3  # the default the field notes measured
    assert tracking_enabled(source)


ZONE = {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}
LINE = {"name": "l", "points": [[0, 0], [1, 1]]}


@pytest.mark.parametrize(("fields", "message"), [
    ({"zones": [{**ZONE, "polygon": [[0, 0], [1, 1]]}]}, "at least 3 points, got 2"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [1.5, 0], [1, 1]]}]}, "point [1.5, 0] is outside [0, 1]"),
    ({"zones": [{**ZONE, "units": "px", "polygon": [[0, 0], [-3, 0], [1, 1]]}]}, "point [-3, 0] has a negative"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]}, "has no area"),
    ({"zones": [ZONE, ZONE]}, "duplicate zone name 'z'"),
    ({"lines": [LINE, LINE]}, "duplicate line name 'l'"),
    ({"lines": [{**LINE, "points": [[0.2, 0.3], [0.2, 0.3]]}]}, "A and B are the same point [0.2, 0.3]"),
    ({"lines": [{**LINE, "points": [[0, 0], [1, 1], [0, 1]]}]}, "at most 2 items"),
    ({"zones": [{**ZONE, "name": "bad name"}]}, "zone name 'bad name'"),
    ({"zones": [{**ZONE, "colour": "red"}]}, "Extra inputs are not permitted"),
    ({"zones": [{**ZONE, "labels": []}]}, "labels is empty"),
    ({"zones": [{**ZONE, "min_score": 1.5}]}, "less than or equal to 1"),
    ({"masks": [{"polygon": [[0, 0], [2, 0], [0, 1]]}]}, "point [2, 0] is outside"),
    ({"filters": {"car": {"min_area": 0.5, "max_area": 0.1}}}, "min_area 0.5 is larger than max_area 0.1"),
    ({"tracker": {"lost_s": 0}}, "greater than 0"),
    ({"tracker": {"inertia": 0}}, "greater than or equal to 1"),
])
def test_a_mistake_is_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        AnalyticsFields.model_validate(fields)
    assert message in str(raised.value)


def test_pixel_units_accept_values_above_one() -> None:
    fields = AnalyticsFields.model_validate({"zones": [{**ZONE, "units": "px", "polygon": [[0, 0], [640, 0],
                                                                                              [640, 360]]}]})
    assert fields.zones[0].polygon[1] == (640.0, 0.0)


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, False),
    ({"zones": [ZONE]}, True),
    ({"lines": [LINE]}, True),
    ({"tracking": True}, True),
    ({"tracking": False, "zones": [ZONE]}, False),
    ({"masks": [{"polygon": [[0, 0], [1, 0], [1, 1]]}]}, False),
])
def test_tracking_is_on_with_zones_or_lines_unless_set(fields: dict[str, Any], expected: bool) -> None:
    assert tracking_enabled(AnalyticsFields.model_validate(fields)) is expected


def test_a_labels_own_limits_win_field_by_field_over_the_star() -> None:
    filters = {"*": LabelFilter(min_score=0.5, min_area=0.01), "car": LabelFilter(min_score=0.8)}
    assert filter_for(filters, "car") == LabelFilter(min_score=0.8, min_area=0.01)
    assert filter_for(filters, "dog") == filters["*"]
    assert filter_for({"car": LabelFilter(max_area=0.5)}, "dog") is None


@pytest.mark.parametrize("entry, named", [
    ({"zones": [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}],
      "lines": [{"name": "gate", "points": [[0.5, 0], [0.5, 1]]}]}, "zone and line both named 'gate'"),
    ({"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "'all' stands for the whole frame"),
])
def test_zones_and_lines_share_one_namespace_without_all(entry: dict, named: str) -> None:
    from stream_detect.config import ConfigError, parse_source

    with pytest.raises(ConfigError, match=named):
        parse_source({"id": "cam", "kind": "synthetic", **entry}, "test")
