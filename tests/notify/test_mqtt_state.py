"""The MQTT sink's retained state as a table: what each happening changes (no broker)."""

from __future__ import annotations

import pytest

from stream_detect.notify.mqtt_state import Publish, RetainedState
from stream_detect.notify.mqtt_topics import StreamTopology, Topics

from .mosquitto import counts_message, event_message

P = "sd"
PORCH = StreamTopology("porch", zones={"steps": ("person", "dog")}, lines=("gate",), labels=("person",))


def state(discovery: bool = False) -> RetainedState:
    return RetainedState(Topics(P), "homeassistant" if discovery else None, "1")


def counts_only(changed: list[Publish]) -> dict[str, bytes]:
    return {topic.removeprefix(f"{P}/"): payload for topic, payload in changed if topic.startswith(f"{P}/")}


def test_announcing_sets_every_count_to_0_once_and_discovery_first() -> None:
    retained = state(discovery=True)
    changed = retained.announce(PORCH)
    assert counts_only(changed) == {"porch/steps/person": b"0", "porch/steps/dog": b"0", "porch/all/person": b"0",
                                    "porch/gate/in": b"0", "porch/gate/out": b"0"}
    discovery = [topic for topic, _ in changed if topic.startswith("homeassistant/")]
    assert len(discovery) == 9
    assert [topic for topic, _ in retained.everything()][:9] == discovery
    assert retained.announce(PORCH) == [] and retained.is_announced("porch")


def test_without_discovery_only_the_counts() -> None:
    assert all(topic.startswith(f"{P}/") for topic, _ in state().announce(PORCH))


@pytest.mark.parametrize(("message", "expected"), [
    (counts_message("porch", {"steps": {"person": 2}}), {"porch/steps/person": b"2"}),
    (counts_message("porch", {"steps": {"person": 2, "dog": 1}}),
     {"porch/steps/person": b"2", "porch/steps/dog": b"1"}),
    (counts_message("porch", {"steps": {"person": 0}}), {}),
    (counts_message("porch", {}, {"gate": {"in": 3, "out": 0}}), {"porch/gate/in": b"3"}),
    (counts_message("porch", {"yard": {"cat": 1}}), {"porch/yard/cat": b"1"}),  # a zone the topology lacks
])
def test_a_counts_message_changes_what_differs(message: dict[str, object], expected: dict[str, bytes]) -> None:
    retained = state()
    retained.announce(PORCH)
    assert counts_only(retained.counts(message)) == expected


def test_a_zone_label_the_counts_no_longer_name_goes_back_to_0() -> None:
    retained = state()
    retained.announce(PORCH)
    retained.counts(counts_message("porch", {"steps": {"person": 2, "dog": 1}}))
    assert counts_only(retained.counts(counts_message("porch", {"steps": {"dog": 1}}))) == {"porch/steps/person": b"0"}
    assert counts_only(retained.counts(counts_message("porch", {}))) == {"porch/steps/dog": b"0"}


def test_the_whole_frame_counts_tracks_from_start_to_end() -> None:
    retained = state()
    steps = [(event_message(1, "object.start", track_id=1), b"1"), (event_message(2, "object.start", track_id=2), b"2"),
             (event_message(3, "object.start", track_id=2), None),  # the same track again changes nothing
             (event_message(4, "zone.enter", zone="steps"), None), (event_message(5, "object.end", track_id=1), b"1"),
             (event_message(6, "object.end", track_id=2), b"0"), (event_message(7, "object.end", track_id=9), None)]
    for event, value in steps:
        assert counts_only(retained.event(event)) == ({} if value is None else {"porch/all/person": value}), event


def test_a_stream_that_ends_has_nothing_in_its_zones_and_frame_but_keeps_its_crossings() -> None:
    retained = state()
    retained.announce(PORCH)
    retained.event(event_message(1, "object.start", track_id=1))
    retained.counts(counts_message("porch", {"steps": {"person": 1}}, {"gate": {"in": 4, "out": 1}}))
    assert counts_only(retained.stream_over("porch")) == {"porch/all/person": b"0", "porch/steps/person": b"0"}
    assert retained.payload(f"{P}/porch/gate/in") == b"4"
    # Its tracks went with it: a new start counts from 1.
    assert counts_only(retained.event(event_message(2, "object.start", track_id=5))) == {"porch/all/person": b"1"}


def test_forgetting_empties_every_topic_until_the_stream_is_announced_again() -> None:
    retained = state(discovery=True)
    retained.announce(PORCH)
    retained.snapshot("porch", b"\xff\xd8jpeg")
    retained.counts(counts_message("porch", {"steps": {"person": 1}}))
    forgotten = retained.forget("porch")
    assert len(forgotten) == 9 + 5 + 1 and all(payload == b"" for _, payload in forgotten)
    assert retained.forget("porch") == [] and not retained.is_announced("porch")
    assert all(payload == b"" for _, payload in retained.everything())  # a reconnect clears them again
    again = retained.announce(PORCH)
    assert counts_only(again)["porch/steps/person"] == b"0" and len(again) == 9 + 5
