"""An event's snapshot and clip over a real HTTP server, and the media's retention beside the history."""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI

from stream_detect.analytics.events import event_id
from stream_detect.events import EventReader, EventStore, events_path
from stream_detect.events.media import sweep
from stream_detect.events.snapshots import SnapshotSink
from stream_detect.render import label_colour
from stream_detect.server.media_api import install_media_api

from ..media import write_h264
from ..server.serving import serving_app
from .test_snapshots import HEIGHT, SCENE, SHAPES, STREAM, WIDTH, analysed, decode, feed, inner_mean

pytestmark = pytest.mark.timeout(90)


def serving(app: FastAPI) -> contextlib.AbstractContextManager[str]:
    """Serves ``app`` with uvicorn on 127.0.0.1 and a free port; yields its base URL, stops in ``finally``."""
    return serving_app(app, "test-media-server")


@dataclass
class Served:
    base: str
    client: httpx.Client
    root: Path
    snapshots: Path
    clips: Path
    events: list[dict[str, Any]]

    def of(self, label: str) -> list[dict[str, Any]]:
        """Every event of the object with ``label`` (one object per label in the scene)."""
        return [event for event in self.events if event["label"] == label]

    def start(self, label: str) -> dict[str, Any]:
        return next(event for event in self.of(label) if event["kind"] == "object.start")

    def sidecar(self, label: str) -> dict[str, Any]:
        return dict(orjson.loads((self.snapshots / STREAM / f"{self.start(label)['id']}.json").read_bytes()))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(f"{self.base}{path}", **kwargs)


