"""The MQTT sink: events, counts and snapshots to a broker, streams announced to Home Assistant.

:class:`MqttSink` is an :class:`~stream_detect.sinks.EventSink`: the
dispatcher calls it on its own runner thread, and it never waits on the
broker. paho-mqtt's network thread (``loop_start``) connects, reconnects
with doubling waits up to ``reconnect_max_s`` and sends; the runner thread
only hands messages to paho's queue.

Two kinds of messages, two ways through an outage:

* **Events** (``<prefix>/events``, QoS ``qos_events``): paho keeps every
  QoS 1 or 2 message published while it is disconnected and sends it, in
  order, once it has reconnected. Measured with mosquitto killed for 6 s
  and for 20 s, cut off by the network, and hung (SIGSTOP) until the
  keepalive gave it up after 10 s: every message published meanwhile
  arrived, and ``on_event`` never took a millisecond. The queue is
  bounded (``max_queued_messages_set(max_pending)``); past the bound paho
  refuses the newest message, which :attr:`MqttSink.stats` counts as
  dropped, so what arrives is the start of the outage without a gap
  (a named choice: DROP_NEWEST). A message in flight when the connection
  broke is sent again: delivery is at least once, and an event's ``id``
  lets a subscriber drop a repeat. QoS 0 events published while away are
  dropped, counted.
* **State** (counts, snapshots, discovery; retained): the latest value of
  every topic is kept here and published when it changes; on each
  (re)connect ``online`` and then every kept value is published again. A
  restarted broker that lost its retained messages so gets them back, and
  an old value still in paho's queue can never arrive after a newer one
  (state goes at QoS 0, which paho does not queue).

What the state is, and how events, counts and stream changes change it,
is :class:`~.mqtt_state.RetainedState`'s (whole-frame counts follow
``object.start`` and ``object.end``; a stream that ends counts nothing);
what goes on which topic is :mod:`.mqtt_topics`'.

``<prefix>/available`` is ``online`` (retained) after each connect,
``offline`` after :meth:`MqttSink.close`, and ``offline`` as the will when
the broker loses the connection otherwise. A broker that itself dies sends
no will: its subscribers see their own connection drop instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from .. import __version__
from ..errors import ConfigError
from ..redact import register_secret
from ..sinks import FrameResult, Notice
from ..sources.base import SourceState
from ..sources.capture import StateChange
from .mqtt_config import MqttConfig
from .mqtt_state import Publish, RetainedState
from .mqtt_topics import OFFLINE, ONLINE, StreamTopology, Topics, clashes

log = logging.getLogger(__name__)

SnapshotOf = Callable[[dict[str, Any]], bytes | None]
CLOSE_TIMEOUT_S = 5.0
_OVER = frozenset({SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED})


@dataclass(frozen=True, slots=True)
class MqttStats:
    """Counters of event messages (``<prefix>/events``) and of the connection.

    Attributes:
        published: Events the broker acknowledged (QoS 1, 2) or that were sent (QoS 0).
        pending: Events handed to the client and not yet acknowledged (held while the broker is away).
        dropped: Events refused: past ``max_pending``, or at QoS 0 while the broker was away.
        connected: Whether the client is connected now.
        reconnects: Connections made after the first.
    """

    published: int
    pending: int
    dropped: int
    connected: bool
    reconnects: int


class MqttSink:
    """Publishes events, counts and snapshots to an MQTT broker; starts connecting at once, never blocks on it.

    Args:
        config: The broker and topics.
        topology: What each stream counts, for Home Assistant discovery and for counts of 0 at start;
            called at every connect and when a stream not yet announced shows a state change.
        public_url: The server's public URL; events then carry ``snapshot_url`` and ``clip_url``.
        snapshot_of: The JPEG of an event's snapshot, or None; published retained on ``<stream>/snapshot``.
        version: Reported in the discovery payloads.

    Raises:
        ConfigError: TLS is on and ``ca_file`` cannot be read.
    """

    name = "mqtt"

    def __init__(self, config: MqttConfig, *, topology: Callable[[], list[StreamTopology]] = list,
                 public_url: str | None = None, snapshot_of: SnapshotOf | None = None,
                 version: str = __version__) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._topology = topology
        self._public_url = public_url.rstrip("/") if public_url else None
        self._snapshot_of = snapshot_of
        self._version = version
        # Guards the state below and orders state publishes against the republish at connect.
        self._lock = threading.Lock()
        self._state = RetainedState(self.topics, config.discovery_prefix if config.discovery else None, version)
        self._connected = False
        self._connects = 0
        self._outage_logged = False
        self._lost_at: float | None = None
        self._closed = False
        # Events handed to paho and not yet seen acknowledged (only the runner thread and stats touch it).
        self._in_flight: deque[mqtt.MQTTMessageInfo] = deque()
        self._flight_lock = threading.Lock()
        self._published = 0
        self._dropped = 0
        self._client = self._make_client()
        self._client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        self._client.loop_start()

    def _make_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.effective_client_id())
        if config.username is not None:
            password = config.password.get_secret_value() if config.password is not None else None
            if password:
                register_secret(password)
            client.username_pw_set(config.username, password)
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file)
            except OSError as error:
                raise ConfigError(f"mqtt.ca_file {config.ca_file!r}: cannot read it: "
                                  f"{error.strerror or error}") from None
        client.will_set(self.topics.available, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=config.reconnect_max_s)
        client.max_queued_messages_set(config.max_pending)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        return client

    def __repr__(self) -> str:
        return f"MqttSink({self.config.host}:{self.config.port}, prefix={self.config.topic_prefix!r})"

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> MqttStats:
        with self._flight_lock:
            self._settle(whole=True)
            pending = len(self._in_flight)
            published, dropped = self._published, self._dropped
        return MqttStats(published, pending, dropped, self._connected, max(0, self._connects - 1))

    # The sink's side: the runner thread.

    def on_result(self, result: FrameResult) -> None:
        """Results are not published (frame-by-frame detections are the websocket's)."""

    def on_status(self, change: StateChange) -> None:
        if not self._state.is_announced(change.stream_id):
            self._announce(self._topologies())
        if change.state in _OVER:
            self._apply(self._state.stream_over, change.stream_id)

    def on_event(self, notice: Notice) -> None:
        if notice.type == "event":
            self._publish_event(notice)
            self._apply(self._state.event, notice.message)
            self._publish_snapshot(notice.message)
        elif notice.type == "counts":
            self._apply(self._state.counts, notice.message)

    def forget(self, stream_id: str) -> None:
        """Removes a stream's discovery and retained topics from the broker (a stream removed for good).

        Safe from any thread.
        """
        self._apply(self._state.forget, stream_id)

    def close(self) -> None:
        """Publishes ``offline``, waits a little for pending events, disconnects. Idempotent."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        if self._connected:
            while self.stats.pending and time.monotonic() < deadline and self._connected:
                time.sleep(0.02)
            info = self._client.publish(self.topics.available, OFFLINE, qos=1, retain=True)
            with suppress(RuntimeError, ValueError):  # the connection went meanwhile: the will says it
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        stats = self.stats
        if stats.pending or stats.dropped:
            log.warning("MQTT: closed with %d events unsent and %d dropped", stats.pending, stats.dropped)

    def _publish_event(self, notice: Notice) -> None:
        if self._public_url is None:
            payload = notice.json()
        else:
            event_url = f"{self._public_url}/events/{quote(str(notice.message['id']), safe='')}"
            payload = orjson.dumps({**notice.message, "snapshot_url": f"{event_url}/snapshot.jpg",
                                    "clip_url": f"{event_url}/clip.mp4"})
        qos = self.config.qos_events
        info = self._client.publish(self.topics.events, payload, qos=qos)
        # Kept by paho: sent, or (QoS 1, 2) queued until the broker is back.
        held = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN)
        if held and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # paho queues it (measured: sent once reconnected) but leaves its rc at NO_CONN, so that
            # is_published() would raise even after the broker acknowledged it.
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        with self._flight_lock:
            if held:
                self._in_flight.append(info)
            else:
                self._dropped += 1
            dropped = self._dropped
            self._settle(whole=False)
        if not held and (dropped == 1 or dropped % 1000 == 0):
            log.warning("MQTT: events dropped: %d so far (%s)", dropped, mqtt.error_string(info.rc))

    def _settle(self, whole: bool) -> None:
        """Counts acknowledged events out of the in-flight queue: from its head, or all of it."""
        while self._in_flight and self._in_flight[0].is_published():
            self._in_flight.popleft()
            self._published += 1
        if whole and any(info.is_published() for info in self._in_flight):
            waiting = [info for info in self._in_flight if not info.is_published()]
            self._published += len(self._in_flight) - len(waiting)
            self._in_flight = deque(waiting)

    def _publish_snapshot(self, event: dict[str, Any]) -> None:
        if self._snapshot_of is None:
            return
        try:
            jpeg = self._snapshot_of(event)
        except Exception as error:  # a missing snapshot must not lose the event's other messages
            log.warning("MQTT: no snapshot for event %s: %s: %s", str(event.get("id"))[:100],
                        type(error).__name__, error)
            return
        if jpeg:
            self._apply(self._state.snapshot, str(event["stream"]), bytes(jpeg))

    def _apply(self, change: Callable[..., list[Publish]], *args: Any) -> None:
        """Changes the retained state; publishes what changed if connected (else the next connect will)."""
        with self._lock:
            changed = change(*args)
            if self._connected:
                for topic, payload in changed:
                    self._client.publish(topic, payload, qos=0, retain=True)

    def _topologies(self) -> list[StreamTopology]:
        try:
            return list(self._topology())
        except Exception as error:  # the integrator's callable: its failure costs discovery, not the sink
            log.warning("MQTT: cannot read the streams' topology: %s: %s", type(error).__name__, error)
            return []

    def _announce(self, topologies: list[StreamTopology]) -> None:
        for topology in topologies:
            if not self._state.is_announced(topology.stream_id):
                for topic in clashes(topology, self.topics):
                    log.warning("MQTT: two counts of stream %r share the topic %s (rename a zone or line)",
                                topology.stream_id, topic)
            self._apply(self._state.announce, topology)

    # paho's network thread.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: Any, properties: Any) -> None:
        try:
            self._connected_to_broker(client, reason)
        except Exception as error:  # raised out of a callback, it would end paho's thread and the reconnects
            log.error("MQTT: announcing after connecting failed: %s: %s", type(error).__name__, error)

    def _connected_to_broker(self, client: mqtt.Client, reason: Any) -> None:
        if reason.is_failure:
            if not self._outage_logged:
                self._outage_logged = True
                log.error("MQTT: the broker at %s:%d refused the connection: %s; retrying",
                          self.config.host, self.config.port, reason)
            return
        self._announce(self._topologies())  # not connected yet: kept, published below with the rest
        with self._lock:
            self._connected = True
            self._connects += 1
            client.publish(self.topics.available, ONLINE, qos=1, retain=True)
            # In the order first set: a stream's discovery before its state. An empty payload clears a topic.
            for topic, payload in self._state.everything():
                client.publish(topic, payload, qos=0, retain=True)
        if self._lost_at is not None:
            log.info("MQTT: connected to %s:%d, after %.1f s without the broker", self.config.host,
                     self.config.port, time.monotonic() - self._lost_at)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        self._lost_at = None
        self._outage_logged = False

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("MQTT: cannot reach the broker at %s:%d; retrying, holding up to %d events",
                        self.config.host, self.config.port, self.config.max_pending)
        if self._lost_at is None:
            self._lost_at = time.monotonic()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: Any, properties: Any) -> None:
        # No self._lock here: paho may call this while it holds its own locks.
        self._connected = False
        if self._closed:
            return
        self._outage_logged = True
        if self._lost_at is None:  # once per outage: a hung broker also times out each attempt to reconnect
            self._lost_at = time.monotonic()
            log.warning("MQTT: lost the broker at %s:%d (%s); reconnecting, holding up to %d events",
                        self.config.host, self.config.port, reason, self.config.max_pending)
