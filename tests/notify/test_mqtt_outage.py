"""The broker going away: killed and restarted, cut off by the network, or hung; nothing waits, nothing is lost.

The sink reaches the broker through a :class:`~tests.notify.mosquitto.Relay`.
When the broker is killed the relay only keeps the sink from reconnecting
before the test's own subscriber is back on the restarted broker (events
are not retained: a subscriber that came later would never see them).

Outages last 6 s, not the 20 s of the issue: what happens does not depend
on the length past the reconnect wait (1 s doubling up to
``reconnect_max_s``, 1 s here), and a 20 s outage measured the same way
(every event delivered, none dropped) made the suite 40 s longer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from stream_detect.notify.mqtt import MqttSink
from stream_detect.notify.mqtt_config import MqttConfig
from stream_detect.notify.mqtt_topics import StreamTopology
from stream_detect.sinks import Notice

from .mosquitto import (
    Subscriber,
    event_message,
    no_thread_exceptions,
    relay_to,
    running_broker,
    subscriber,
    wait_until,
)

PREFIX = "stream-detect"
OUTAGE_S = 6.0
BROKER_OUTAGE_S = 20.0  # the outage: the broker killed for 20 s
# on_event hands a message to paho's queue; a wait on the network would take a round trip or a timeout.
MAX_ON_EVENT_S = 0.05


@pytest.fixture(autouse=True)
def _threads_raise_nothing() -> Iterator[None]:
    with no_thread_exceptions():
        yield


def sink_through(port: int, **more: object) -> MqttSink:
    config = MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "client_id": "sink-under-test",
                                        "reconnect_max_s": 1, "keepalive_s": 5, **more})
    return MqttSink(config, topology=lambda: [StreamTopology("porch", labels=("person",))])


def send(sink: MqttSink, numbers: range, spread_s: float = 0.0) -> float:
    """Gives the sink an object.start event per number, ``spread_s`` apart; returns the slowest on_event."""
    slowest = 0.0
    for number in numbers:
        event = event_message(number, "object.start", track_id=number)
        started = time.monotonic()
        sink.on_event(Notice("porch", event))
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(spread_s)
    return slowest


def event_ids(listener: Subscriber) -> list[str]:
    return [json.loads(m.payload)["id"] for m in listener.received(f"{PREFIX}/events")]


def ids(numbers: range) -> list[str]:
    return [f"porch-{n:06d}" for n in numbers]


@pytest.mark.timeout(120)
def test_a_broker_killed_and_restarted_gets_every_event_of_the_outage_and_the_retained_state_again() -> None:
    with running_broker() as broker, relay_to(broker.port) as relay:
        sink = sink_through(relay.port)
        try:
            with subscriber(broker.port, f"{PREFIX}/#", client_id="before") as before:
                before.wait_for(f"{PREFIX}/available", b"online")
                send(sink, range(1, 6))
                wait_until(lambda: event_ids(before) == ids(range(1, 6)), 10, "the events before the outage")
                wait_until(lambda: sink.stats.published == 5, 10, "their acknowledgements")

            broker.kill()
            relay.cut()
            wait_until(lambda: not sink.stats.connected, 10, "the sink to notice")
            slowest = send(sink, range(6, 36), spread_s=BROKER_OUTAGE_S / 30)
            assert slowest < MAX_ON_EVENT_S, f"on_event took {slowest:.3f} s with the broker away"
            stats = sink.stats
            assert (stats.connected, stats.pending, stats.dropped) == (False, 30, 0), stats

            broker.start()  # the same port; it has lost every retained message
            with subscriber(broker.port, f"{PREFIX}/#", "homeassistant/#", client_id="after") as after:
                # A broker that died sends no will; restarted, it holds no retained "online" either:
                # until the sink is back, stream-detect is unavailable to Home Assistant (offline).
                assert after.last(f"{PREFIX}/available") is None
                relay.open()
                wait_until(lambda: set(ids(range(6, 36))) <= set(event_ids(after)), 20, "the outage's events")
                after.wait_for(f"{PREFIX}/available", b"online")
                after.wait_for(f"{PREFIX}/porch/all/person", b"35")
                discovery = [m for m in after.received() if m.topic.startswith("homeassistant/")]
                assert len(discovery) == 3, [m.topic for m in discovery]  # count, occupancy, camera
                # In order, and each once (a message in flight at the cut would be sent again, marked dup).
                assert event_ids(after) == ids(range(6, 36))
                send(sink, range(36, 38))
                wait_until(lambda: event_ids(after)[-2:] == ids(range(36, 38)), 10, "events after the outage")
            wait_until(lambda: sink.stats.pending == 0, 10, "every acknowledgement")
            stats = sink.stats
            assert (stats.published, stats.dropped, stats.reconnects, stats.connected) == (37, 0, 1, True)
        finally:
            sink.close()


@pytest.mark.timeout(60)
def test_cut_off_from_a_live_broker_the_will_says_offline_and_the_events_follow_online() -> None:
    with running_broker() as broker, relay_to(broker.port) as relay, \
            subscriber(broker.port, f"{PREFIX}/#") as live:
        sink = sink_through(relay.port)
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            relay.cut()
            live.wait_for(f"{PREFIX}/available", b"offline")  # published by the broker: the sink's will
            slowest = send(sink, range(1, 21), spread_s=OUTAGE_S / 20)
            assert slowest < MAX_ON_EVENT_S
            assert event_ids(live) == []
            relay.open()
            live.wait_for(f"{PREFIX}/available", b"online", timeout_s=15)
            wait_until(lambda: event_ids(live) == ids(range(1, 21)), 10, "the events of the cut")
            assert live.payloads(f"{PREFIX}/available") == [b"online", b"offline", b"online"]
        finally:
            sink.close()
        live.wait_for(f"{PREFIX}/available", b"offline")  # and a clean close says so itself


@pytest.mark.timeout(60)
def test_past_max_pending_the_newest_events_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream_detect")
    with running_broker() as broker, relay_to(broker.port) as relay:
        sink = sink_through(relay.port, max_pending=5)
        try:
            wait_until(lambda: sink.stats.connected, 10, "the sink to connect")
            broker.kill()
            relay.cut()
            wait_until(lambda: not sink.stats.connected, 10, "the sink to notice")
            send(sink, range(1, 13))
            stats = sink.stats
            assert (stats.pending, stats.dropped) == (5, 7)
            assert "MQTT: events dropped: 1 so far" in caplog.text
            broker.start()
            with subscriber(broker.port, f"{PREFIX}/events") as after:
                relay.open()
                wait_until(lambda: event_ids(after) == ids(range(1, 6)), 20, "the 5 events held")
                send(sink, range(13, 14))
                wait_until(lambda: event_ids(after) == ids(range(1, 6)) + ids(range(13, 14)), 10, "a new event")
            assert (sink.stats.published, sink.stats.dropped) == (6, 7)
        finally:
            sink.close()


@pytest.mark.timeout(60)
def test_a_hung_broker_slows_nothing_and_gets_every_event_when_it_wakes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream_detect")
    with running_broker() as broker, subscriber(broker.port, f"{PREFIX}/#") as live:
        sink = sink_through(broker.port)  # keepalive 5 s: a ping after 5 s of silence, given up 5 s later
        try:
            live.wait_for(f"{PREFIX}/available", b"online")
            broker.freeze()
            slowest = send(sink, range(1, 46), spread_s=9.0 / 45)
            assert slowest < MAX_ON_EVENT_S, f"on_event took {slowest:.3f} s with the broker hung"
            assert sink.stats.pending == 45
            wait_until(lambda: not sink.stats.connected, 10, "the sink to give the silent broker up")
            broker.thaw()
            # Delivered at least once: one sent on the hung connection may come again on the next.
            wait_until(lambda: set(event_ids(live)) == set(ids(range(1, 46))), 20, "every event after the thaw")
            live.wait_for(f"{PREFIX}/available", b"online")
            assert b"offline" in live.payloads(f"{PREFIX}/available")  # the broker timed the silent sink out
            wait_until(lambda: sink.stats.pending == 0, 10, "every acknowledgement")
            assert (sink.stats.published, sink.stats.dropped) == (45, 0)
        finally:
            broker.thaw()
            sink.close()
    assert caplog.text.count("lost the broker") == 1
