"""The MQTT sink's retained state: the latest payload of every retained topic, and what changes it.

A pure state machine, no client and no lock (:class:`~.mqtt.MqttSink` holds
both): each method takes what happened (a stream announced, a counts
message, an event, a stream that ended, a stream forgotten) and returns the
``(topic, payload)`` pairs whose retained value changed, to publish now if
connected; :meth:`RetainedState.everything` is what a (re)connect publishes.

Rules:

* Every count a stream's topology names starts at 0, so that a value left
  retained by an earlier run never stands for this one.
* A zone's label that a counts message no longer names is empty: 0.
* ``<stream>/all/<label>`` counts the label's tracks between their
  ``object.start`` and ``object.end``.
* A stream that ends, fails or stops has nothing in its zones or frame (its
  line crossings stay: they count since the stream started).
* A forgotten stream's topics become empty payloads, which clear a retained
  message at the broker; they stay so (and are published again at each
  connect) until the stream is announced again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .mqtt_topics import (
    StreamTopology,
    Topics,
    count_payload,
    discovery_payloads,
    line_counts,
    line_topics,
    zone_counts,
)

Publish = tuple[str, bytes]
_Role = Literal["zones", "whole_frame"] | None


@dataclass(slots=True)
class _StreamTopics:
    """The retained topics one stream publishes: all of them, and the occupancies among them."""

    all: set[str] = field(default_factory=set)
    zones: set[str] = field(default_factory=set)
    whole_frame: set[str] = field(default_factory=set)


class RetainedState:
    """The retained topics' latest payloads, in the order they were first set (a stream's discovery first).

    Args:
        topics: The topic names.
        discovery_prefix: Home Assistant's discovery prefix; None: no discovery.
        version: Reported in the discovery payloads.
    """

    def __init__(self, topics: Topics, discovery_prefix: str | None, version: str) -> None:
        self.topics = topics
        self._discovery_prefix = discovery_prefix
        self._version = version
        self._payloads: dict[str, bytes] = {}
        self._streams: dict[str, _StreamTopics] = {}
        self._announced: set[str] = set()
        self._tracks: dict[tuple[str, str], set[int]] = {}

    def is_announced(self, stream: str) -> bool:
        return stream in self._announced

    def everything(self) -> list[Publish]:
        return list(self._payloads.items())

    def payload(self, topic: str) -> bytes | None:
        return self._payloads.get(topic)

    def announce(self, topology: StreamTopology) -> list[Publish]:
        """Discovery and counts of 0 for a stream not announced yet; nothing for one that is."""
        stream = topology.stream_id
        if stream in self._announced:
            return []
        self._announced.add(stream)
        changed: list[Publish] = []
        if self._discovery_prefix is not None:
            for topic, payload in discovery_payloads(topology, self.topics, self._discovery_prefix,
                                                     self._version).items():
                changed += self._set(stream, topic, payload)
        zones = [self.topics.zone(stream, zone, label) for zone, labels in topology.zones.items() for label in labels]
        whole_frame = [self.topics.whole_frame(stream, label) for label in topology.labels]
        roles: list[tuple[list[str], _Role]] = [(zones, "zones"), (whole_frame, "whole_frame"),
                                                (line_topics(topology, self.topics), None)]
        for topics, role in roles:
            for topic in topics:
                if not self._payloads.get(topic):  # unknown, or cleared by forget
                    changed += self._set(stream, topic, count_payload(0), role)
                else:
                    self._own(stream, topic, role)
        return changed

    def counts(self, message: Mapping[str, Any]) -> list[Publish]:
        """A counts message: zone occupancies (0 for those it no longer names) and line crossings."""
        stream = str(message["stream"])
        zones = zone_counts(message, self.topics)
        changed: list[Publish] = []
        for topic in sorted(self._own(stream).zones - zones.keys()):
            changed += self._set(stream, topic, count_payload(0))
        for topic, value in zones.items():
            changed += self._set(stream, topic, count_payload(value), "zones")
        for topic, value in line_counts(message, self.topics).items():
            changed += self._set(stream, topic, count_payload(value))
        return changed

    def event(self, event: Mapping[str, Any]) -> list[Publish]:
        """An event: object.start and object.end change the whole frame's count of their label."""
        kind = event.get("kind")
        if kind not in ("object.start", "object.end"):
            return []
        stream, label = str(event["stream"]), str(event["label"])
        tracks = self._tracks.setdefault((stream, label), set())
        if kind == "object.start":
            tracks.add(int(event["track_id"]))
        else:
            tracks.discard(int(event["track_id"]))
        return self._set(stream, self.topics.whole_frame(stream, label), count_payload(len(tracks)), "whole_frame")

    def snapshot(self, stream: str, jpeg: bytes) -> list[Publish]:
        return self._set(stream, self.topics.snapshot(stream), jpeg)

    def stream_over(self, stream: str) -> list[Publish]:
        """A stream that ended, failed or stopped: 0 in its zones and frame."""
        for key, tracks in self._tracks.items():
            if key[0] == stream:
                tracks.clear()
        owned = self._streams.get(stream)
        changed: list[Publish] = []
        for topic in sorted(owned.zones | owned.whole_frame) if owned else ():
            changed += self._set(stream, topic, count_payload(0))
        return changed

    def forget(self, stream: str) -> list[Publish]:
        """A stream removed for good: every topic it published, emptied."""
        owned = self._streams.pop(stream, None)
        self._announced.discard(stream)
        for key in [key for key in self._tracks if key[0] == stream]:
            del self._tracks[key]
        changed: list[Publish] = []
        for topic in sorted(owned.all) if owned else ():
            if self._payloads.get(topic) != b"":
                self._payloads[topic] = b""
                changed.append((topic, b""))
        return changed

    def _own(self, stream: str, topic: str | None = None, role: _Role = None) -> _StreamTopics:
        owned = self._streams.setdefault(stream, _StreamTopics())
        if topic is not None:
            owned.all.add(topic)
            if role == "zones":
                owned.zones.add(topic)
            elif role == "whole_frame":
                owned.whole_frame.add(topic)
        return owned

    def _set(self, stream: str, topic: str, payload: bytes, role: _Role = None) -> list[Publish]:
        self._own(stream, topic, role)
        if self._payloads.get(topic) == payload:
            return []
        self._payloads[topic] = payload
        return [(topic, payload)]
