"""What the MQTT sink publishes where: topic names, count values and Home Assistant discovery payloads.

Pure functions, no client and no clock: :mod:`.mqtt` decides when to
publish, this module decides what.

Topics (``P`` is ``topic_prefix``; names are made safe by :func:`segment`)::

    P/available                     online | offline               retained (the will: offline)
    P/events                        the event envelope (JSON)      QoS qos_events, not retained
    P/<stream>/<zone>/<label>       objects of label in zone now   retained, integer text
    P/<stream>/all/<label>          objects of label in the frame  retained, integer text
    P/<stream>/<line>/<direction>   crossings since start (in|out) retained, integer text
    P/<stream>/snapshot             latest event's JPEG            retained, bytes

Zones, lines and the whole frame (``all``) share the level after the
stream, as in Frigate: a zone called ``all``, or a zone and a line of one
name, would publish to the same topics (:func:`clashes` finds them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

WHOLE_FRAME = "all"
DIRECTIONS = ("in", "out")
ONLINE = b"online"
OFFLINE = b"offline"
_UNSAFE = re.compile(r"[%/+#\x00]")
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")
OCCUPIED_TEMPLATE = "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"


@dataclass(frozen=True, slots=True)
class StreamTopology:
    """What one stream counts, as Home Assistant is told it: one device per stream.

    Attributes:
        stream_id: The stream's id.
        zones: Zone name -> the labels counted in it (a sensor and a binary sensor each).
        lines: Names of the stream's counting lines (a sensor per direction each).
        labels: Labels counted over the whole frame (``<stream>/all/<label>``).
        name: The device's display name (default: the stream id).
    """

    stream_id: str
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        frozen = MappingProxyType({zone: tuple(labels) for zone, labels in self.zones.items()})
        object.__setattr__(self, "zones", frozen)
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "labels", tuple(self.labels))


def segment(name: str) -> str:
    """``name`` as one topic level: ``%``, ``/``, ``+``, ``#`` and NUL percent-encoded.

    Reversible, so two names never share a topic (``a/b`` is ``a%2Fb``, ``a%2Fb`` is ``a%252Fb``).
    """
    return _UNSAFE.sub(lambda match: f"%{ord(match[0]):02X}", name)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics under one ``topic_prefix``."""

    prefix: str

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    def zone(self, stream: str, zone: str, label: str) -> str:
        return f"{self.prefix}/{segment(stream)}/{segment(zone)}/{segment(label)}"

    def whole_frame(self, stream: str, label: str) -> str:
        return f"{self.prefix}/{segment(stream)}/{WHOLE_FRAME}/{segment(label)}"

    def line(self, stream: str, line: str, direction: str) -> str:
        return f"{self.prefix}/{segment(stream)}/{segment(line)}/{direction}"

    def snapshot(self, stream: str) -> str:
        return f"{self.prefix}/{segment(stream)}/snapshot"


def count_payload(value: int) -> bytes:
    return str(value).encode()


def zone_counts(message: Mapping[str, Any], topics: Topics) -> dict[str, int]:
    """A counts message's zone occupancies: topic -> objects in the zone now."""
    stream = str(message["stream"])
    return {topics.zone(stream, zone, label): int(count)
            for zone, labels in message.get("zones", {}).items() for label, count in labels.items()}


def line_counts(message: Mapping[str, Any], topics: Topics) -> dict[str, int]:
    """A counts message's line crossings: topic -> crossings in that direction since the stream started."""
    stream = str(message["stream"])
    return {topics.line(stream, line, direction): int(crossings.get(direction, 0))
            for line, crossings in message.get("lines", {}).items() for direction in DIRECTIONS}


def occupancy_topics(topology: StreamTopology, topics: Topics) -> list[str]:
    """The stream's zone and whole-frame occupancy topics."""
    stream = topology.stream_id
    return ([topics.zone(stream, zone, label) for zone, labels in topology.zones.items() for label in labels]
            + [topics.whole_frame(stream, label) for label in topology.labels])


def line_topics(topology: StreamTopology, topics: Topics) -> list[str]:
    return [topics.line(topology.stream_id, line, direction) for line in topology.lines for direction in DIRECTIONS]


def clashes(topology: StreamTopology, topics: Topics) -> list[str]:
    """State topics two of the stream's counts would share (a zone called ``all``, a zone and a line alike)."""
    seen: set[str] = set()
    repeated: list[str] = []
    for topic in occupancy_topics(topology, topics) + line_topics(topology, topics):
        if topic in seen and topic not in repeated:
            repeated.append(topic)
        seen.add(topic)
    return repeated


def _identifier(*parts: str) -> str:
    """A Home Assistant id (``[A-Za-z0-9_-]``): the parts made readable, then a hash of them exactly.

    The hash keeps ids of different names apart even when their readable forms coincide.
    """
    readable = "_".join(_NOT_ID.sub("_", part).strip("_")[:32] for part in parts if part)
    digest = hashlib.sha256(orjson.dumps(parts)).hexdigest()[:10]
    return f"{readable}_{digest}"


def discovery_payloads(topology: StreamTopology, topics: Topics, discovery_prefix: str,
                       version: str) -> dict[str, bytes]:
    """Home Assistant MQTT discovery for one stream: config topic -> JSON payload (to be retained).

    One device per stream; per zone and label (and per label of the whole
    frame) a ``sensor`` counting and a ``binary_sensor`` (occupancy) reading
    the same count topic; a ``sensor`` per line and direction; a ``camera``
    showing ``<stream>/snapshot``. Each entity has a ``unique_id``, the
    device and ``availability_topic`` ``<prefix>/available``.
    """
    stream = topology.stream_id
    node = _identifier(topics.prefix, stream)
    common: dict[str, Any] = {
        "availability_topic": topics.available,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": {"identifiers": [node], "name": topology.name or stream, "manufacturer": "stream-detect",
                   "model": "video stream", "sw_version": version},
        "origin": {"name": "stream-detect", "sw_version": version},
    }
    payloads: dict[str, bytes] = {}

    def add(component: str, kind: str, scope: str, what: str, entity: dict[str, Any]) -> None:
        unique_id = _identifier(topics.prefix, stream, scope, what, kind)
        topic = f"{discovery_prefix}/{component}/{node}/{unique_id}/config"
        payloads[topic] = orjson.dumps({**entity, "unique_id": unique_id, **common})

    scopes = [(zone, labels, zone) for zone, labels in topology.zones.items()]
    scopes.append(("", topology.labels, "in view"))
    for zone, labels, title in scopes:
        for label in labels:
            state = topics.zone(stream, zone, label) if zone else topics.whole_frame(stream, label)
            add("sensor", "count", zone or WHOLE_FRAME, label,
                {"name": f"{label} {title}", "state_topic": state, "state_class": "measurement"})
            add("binary_sensor", "occupancy", zone or WHOLE_FRAME, label,
                {"name": f"{label} {title} occupancy", "state_topic": state, "device_class": "occupancy",
                 "value_template": OCCUPIED_TEMPLATE})
    for line in topology.lines:
        for direction in DIRECTIONS:
            add("sensor", "crossings", line, direction,
                {"name": f"{line} {direction}", "state_topic": topics.line(stream, line, direction),
                 "state_class": "total_increasing"})
    # A camera reads its image from "topic" (Home Assistant's camera schema has no state_topic).
    add("camera", "snapshot", "", "snapshot", {"name": "snapshot", "topic": topics.snapshot(stream)})
    return payloads
