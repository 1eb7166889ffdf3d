"""What the MQTT sink publishes where: topic levels, counts and Home Assistant discovery (no broker)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_detect.notify.mqtt_topics import (
    StreamTopology,
    Topics,
    clashes,
    discovery_payloads,
    line_counts,
    segment,
    zone_counts,
)

from .mosquitto import counts_message, event_message

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "stream_detect" / "schema" / "messages.schema.json")
                    .read_text())
TOPICS = Topics("stream-detect")
DISCOVERY_TOPIC = re.compile(r"homeassistant/(sensor|binary_sensor|camera)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config")


def test_the_messages_these_tests_give_the_sink_follow_the_published_schema() -> None:
    for message in (event_message(1, "object.start"), event_message(2, "zone.enter", zone="porch"),
                    event_message(3, "line.cross", line="gate", direction="in"), event_message(4, "object.end"),
                    counts_message("porch", {"porch": {"person": 1}}, {"gate": {"in": 1, "out": 0}})):
        jsonschema.validate(message, SCHEMA)


@given(st.text(max_size=20), st.text(max_size=20))
def test_a_segment_is_one_topic_level_without_wildcards_and_names_never_share_one(first: str, second: str) -> None:
    for name in (first, second):
        assert not set(segment(name)) & set("/+#\x00")
    assert (segment(first) == segment(second)) == (first == second)


def test_segments_of_awkward_names() -> None:
    assert segment("front door") == "front door"
    assert segment("a/b") == "a%2Fb"
    assert segment("a%2Fb") == "a%252Fb"
    assert segment("#+") == "%23%2B"
    assert TOPICS.zone("cam", "drive/way", "person+") == "stream-detect/cam/drive%2Fway/person%2B"


def test_counts_messages_become_topics_with_integer_values() -> None:
    message = counts_message("cam", {"porch": {"person": 2, "car": 0}}, {"gate": {"in": 3, "out": 1}})
    assert zone_counts(message, TOPICS) == {"stream-detect/cam/porch/person": 2, "stream-detect/cam/porch/car": 0}
    assert line_counts(message, TOPICS) == {"stream-detect/cam/gate/in": 3, "stream-detect/cam/gate/out": 1}


def topology(stream: str = "cam") -> StreamTopology:
    return StreamTopology(stream, zones={"porch": ("person", "car"), "drive/way": ("car",)}, lines=("gate",),
                          labels=("person",))


def test_discovery_announces_one_device_with_an_entity_per_count_and_a_camera() -> None:
    payloads = {topic: json.loads(body) for topic, body in
                discovery_payloads(topology(), TOPICS, "homeassistant", "1.2.3").items()}
    # porch: 2 labels, drive/way: 1, the whole frame: 1, each a sensor and a binary sensor; gate in/out; camera.
    assert len(payloads) == (2 + 1 + 1) * 2 + 2 + 1
    assert all(DISCOVERY_TOPIC.fullmatch(topic) for topic in payloads), list(payloads)
    kinds = [topic.split("/")[1] for topic in payloads]
    assert kinds.count("sensor") == 6 and kinds.count("binary_sensor") == 4 and kinds.count("camera") == 1
    ids = [entity["unique_id"] for entity in payloads.values()]
    assert len(set(ids)) == len(ids)
    devices = {json.dumps(entity["device"], sort_keys=True) for entity in payloads.values()}
    assert len(devices) == 1 and json.loads(devices.pop())["sw_version"] == "1.2.3"
    for topic, entity in payloads.items():
        assert entity["availability_topic"] == "stream-detect/available"
        assert topic.split("/")[3] == entity["unique_id"]
        state = entity.get("state_topic", entity.get("topic"))
        assert state is not None and state.startswith("stream-detect/cam/")
    states = {entity["name"]: entity.get("state_topic", entity.get("topic")) for entity in payloads.values()}
    assert states["car drive/way"] == "stream-detect/cam/drive%2Fway/car"
    assert states["person in view occupancy"] == "stream-detect/cam/all/person"
    assert states["gate in"] == "stream-detect/cam/gate/in"
    assert states["snapshot"] == "stream-detect/cam/snapshot"
    occupancy = [e for e in payloads.values() if e.get("device_class") == "occupancy"]
    assert len(occupancy) == 4 and all("value_template" in e for e in occupancy)


@pytest.mark.parametrize("names", [("a/b", "a_b"), ("a.b", "a-b"), ("Porch", "porch")])
def test_unique_ids_stay_apart_when_names_only_differ_in_what_ids_cannot_spell(names: tuple[str, str]) -> None:
    ids: list[str] = []
    for stream in names:
        ids += [json.loads(body)["unique_id"] for body in
                discovery_payloads(topology(stream), TOPICS, "homeassistant", "1").values()]
    assert len(set(ids)) == len(ids) == 22


def test_two_prefixes_on_one_broker_announce_different_ids() -> None:
    first = {json.loads(b)["unique_id"] for b in discovery_payloads(topology(), TOPICS, "homeassistant", "1").values()}
    second = {json.loads(b)["unique_id"] for b in
              discovery_payloads(topology(), Topics("garage"), "homeassistant", "1").values()}
    assert not first & second


def test_a_zone_called_all_or_a_zone_named_like_a_line_is_found_as_a_clash() -> None:
    assert clashes(topology(), TOPICS) == []
    clashing = StreamTopology("cam", zones={"all": ("person",), "gate": ("in",)}, lines=("gate",),
                              labels=("person",))
    assert clashes(clashing, TOPICS) == ["stream-detect/cam/all/person", "stream-detect/cam/gate/in"]


def test_a_topology_cannot_be_changed_after_it_is_made() -> None:
    zones = {"porch": ["person"]}
    frozen = StreamTopology("cam", zones=zones)  # type: ignore[arg-type]  # a list given where a tuple is meant
    zones["porch"].append("car")
    assert frozen.zones["porch"] == ("person",)
    with pytest.raises(TypeError):
        frozen.zones["yard"] = ("dog",)  # type: ignore[index]
