"""``GET /events``, ``GET /events/{id}`` and ``GET /counts`` through a real HTTP client against a
real uvicorn on 127.0.0.1, over a store with known events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stream_detect.events import EventReader, EventStore, events_path
from stream_detect.server.events_api import install_events_api

from ..server.serving import serving_app
from .sample import DAY, event

pytestmark = pytest.mark.timeout(60)

TIMELINE = [
    event(DAY + 5, "object.start", stream="porch-cam", label="person"),
    event(DAY + 10, "zone.enter", stream="porch-cam", label="person", zone="porch"),
    event(DAY + 10, "line.cross", stream="gate-cam", label="car", line="gate", direction="in"),
    event(DAY + 10, "line.cross", stream="gate-cam", label="car", line="gate", direction="out"),
    event(DAY + 3600 + 1, "zone.leave", stream="porch-cam", label="person", zone="porch"),
    event(DAY + 7200 + 2, "line.cross", stream="gate-cam", label="person", line="gate", direction="in"),
]


@contextlib.contextmanager
def serving_events(store: EventStore | EventReader) -> Iterator[httpx.Client]:
    """A small app with only the events routes, on a real uvicorn at 127.0.0.1:0; stopped on exit."""
    app = FastAPI()
    install_events_api(app, store)
    with serving_app(app, "test-events-server") as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    store = EventStore(events_path(tmp_path_factory.mktemp("events")))
    try:
        for added in TIMELINE:
            store.add(added)
        assert store.flush(10)
        with serving_events(store) as client:
            yield client
    finally:
        store.close()


def listed(http: httpx.Client, **params: Any) -> list[str]:
    response = http.get("/events", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return [e["id"] for e in response.json()["events"]]


def newest_first(*indices: int) -> list[str]:
    chosen = sorted((TIMELINE[i] for i in indices), key=lambda e: (e["at"], e["id"]), reverse=True)
    return [e["id"] for e in chosen]


def test_events_newest_first_with_each_filter(http: httpx.Client) -> None:
    body = http.get("/events").json()
    assert body == {"events": sorted(TIMELINE, key=lambda e: (e["at"], e["id"]), reverse=True), "next": None}
    assert listed(http, stream="gate-cam") == newest_first(2, 3, 5)
    assert listed(http, kind="line.cross", label="car") == newest_first(2, 3)
    assert listed(http, zone="porch") == newest_first(1, 4)
    assert listed(http, line="gate", stream="porch-cam") == []
    assert listed(http, after=DAY + 10, before=DAY + 3601) == newest_first(1, 2, 3)
    assert listed(http, after="2025-12-03T01:00:00Z") == newest_first(4, 5)  # ISO 8601, = DAY + 3600
    assert listed(http, before="2025-12-03T00:00:06") == newest_first(0)  # no offset: UTC
    assert listed(http, stream="", kind="") == newest_first(0, 1, 2, 3, 4, 5)  # empty: not given


def test_pages_follow_the_next_cursor_to_the_end(http: httpx.Client) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = http.get("/events", params=params).json()
        assert len(body["events"]) <= 2
        seen += [e["id"] for e in body["events"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == newest_first(0, 1, 2, 3, 4, 5)


def test_one_event_by_id_and_404_for_an_unknown_one(http: httpx.Client) -> None:
    wanted = TIMELINE[4]
    response = http.get(f"/events/{wanted['id']}")
    assert response.status_code == 200
    assert response.json() == wanted
    missing = http.get("/events/no-such-event")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no event 'no-such-event'"}


def test_counts_per_hour_bucket(http: httpx.Client) -> None:
    response = http.get("/counts", params={"bucket": "hour"})
    assert response.status_code == 200
    assert response.json() == {"bucket": "hour", "bucket_s": 3600, "after": None, "before": None, "buckets": [
        {"start": DAY, "end": DAY + 3600,
         "lines": [{"stream": "gate-cam", "line": "gate", "in": 1, "out": 1}],
         "zones": [{"stream": "porch-cam", "zone": "porch", "entered": 1}]},
        {"start": DAY + 7200, "end": DAY + 10800,
         "lines": [{"stream": "gate-cam", "line": "gate", "in": 1, "out": 0}], "zones": []},
    ]}
    assert http.get("/counts").json()["bucket"] == "hour"  # the default
    day = http.get("/counts", params={"stream": "gate-cam", "bucket": "day", "after": DAY + 60}).json()
    assert day["after"] == DAY + 60
    assert [(b["start"], b["lines"], b["zones"]) for b in day["buckets"]] == [
        (DAY, [{"stream": "gate-cam", "line": "gate", "in": 1, "out": 0}], [])]


@pytest.mark.parametrize(("path", "params", "named"), [
    ("/events", {"kind": "zone.entered"}, "kind"),
    ("/events", {"limit": "0"}, "limit"),
    ("/events", {"limit": "1001"}, "limit"),
    ("/events", {"limit": "ten"}, "limit"),
    ("/events", {"limit": "2.5"}, "limit"),
    ("/events", {"after": str(DAY + 10), "before": str(DAY)}, "after"),
    ("/events", {"cursor": "not-a-cursor"}, "cursor"),
    ("/events", {"cursor": "WzIsMSwiYSJd"}, "cursor"),  # [2, 1, "a"]: a cursor format this server does not know
    ("/events", {"after": "yesterday"}, "after"),
    ("/events", {"before": "nan"}, "before"),
    ("/events", {"after": "inf"}, "after"),
    ("/counts", {"bucket": "week"}, "bucket"),
    ("/counts", {"after": "soon"}, "after"),
    ("/counts", {"after": str(DAY + 10), "before": str(DAY)}, "after"),
])
def test_bad_values_are_422_with_one_line_naming_the_parameter(http: httpx.Client, path: str,
                                                               params: dict[str, str], named: str) -> None:
    response = http.get(path, params=params)
    assert response.status_code == 422
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    assert body["error"].startswith(named), body["error"]


def test_a_database_that_cannot_be_read_is_503_with_one_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = events_path(tmp_path_factory.mktemp("gone"))
    with EventStore(path) as store:
        store.add(TIMELINE[0])
    reader = EventReader(path)
    path.unlink()  # the data directory was removed under a running server
    with serving_events(reader) as client:
        for url in ("/events", f"/events/{TIMELINE[0]['id']}", "/counts"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert response.json()["error"].startswith(f"events database {path} cannot be read")
