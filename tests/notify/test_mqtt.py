"""The MQTT sink against a real mosquitto, read by a real paho subscriber."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from stream_detect.errors import ConfigError
from stream_detect.notify.mqtt import MqttSink
from stream_detect.notify.mqtt_config import MqttConfig
from stream_detect.notify.mqtt_topics import StreamTopology
from stream_detect.sinks import Dispatcher, EventSink, Notice
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange

from .mosquitto import (
    counts_message,
    event_message,
    free_port,
    no_thread_exceptions,
    running_broker,
    subscriber,
    wait_until,
)

PREFIX = "stream-detect"
PASSWORD = "s3cret-broker-pw-7731"
PUBLIC_URL = "https://cams.example.org"


@pytest.fixture(autouse=True)
def _threads_raise_nothing() -> Iterator[None]:
    with no_thread_exceptions():
        yield


def jpeg_of(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG")
    return out.getvalue()


SNAPSHOT = jpeg_of((200, 30, 30))


def porch() -> StreamTopology:
    return StreamTopology("porch", zones={"steps": ("person", "dog")}, lines=("gate",), labels=("person",))


def config(port: int, **more: object) -> MqttConfig:
    return MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "client_id": "sink-under-test",
                                      "reconnect_max_s": 1, **more})


def notice(message: dict[str, object]) -> Notice:
    return Notice(str(message["stream"]), message)


def discovery_of(received: list[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(payload) for topic, payload in received if topic.startswith("homeassistant/")
            and payload}


@pytest.mark.timeout(60)
def test_events_counts_snapshots_and_availability_reach_a_subscriber() -> None:
    with running_broker() as broker, subscriber(broker.port, f"{PREFIX}/#") as live:
        sink = MqttSink(config(broker.port), topology=lambda: [porch()], public_url=PUBLIC_URL,
                        snapshot_of=lambda event: SNAPSHOT if event["kind"] == "object.end" else None)
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            # Counts start at 0, not unknown, for everything the topology names.
            for topic in ("porch/steps/person", "porch/steps/dog", "porch/all/person", "porch/gate/in"):
                live.wait_for(f"{PREFIX}/{topic}", b"0")
            events = [event_message(1, "object.start"), event_message(2, "zone.enter", zone="steps"),
                      event_message(3, "line.cross", line="gate", direction="in"),
                      event_message(4, "zone.leave", zone="steps"), event_message(5, "object.end")]
            sink.on_event(notice(events[0]))
            sink.on_event(notice(events[1]))
            sink.on_event(notice(counts_message("porch", {"steps": {"person": 1}})))
            live.wait_for(f"{PREFIX}/porch/steps/person", b"1")
            live.wait_for(f"{PREFIX}/porch/all/person", b"1")
            sink.on_event(notice(events[2]))
            sink.on_event(notice(counts_message("porch", {"steps": {"person": 1}}, {"gate": {"in": 1, "out": 0}})))
            sink.on_event(notice(events[3]))
            # The zone empties: the tracker leaves it out of the counts, and the 0 is published.
            sink.on_event(notice(counts_message("porch", {}, {"gate": {"in": 1, "out": 0}})))
            sink.on_event(notice(events[4]))
            live.wait_for(f"{PREFIX}/porch/steps/person", b"0")
            live.wait_for(f"{PREFIX}/porch/all/person", b"0")
            wait_until(lambda: len(live.received(f"{PREFIX}/events")) == len(events), 10, "every event")

            published = live.received(f"{PREFIX}/events")
            assert [json.loads(m.payload)["id"] for m in published] == [e["id"] for e in events]
            assert all(m.qos == 1 and not m.retain for m in published)
            first = json.loads(published[0].payload)
            assert first == {**events[0], "snapshot_url": f"{PUBLIC_URL}/events/porch-000001/snapshot.jpg",
                             "clip_url": f"{PUBLIC_URL}/events/porch-000001/clip.mp4"}
            assert live.payloads(f"{PREFIX}/porch/steps/person") == [b"0", b"1", b"0"]  # published on change only
            assert live.last(f"{PREFIX}/porch/gate/in") == b"1" and live.last(f"{PREFIX}/porch/gate/out") == b"0"
            live.wait_for(f"{PREFIX}/porch/snapshot", SNAPSHOT)
            wait_until(lambda: sink.stats.published == len(events), 10, "the broker's acknowledgements")
            assert (sink.stats.pending, sink.stats.dropped, sink.stats.connected) == (0, 0, True)

            # Retained: a subscriber that comes later still reads every count and the snapshot.
            with subscriber(broker.port, f"{PREFIX}/#", client_id="later") as later:
                later.wait_for(f"{PREFIX}/porch/gate/in", b"1")
                retained = {m.topic: m.payload for m in later.received() if m.retain}
                assert retained[f"{PREFIX}/available"] == b"online"
                assert retained[f"{PREFIX}/porch/steps/person"] == b"0"
                assert retained[f"{PREFIX}/porch/all/person"] == b"0"
                image = Image.open(io.BytesIO(retained[f"{PREFIX}/porch/snapshot"]))
                red, green, blue = image.convert("RGB").getpixel((32, 24))  # type: ignore[misc]
                assert image.format == "JPEG" and red > 150 and green < 80 and blue < 80
                assert f"{PREFIX}/events" not in retained
        finally:
            sink.close()
        with subscriber(broker.port, f"{PREFIX}/available", client_id="after-close") as after:
            after.wait_for(f"{PREFIX}/available", b"offline")
        sink.close()  # idempotent


@pytest.mark.timeout(60)
def test_discovery_is_retained_valid_and_follows_streams_added_and_removed() -> None:
    streams = [porch()]
    with running_broker() as broker:
        sink = MqttSink(config(broker.port), topology=lambda: list(streams))
        try:
            with subscriber(broker.port, "homeassistant/#", client_id="ha") as ha:
                wait_until(lambda: len(discovery_of([(m.topic, m.payload) for m in ha.received()])) == 9, 10,
                           "porch's 9 entities")
                announced = discovery_of([(m.topic, m.payload) for m in ha.received()])
                ids = [entity["unique_id"] for entity in announced.values()]
                assert len(set(ids)) == len(ids)
                for entity in announced.values():
                    assert entity["availability_topic"] == f"{PREFIX}/available"
                    assert {"unique_id", "device", "name"} <= entity.keys()
                    assert ("state_topic" in entity) != ("topic" in entity)  # a camera has "topic"

                # A stream added at run time is announced when its first state change arrives.
                streams.append(StreamTopology("yard", zones={"lawn": ("dog",)}))
                sink.on_status(StateChange("yard", SourceState.CONNECTING, time.time()))
                wait_until(lambda: len(discovery_of([(m.topic, m.payload) for m in ha.received()])) == 9 + 3, 10,
                           "yard's 3 entities")
                yard = {t for t, e in discovery_of([(m.topic, m.payload) for m in ha.received()]).items()
                        if e["device"]["name"] == "yard"}
                assert len(yard) == 3

            # A later subscriber (Home Assistant restarting) gets every announcement again from the broker.
            with subscriber(broker.port, "homeassistant/#", f"{PREFIX}/#", client_id="ha-again") as again:
                wait_until(lambda: len(discovery_of([(m.topic, m.payload) for m in again.received()])) == 12, 10,
                           "all 12 retained announcements")
                again.wait_for(f"{PREFIX}/yard/lawn/dog", b"0")
                assert all(m.retain for m in again.received() if m.topic.startswith("homeassistant/"))

            streams.pop()
            sink.forget("yard")
            with subscriber(broker.port, "homeassistant/#", f"{PREFIX}/#", client_id="ha-third") as third:
                wait_until(lambda: len(discovery_of([(m.topic, m.payload) for m in third.received()])) == 9, 10,
                           "porch's 9 retained announcements")
                time.sleep(0.3)
                left = {m.topic for m in third.received() if m.payload}
                assert not [t for t in left if "yard" in t or t in yard], left
        finally:
            sink.close()


@pytest.mark.timeout(60)
def test_a_stream_that_ends_counts_nothing_in_its_zones_and_frame() -> None:
    with running_broker() as broker, subscriber(broker.port, f"{PREFIX}/#") as live:
        sink = MqttSink(config(broker.port), topology=lambda: [porch()])
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            sink.on_event(notice(event_message(1, "object.start", track_id=7)))
            sink.on_event(notice(event_message(2, "object.start", track_id=8)))
            sink.on_event(notice(counts_message("porch", {"steps": {"person": 2}}, {"gate": {"in": 4, "out": 2}})))
            live.wait_for(f"{PREFIX}/porch/all/person", b"2")
            live.wait_for(f"{PREFIX}/porch/steps/person", b"2")
            sink.on_status(StateChange("porch", SourceState.FAILED, time.time(), "camera gone"))
            live.wait_for(f"{PREFIX}/porch/all/person", b"0")
            live.wait_for(f"{PREFIX}/porch/steps/person", b"0")
            assert live.last(f"{PREFIX}/porch/gate/in") == b"4"  # a running count stays
        finally:
            sink.close()


@pytest.mark.timeout(60)
def test_a_broker_down_at_start_blocks_nothing_and_gets_the_events_when_it_comes(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stream_detect")
    with running_broker() as broker:
        broker.stop()
        started = time.monotonic()
        sink = MqttSink(config(broker.port), topology=lambda: [porch()])
        try:
            events = [event_message(n, "object.start", track_id=n) for n in range(1, 21)]
            for event in events:
                sink.on_event(notice(event))
            assert time.monotonic() - started < 0.5
            wait_until(lambda: "cannot reach the broker" in caplog.text, 10, "the outage logged")
            assert (sink.stats.connected, sink.stats.pending, sink.stats.dropped) == (False, 20, 0)
            broker.start()
            with subscriber(broker.port, f"{PREFIX}/#") as live:
                wait_until(lambda: sink.stats.published == 20, 15, "the held events acknowledged")
                # They went before this subscriber was there; what it sees is the retained state republished.
                live.wait_for(f"{PREFIX}/porch/all/person", b"20")
                live.wait_for(f"{PREFIX}/available", b"online")
        finally:
            sink.close()
        assert caplog.text.count("cannot reach the broker") == 1  # once per outage, not per attempt


@pytest.mark.timeout(60)
def test_the_password_reaches_the_broker_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_broker(users={"sd": PASSWORD, "watcher": "watcher-pw"}) as broker:
        with subscriber(broker.port, f"{PREFIX}/#", username="watcher", password="watcher-pw") as live:
            good = MqttSink(config(broker.port, username="sd", password=PASSWORD), topology=lambda: [porch()])
            try:
                live.wait_for(f"{PREFIX}/available", b"online")
                good.on_event(notice(event_message(1, "object.start")))
                wait_until(lambda: good.stats.published == 1, 10, "the event acknowledged")
                shown = [repr(good), repr(good.stats), repr(good.config), str(good.config)]
                assert not [text for text in shown if PASSWORD in text]
            finally:
                good.close()
        bad = MqttSink(config(broker.port, username="sd", password=PASSWORD[::-1], client_id="bad"))
        try:
            wait_until(lambda: "refused the connection" in caplog.text, 10, "the refusal logged")
            assert not bad.stats.connected
        finally:
            bad.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PASSWORD not in logged and PASSWORD[::-1] not in logged
    assert "refused the connection: Not authorized" in logged


def test_a_ca_file_that_cannot_be_read_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.ca_file 'missing-ca\.pem': cannot read it"):
        MqttSink(config(free_port(), tls=True, ca_file="missing-ca.pem"))


@pytest.mark.timeout(60)
def test_over_tls_the_broker_is_trusted_through_ca_file_and_refused_without_it(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream_detect")
    with running_broker(tls=True) as broker, subscriber(broker.port, f"{PREFIX}/#") as live:
        assert broker.tls_port is not None
        trusting = MqttSink(config(broker.tls_port, tls=True, ca_file=str(broker.ca_file)))
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            trusting.on_event(notice(event_message(1, "object.start")))
            wait_until(lambda: len(live.received(f"{PREFIX}/events")) == 1, 10, "the event over TLS")
        finally:
            trusting.close()
        live.wait_for(f"{PREFIX}/available", b"offline")
        # The system's CAs do not know the test's: the certificate is refused, and the sink keeps trying.
        doubting = MqttSink(config(broker.tls_port, tls=True, client_id="doubting"))
        try:
            wait_until(lambda: "cannot reach the broker" in caplog.text, 10, "the refusal logged")
            assert not doubting.stats.connected
            assert live.last(f"{PREFIX}/available") == b"offline"
        finally:
            doubting.close()


@pytest.mark.timeout(60)
def test_behind_the_dispatcher_notices_arrive_and_closing_says_offline() -> None:
    with running_broker() as broker, subscriber(broker.port, f"{PREFIX}/#") as live:
        sink: EventSink = MqttSink(config(broker.port), topology=lambda: [porch()])
        dispatcher = Dispatcher()
        dispatcher.add(sink)
        dispatcher.start()
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            dispatcher.publish_status(StateChange("porch", SourceState.RUNNING, time.time()))
            for number in range(1, 11):
                dispatcher.publish_notice(notice(event_message(number, "object.start", track_id=number)))
            dispatcher.publish_notice(notice(counts_message("porch", {"steps": {"person": 3}})))
            live.wait_for(f"{PREFIX}/porch/steps/person", b"3")
            live.wait_for(f"{PREFIX}/porch/all/person", b"10")
            wait_until(lambda: len(live.received(f"{PREFIX}/events")) == 10, 10, "the 10 events")
        finally:
            assert dispatcher.close(10)
        live.wait_for(f"{PREFIX}/available", b"offline")
