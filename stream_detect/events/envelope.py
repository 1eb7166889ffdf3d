"""The event envelope (the websocket's ``{"type": "event", ...}`` message) to a database row and back.

Two pure functions, the only place the envelope meets the table's columns:
:func:`row_of` checks an event and turns it into the row the writer inserts,
:func:`event_of` turns a row back into the envelope, with the same keys.
Keys this version does not know are kept as JSON in the ``extra`` column and
come back as they were given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InputError

KINDS = ("object.start", "object.end", "zone.enter", "zone.leave", "zone.loiter", "line.cross")
DIRECTIONS = ("in", "out")
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
KNOWN_KEYS = frozenset({"type", "version", "id", "kind", "stream", "at", "frame", "track_id", "label", "score",
                        "box", "zone", "line", "direction", "duration_s"})
MAX_ID_CHARS = 200

# The table's columns, in the order of ``row_of``'s tuple and of every SELECT.
COLUMNS = ("id", "at", "stream", "kind", "version", "frame", "track_id", "label", "score",
           "xmin", "ymin", "xmax", "ymax", "zone", "line", "direction", "duration_s", "extra")
Row = tuple[Any, ...]


def _number(event: Mapping[str, Any], key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"event {str(event.get('id'))[:100]!r}: {key} must be a finite number, not {value!r:.100}")
    return float(value)


def _integer(event: Mapping[str, Any], key: str) -> int:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"event {str(event.get('id'))[:100]!r}: {key} must be an integer, not {value!r:.100}")
    return value


def _text(event: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = event.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"event {str(event.get('id'))[:100]!r}: {key} must be a non-empty string, "
                         f"not {value!r:.100}")
    return value


def row_of(event: Mapping[str, Any]) -> Row:
    """The row for ``event``, checked.

    Raises:
        InputError: a field is missing or of the wrong type, the kind or direction is unknown.
    """
    if event.get("type", "event") != "event":
        raise InputError(f"event {str(event.get('id'))[:100]!r}: type must be 'event', not {event.get('type')!r:.100}")
    event_id = _text(event, "id")
    assert event_id is not None
    if len(event_id) > MAX_ID_CHARS:
        raise InputError(f"event id {event_id[:100]!r}...: longer than {MAX_ID_CHARS} characters")
    kind = event.get("kind")
    if kind not in KINDS:
        raise InputError(f"event {event_id[:100]!r}: kind {kind!r:.100} is not one of {', '.join(KINDS)}")
    direction = event.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise InputError(f"event {event_id[:100]!r}: direction {direction!r:.100} is not 'in', 'out' or null")
    box = event.get("box")
    if not isinstance(box, Mapping):
        raise InputError(f"event {event_id[:100]!r}: box must be an object with {', '.join(BOX_KEYS)}")
    if kind.startswith("zone.") and event.get("zone") is None:
        raise InputError(f"event {event_id[:100]!r}: a {kind} event names its zone")
    if kind == "line.cross" and (event.get("line") is None or direction is None):
        raise InputError(f"event {event_id[:100]!r}: a line.cross event names its line and direction")
    duration = event.get("duration_s")
    extra = {key: value for key, value in event.items() if key not in KNOWN_KEYS}
    version = _integer(event, "version") if "version" in event else 1
    return (
        event_id,
        _number(event, "at", event.get("at")),
        _text(event, "stream"),
        kind,
        version,
        _integer(event, "frame"),
        _integer(event, "track_id"),
        _text(event, "label"),
        _number(event, "score", event.get("score")),
        *(_number(event, f"box.{key}", box.get(key)) for key in BOX_KEYS),
        _text(event, "zone", optional=True),
        _text(event, "line", optional=True),
        direction,
        None if duration is None else _number(event, "duration_s", duration),
        orjson.dumps(extra).decode() if extra else None,
    )


def event_of(row: Row) -> dict[str, Any]:
    """The envelope stored as ``row`` (columns in :data:`COLUMNS` order)."""
    (event_id, at, stream, kind, version, frame, track_id, label, score,
     xmin, ymin, xmax, ymax, zone, line, direction, duration_s, extra) = row
    event: dict[str, Any] = {
        "type": "event", "version": version, "id": event_id, "kind": kind, "stream": stream, "at": at,
        "frame": frame, "track_id": track_id, "label": label, "score": score,
        "box": {key: int(value) if float(value).is_integer() else value  # the wire's integer pixels
                for key, value in zip(BOX_KEYS, (xmin, ymin, xmax, ymax), strict=True)},
        "zone": zone, "line": line, "direction": direction, "duration_s": duration_s,
    }
    if extra:
        event.update(orjson.loads(extra))
    return event