# An event the history holds whose object has no media (its object is still open, say).
OPEN_START = {"type": "event", "version": 1, "id": event_id(1_800_000_100.0, STREAM, 5000, 0), "kind": "object.start",
              "stream": STREAM, "at": 1_800_000_100.0, "frame": 5000, "track_id": 77, "label": "person",
              "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}}
# Events whose stream or id would lead out of the media directories if they were used as paths.
ESCAPES = [
    {**OPEN_START, "id": "../../planted", "track_id": 78, "frame": 5001},
    {**OPEN_START, "id": "e-up", "stream": "..", "track_id": 79, "frame": 5002},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("media")
    snapshots, clips = root / "snapshots", root / "clips"
    sink = SnapshotSink(snapshots)
    events = feed(sink, analysed(SCENE))
    sink.close()
    square_start = next(e for e in events if e["kind"] == "object.start" and e["label"] == "square")
    (clips / STREAM).mkdir(parents=True)
    write_h264(clips / STREAM / f"{square_start['id']}.mp4", frames=30, width=160, height=120)
    # What the escapes would reach, were their names used as paths.
    (root / "planted.jpg").write_bytes(b"not to be served")
    (root / "e-up.jpg").write_bytes(b"not to be served")
    (root / "e-up.mp4").write_bytes(b"not to be served")
    with EventStore(events_path(root)) as store:
        for event in [*events, OPEN_START, *ESCAPES]:
            store.add(event)
        assert store.flush()
        app = FastAPI()
        install_media_api(app, store.reader, snapshots, clips)
        with serving(app) as base, httpx.Client(timeout=10) as client:
            yield Served(base, client, root, snapshots, clips, events)


def snapshot_path(event: dict[str, Any], query: str = "") -> str:
    return f"/events/{event['id']}/snapshot.jpg" + (f"?{query}" if query else "")


def test_every_event_of_an_object_serves_its_clean_snapshot(served: Served) -> None:
    for shape in SHAPES:
        events = served.of(shape.label)
        assert {event["kind"] for event in events} >= {"object.start", "object.end"}
        stored = (served.snapshots / STREAM / f"{served.start(shape.label)['id']}.jpg").read_bytes()
        for event in events:
            answer = served.get(snapshot_path(event))
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/jpeg"
            assert answer.content == stored, event["kind"]
        image = decode(stored)
        assert image.shape == (HEIGHT, WIDTH, 3)
        mean = inner_mean(image, served.sidecar(shape.label)["box"])
        assert np.abs(mean - np.array(shape.colour)).max() < 25


def outline_distance(image: np.ndarray, box: dict[str, float], colour: np.ndarray) -> float:
    """How far from ``colour`` the box's left and right sides are in ``image``: per row, the closest of the
    three pixels around the side (the line is 2 px wide), the median over the rows and both sides."""
    x0, x1 = (int(np.clip(box[key], 1, WIDTH - 2)) for key in ("xmin", "xmax"))
    y0, y1 = (int(np.clip(box[key], 0, HEIGHT - 1)) for key in ("ymin", "ymax"))
    rows = slice(y0 + (y1 - y0) // 3, y1)  # below the label's tag
    distances = [np.abs(image[rows, x - 1:x + 2] - colour).max(axis=2).min(axis=1) for x in (x0, x1)]
    return float(np.median(np.concatenate(distances)))


def inside(box: dict[str, float]) -> tuple[slice, slice]:
    cx, cy = (box["xmin"] + box["xmax"]) / 2, (box["ymin"] + box["ymax"]) / 2
    w, h = box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]
    return slice(round(cy - h / 4), round(cy + h / 4)), slice(round(cx - w / 4), round(cx + w / 4))


def test_boxes_draws_the_objects_box_in_its_labels_colour(served: Served) -> None:
    for shape in SHAPES:
        event = served.of(shape.label)[-1]
        clean = decode(served.get(snapshot_path(event)).content).astype(int)
        answer = served.get(snapshot_path(event, "boxes=1"))
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        drawn = decode(answer.content).astype(int)
        assert drawn.shape == clean.shape
        box = served.sidecar(shape.label)["box"]
        colour = np.array(label_colour(shape.label))
        assert outline_distance(drawn, box, colour) < 40, shape.label
        assert outline_distance(clean, box, colour) > 60, shape.label  # it was not there before
        assert np.abs(drawn[inside(box)] - clean[inside(box)]).mean() < 3  # the object itself is untouched


def expected_crop(box: dict[str, float]) -> tuple[int, int]:
    """Width and height of the box with a quarter of its size added on each side, within the frame."""
    w, h = box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]
    x0, x1 = max(0.0, box["xmin"] - w / 4), min(float(WIDTH), box["xmax"] + w / 4)
    y0, y1 = max(0.0, box["ymin"] - h / 4), min(float(HEIGHT), box["ymax"] + h / 4)
    return round(x1 - x0), round(y1 - y0)


def test_crop_cuts_to_the_box_with_a_margin_and_h_scales(served: Served) -> None:
    for shape in SHAPES:
        event = served.start(shape.label)
        box = served.sidecar(shape.label)["box"]
        answer = served.get(snapshot_path(event, "crop=1"))
        assert answer.status_code == 200
        cropped = decode(answer.content)
        width, height = expected_crop(box)
        assert abs(cropped.shape[1] - width) <= 1 and abs(cropped.shape[0] - height) <= 1, (cropped.shape, box)
        rows, columns = cropped.shape[0] // 3, cropped.shape[1] // 3
        middle = cropped[rows:2 * rows, columns:2 * columns]
        assert np.abs(middle.reshape(-1, 3).mean(axis=0) - np.array(shape.colour)).max() < 25
        small = decode(served.get(snapshot_path(event, "crop=1&h=64&boxes=1")).content)
        assert small.shape[0] == 64 and abs(small.shape[1] - cropped.shape[1] * 64 / cropped.shape[0]) <= 1
    scaled = decode(served.get(snapshot_path(served.start("circle"), "h=120")).content)
    assert scaled.shape == (120, round(WIDTH * 120 / HEIGHT), 3)
    large = decode(served.get(snapshot_path(served.start("circle"), "h=720&boxes=0&crop=false")).content)
    assert large.shape == (720, 1280, 3)


@pytest.mark.parametrize("query, named", [("h=8", "h"), ("h=2161", "h"), ("h=tall", "h"), ("boxes=2", "boxes"),
                                          ("crop=maybe", "crop")])
def test_a_bad_parameter_is_a_422_in_one_line(served: Served, query: str, named: str) -> None:
    answer = served.get(snapshot_path(served.start("square"), query))
    assert answer.status_code == 422
    message = answer.json()["error"]
    assert message.startswith(named) and "\n" not in message


def test_unknown_events_and_objects_without_a_snapshot_are_404s(served: Served) -> None:
    unknown = served.get("/events/1800000000000-nobody-0000000001-0000/snapshot.jpg")
    assert unknown.status_code == 404 and "no event" in unknown.json()["error"]
    not_yet = served.get(snapshot_path(OPEN_START))
    assert not_yet.status_code == 404 and "no snapshot yet" in not_yet.json()["error"]
    assert served.get(snapshot_path(OPEN_START, "crop=1")).status_code == 404


def test_paths_come_from_the_history_and_never_leave_the_media_directories(served: Served) -> None:
    for event in ESCAPES:
        for route in ("snapshot.jpg", "clip.mp4"):
            answer = served.client.get(httpx.URL(served.base).join(f"/events/{event['id']}/{route}"))
            assert answer.status_code == 404 and b"not to be served" not in answer.content
    for raw in ("/events/..%2F..%2Fplanted/snapshot.jpg", "/events/%2E%2E/e-up.jpg",
                "/events/../../planted.jpg", "/events/..%2Fe-up/clip.mp4"):
        answer = served.get(raw)
        assert answer.status_code == 404 and b"not to be served" not in answer.content, raw


def test_the_clip_is_served_with_range_requests(served: Served) -> None:
    data = (served.clips / STREAM / f"{served.start('square')['id']}.mp4").read_bytes()
    size = len(data)
    for event in served.of("square"):
        whole = served.get(f"/events/{event['id']}/clip.mp4")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    clip = f"/events/{served.start('square')['id']}/clip.mp4"
    part = served.get(clip, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    tail = served.get(clip, headers={"Range": "bytes=-64"})
    assert tail.status_code == 206 and tail.content == data[-64:]
    rest = served.get(clip, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.content == data[-10:]
    beyond = served.get(clip, headers={"Range": f"bytes={size}-{size + 100}"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    head = served.client.head(f"{served.base}{clip}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == size
    with av.open(io.BytesIO(whole.content)) as container:  # what was served plays
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 30
    missing = served.get(f"/events/{served.start('circle')['id']}/clip.mp4")
    assert missing.status_code == 404 and "no clip yet" in missing.json()["error"]


def test_with_clips_off_the_clip_route_says_so(served: Served) -> None:
    app = FastAPI()
    with EventStore(events_path(served.root / "second")) as store:
        store.add(OPEN_START)
        assert store.flush()
        install_media_api(app, store.reader, served.snapshots, None)
        with serving(app) as base:
            answer = httpx.get(f"{base}/events/{OPEN_START['id']}/clip.mp4", timeout=10)
    assert answer.status_code == 404 and answer.json() == {"error": "clips are off"}


# --- retention ---------------------------------------------------------------------------------

DAY_S = 86400.0


def start_event(at: float, frame: int, stream: str = STREAM) -> dict[str, Any]:
    return {**OPEN_START, "id": event_id(at, stream, frame, 0), "at": at, "frame": frame, "track_id": frame,
            "stream": stream}


def media_files(directory: Path, start_id: str, stream: str = STREAM) -> list[Path]:
    """A snapshot with its sidecar under ``directory/snapshots`` and a clip under ``directory/clips``, old."""
    snapshots, clips = directory / "snapshots" / stream, directory / "clips" / stream
    files = [snapshots / f"{start_id}.jpg", snapshots / f"{start_id}.json", clips / f"{start_id}.mp4"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"media")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    return files


def test_the_sweep_deletes_the_media_of_objects_the_history_no_longer_keeps(tmp_path: Path) -> None:
    now = time.time()
    old, kept, aged = start_event(now - 600, 1), start_event(now - 300, 2), start_event(now - 2 * DAY_S, 3)
    with EventStore(events_path(tmp_path)) as store:
        for event in (old, aged, kept):
            store.add(event)
    with EventStore(events_path(tmp_path), max_events=2) as store:  # its retention drops the oldest: aged
        assert {e["id"] for e in store.query()[0]} == {old["id"], kept["id"]}
    directories = [tmp_path / "snapshots", tmp_path / "clips"]
    files = {event["id"]: media_files(tmp_path, event["id"]) for event in (old, kept, aged)}
    gone = start_event(now - 200, 4)  # never in the history (its start was dropped)
    files[gone["id"]] = media_files(tmp_path, gone["id"])
    fresh = start_event(now - 100, 5)  # just written: its start may not be committed yet
    fresh_file = tmp_path / "snapshots" / STREAM / f"{fresh['id']}.jpg"
    fresh_file.write_bytes(b"media")
    leftover = tmp_path / "snapshots" / STREAM / f".{start_event(now - 50, 6)['id']}.jpg.tmp"
    leftover.write_bytes(b"half")
    os.utime(leftover, (now - 3600, now - 3600))
    foreign = tmp_path / "clips" / STREAM / "notes.txt"
    foreign.write_text("not ours")
    os.utime(foreign, (now - 30 * DAY_S, now - 30 * DAY_S))

    reader = EventReader(events_path(tmp_path))
    swept = sweep(reader, directories, None)
    # Per directory and stream: snapshots of old, kept, aged, gone, fresh and the leftover; clips of four.
    assert swept.resume is None and swept.examined == 10
    assert all(path.exists() for path in files[old["id"]] + files[kept["id"]])
    assert not any(path.exists() for path in files[aged["id"]] + files[gone["id"]])
    assert fresh_file.exists() and not leftover.exists() and foreign.exists()
    assert swept.deleted_objects == 5 and swept.deleted_files == 7
    # The history's age limit: an object that started longer ago goes, though its start is still kept.
    assert sweep(reader, directories, 450 / DAY_S, now=now).deleted_objects == 2  # its snapshot and its clip
    assert not any(path.exists() for path in files[old["id"]]) and all(p.exists() for p in files[kept["id"]])


def test_the_sweep_is_bounded_per_call_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    now = time.time()
    with EventStore(events_path(tmp_path)) as store:
        kept = [start_event(now - 1000 + i, i) for i in range(3)]
        for event in kept:
            store.add(event)
        assert store.flush()
        reader = store.reader
        doomed = [start_event(now - 900 + i, 100 + i, stream) for i in range(4) for stream in (STREAM, "yard-cam")]
        for event in kept + doomed:
            media_files(tmp_path, event["id"], event["stream"])
        directories = [tmp_path / "snapshots", tmp_path / "clips"]
        calls, deleted, resume = 0, 0, None
        while True:
            swept = sweep(reader, directories, None, resume=resume, max_objects=3)
            calls += 1
            assert swept.examined <= 3
            deleted += swept.deleted_objects
            resume = swept.resume
            if resume is None or calls > 20:
                break
        # 11 objects in two directories (a snapshot and a clip each): 22, three per call.
        assert calls == 8 and deleted == 2 * len(doomed)
        left = sorted(path.name for path in tmp_path.rglob("*") if path.is_file() and path.suffix != ".db"
                      and "events.db" not in path.name)
        assert left == sorted(f"{event['id']}{suffix}" for event in kept for suffix in (".jpg", ".json", ".mp4"))
        with pytest.raises(ValueError, match="max_objects"):
            sweep(reader, directories, None, max_objects=0)
