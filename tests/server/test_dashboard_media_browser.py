"""The event list's snapshots and clips in a real browser (Debian's Chromium driven by Playwright).

The demo configuration is served with its history in a temporary data directory (``serving_with_history``):
the demo model on CPU on the synthetic camera, so objects start and end as the model sees them, and
their snapshots are the analyzer's own, written when an object ends. Clips are planted by the test: a
short H.264 MP4 written with PyAV where an object's clip lives (``media_path`` under the data directory's
``clips``), so what is tested is the page's part whether or not the analyzer writes clips itself.

Both tests share one server (the model loads once), with a token: the page passes it to the
thumbnails, the dialog's image and video (as ``?token=``, what an ``<img>`` or ``<video>`` can send) and
to its ``HEAD`` of a clip, as to its other requests; a request without it would be a 401 on the console.
Every wait is bounded: the first ended object within ``EVENTS_WITHIN_S`` of the server's start, an open
object's end within ``ENDS_WITHIN_S``, the page within ``SETTLE_S`` of what the server has (a clip's
control within ``CLIP_SHOWN_S`` of its object's end: the page asks again about 6 s after it, when a
clip written ``post_s`` after the end is there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from stream_detect.commands.demo import demo_config
from stream_detect.config import ServerConfig, parse_config
from stream_detect.events.media import media_path
from stream_detect.record.writer import VideoWriter

from .test_dashboard_events_browser import (
    ARTIFACTS,
    EVENTS_WITHIN_S,
    SETTLE_S,
    is_media_404,
    listed_stream,
    open_page,
    serving_with_history,
    wait_until,
)
from .test_dashboard_events_browser import pytestmark as browser_marks

pytestmark = browser_marks

STREAM = "demo-camera"
TOKEN = "wall-screen-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDS_WITHIN_S = 60  # for an object the page lists as open to end
CLIP_SHOWN_S = 30  # from an object's end to its clip's control on the page
NO_ROW = {"thumb_visible": False, "natural_width": 0, "clip_visible": False}  # a row not listed (now)

READ_ROWS = """tile => [...tile.querySelectorAll('.event-list li[data-id]')].map(row => {
    const thumb = row.querySelector('button.thumb'), image = thumb && thumb.querySelector('img');
    const clip = row.querySelector('button.clip');
    return {id: row.dataset.id, kind: row.dataset.kind,
            thumb_visible: Boolean(thumb) && thumb.checkVisibility({visibilityProperty: true}),
            natural_width: image ? image.naturalWidth : 0, natural_height: image ? image.naturalHeight : 0,
            src: image ? image.getAttribute('src') : null, lazy: image ? image.loading : null,
            clip_visible: Boolean(clip) && clip.checkVisibility({visibilityProperty: true})};
})"""

READ_VIEWER = """() => {
    const viewer = document.getElementById('viewer');
    const image = document.getElementById('viewer-image'), video = document.getElementById('viewer-video');
    return {open: viewer.open, title: document.getElementById('viewer-title').textContent,
            image_visible: image.checkVisibility(), image_src: image.getAttribute('src'),
            natural_width: image.naturalWidth, natural_height: image.naturalHeight,
            video_visible: video.checkVisibility(), video_src: video.getAttribute('src'),
            video_controls: video.controls, ready_state: video.readyState, video_width: video.videoWidth,
            video_error: video.error && video.error.code,
            note: document.getElementById('viewer-note').hidden ? null
                : document.getElementById('viewer-note').textContent};
}"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The demo served with its history in a temporary data directory: its URL and that directory."""
    data_dir = tmp_path_factory.mktemp("data")
    config = demo_config(parse_config({"data_dir": str(data_dir)}), {"device": "cpu"})
    with serving_with_history(config, ServerConfig(port=0, tokens=[TOKEN])) as base:
        yield base, data_dir


def history(base: str) -> list[dict[str, Any]]:
    """The stream's newest events, newest first."""
    answer = httpx.get(base + "/events", params={"stream": STREAM, "limit": "1000"}, headers=AUTH, timeout=10)
    answer.raise_for_status()
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def start_of(events: list[dict[str, Any]], event: dict[str, Any]) -> dict[str, Any] | None:
    """The ``object.start`` of ``event``'s object in ``events`` (newest first): its track's newest start
    at or before it."""
    for candidate in events:
        if (candidate["kind"] == "object.start" and candidate["track_id"] == event["track_id"]
                and (candidate["at"], candidate["id"]) <= (event["at"], event["id"])):
            return candidate
    return None


def end_of(events: list[dict[str, Any]], start: dict[str, Any]) -> dict[str, Any] | None:
    """The ``object.end`` of the object ``start`` starts, if it is in ``events``."""
    ends = [e for e in events if e["kind"] == "object.end" and e["track_id"] == start["track_id"]
            and (e["at"], e["id"]) >= (start["at"], start["id"])]
    return min(ends, key=lambda e: (e["at"], e["id"])) if ends else None


def ended_object(base: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The newest object whose start and end are both in the history, once its snapshot is served."""
    def found() -> tuple[dict[str, Any], dict[str, Any]] | None:
        events = history(base)
        for end in (e for e in events if e["kind"] == "object.end"):
            start = start_of(events, end)
            if start is not None and snapshot_status(base, end["id"]) == 200:
                return start, end
        return None
    pair: tuple[dict[str, Any], dict[str, Any]] = wait_until(found, EVENTS_WITHIN_S, "an ended object with a snapshot",
                                                             every_s=0.5)
    return pair


def snapshot_status(base: str, event_id: str) -> int:
    answer = httpx.get(f"{base}/events/{event_id}/snapshot.jpg", params={"crop": "1", "h": "64"}, headers=AUTH,
                       timeout=10)
    return answer.status_code


def clip_status(base: str, event_id: str) -> int:
    return httpx.head(f"{base}/events/{event_id}/clip.mp4", headers=AUTH, timeout=10).status_code


def plant_clip(data_dir: Path, start_id: str) -> Path:
    """A 2 s H.264 MP4 (faststart, 320x180 at 10 fps) where the object ``start_id`` starts has its clip,
    renamed into place once complete (the page may ask at any moment)."""
    path = media_path(data_dir / "clips", STREAM, start_id, ".mp4")
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.planting")
    width, height, fps = 320, 180, 10
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    with VideoWriter(partial, width, height, fps, fragmented=False) as writer:
        for index in range(2 * fps):
            image = np.empty((height, width, 3), np.uint8)
            image[..., 0] = np.roll(ramp, index * 8)[None, :].astype(np.uint8)
            image[..., 1] = 128
            image[..., 2] = 255 - image[..., 0]
            writer.write(image, index / fps)
    os.replace(partial, path)
    return path


def rows_of(tile: Any) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = tile.evaluate(READ_ROWS)
    return {row["id"]: row for row in rows}


def broken(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Rows showing a thumbnail that has no picture: a broken image."""
    return [row["id"] for row in rows.values() if row["thumb_visible"] and row["natural_width"] == 0]


def wait_for_rows(tile: Any, page: Any, accept: Any, what: str, timeout_s: float, seen_broken: list[str]) -> Any:
    """``accept(rows)``'s first truthy value, the rows read every quarter second; broken thumbnails seen
    meanwhile are added to ``seen_broken``."""
    def accepted() -> Any:
        rows = rows_of(tile)
        seen_broken.extend(broken(rows))
        return accept(rows)
    return wait_until(accepted, timeout_s, what, sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))


def open_object_row(tile: Any, page: Any, base: str, seen_broken: list[str],
                    shows: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``object.start`` row of an object still open (no end in the history right after the page was
    read) for which ``shows(row)`` is false: its row as read, and its event."""
    def found() -> tuple[dict[str, Any], dict[str, Any]] | None:
        rows = rows_of(tile)
        seen_broken.extend(broken(rows))
        events = history(base)
        for event in events:  # newest first: the longest in the page's 50 rows
            row = rows.get(event["id"])
            if event["kind"] == "object.start" and row and not shows(row) and end_of(events, event) is None:
                return row, event
        return None
    pair: tuple[dict[str, Any], dict[str, Any]] = wait_until(
        found, EVENTS_WITHIN_S, "a row of an open object", every_s=0.5,
        sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))
    return pair


def wait_for_end(page: Any, base: str, start: dict[str, Any]) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        return end_of(history(base), start)
    end: dict[str, Any] = wait_until(ended, ENDS_WITHIN_S, f"the end of {start['id']}",
                                     sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))
    return end


def wait_for_viewer(page: Any, accept: Any, what: str, timeout_s: float = SETTLE_S) -> dict[str, Any]:
    """What the viewer shows (``READ_VIEWER``) once ``accept`` takes it (polled from here: the page's
    policy refuses the string evaluation of ``wait_for_function``)."""
    def accepted() -> dict[str, Any] | None:
        shown: dict[str, Any] = page.evaluate(READ_VIEWER)
        return shown if accept(shown) else None
    viewer: dict[str, Any] = wait_until(accepted, timeout_s, what,
                                        sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))
    return viewer


def snapshot_shown(row: dict[str, Any]) -> bool:
    return bool(row["thumb_visible"] and row["natural_width"] > 0)


@pytest.mark.timeout(240)
def test_ended_objects_show_their_snapshot_and_open_it_full_size(demo: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    base, _ = demo
    start, end = ended_object(base)
    stream = listed_stream(base, STREAM, TOKEN)
    errors: list[str] = []
    seen_broken: list[str] = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, errors, allowed=is_media_404)
        try:
            page.goto(f"{base}/?token={TOKEN}")
            tile = page.locator(f'section.tile[data-stream="{STREAM}"]')
            tile.wait_for(timeout=10_000)
            ended_rows = wait_for_rows(
                tile, page, lambda rows: [rows[i] for i in (start["id"], end["id"])]
                if all(i in rows and snapshot_shown(rows[i]) for i in (start["id"], end["id"])) else None,
                "the ended object's rows with their thumbnails", SETTLE_S, seen_broken)
            # An object open when the page listed it: no thumbnail (a 404), then one once it has ended.
            open_row, open_start = open_object_row(tile, page, base, seen_broken, snapshot_shown)
            open_end = wait_for_end(page, base, open_start)
            shown_later = wait_for_rows(
                tile, page, lambda rows: snapshot_shown(rows.get(open_start["id"], NO_ROW)) and rows[open_start["id"]],
                "the thumbnail of an object that ended while the page was open", SETTLE_S, seen_broken)

            tile.locator(f'li[data-id="{end["id"]}"] button.thumb').click(timeout=5_000)
            viewer = wait_for_viewer(page, lambda shown: shown["natural_width"] > 0, "the full snapshot shown")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-snapshot.png"))
            page.keyboard.press("Escape")
            closed = wait_for_viewer(page, lambda shown: not shown["open"] and shown["image_src"] is None,
                                     "Escape closing the viewer and letting the image go", timeout_s=5.0)
        finally:
            browser.close()
    for row in ended_rows:
        assert row["lazy"] == "lazy" and "crop=1" in row["src"] and "h=64" in row["src"], row
        assert row["natural_height"] == 64, "the thumbnail is the crop scaled to 64 px high"
    assert not open_row["thumb_visible"], "no thumbnail (and no broken image) while the object lasts"
    assert open_end["at"] >= open_start["at"] and shown_later["natural_width"] > 0
    assert viewer["open"] and viewer["image_visible"] and not viewer["video_visible"], viewer
    assert f"/events/{end['id']}/snapshot.jpg?boxes=1" in viewer["image_src"], viewer
    assert (viewer["natural_width"], viewer["natural_height"]) == (stream["width"], stream["height"]), \
        "the full frame, not the crop"
    assert viewer["note"] is None and f"#{end['track_id']}" in viewer["title"]
    assert not closed["open"] and closed["image_src"] is None, "Escape closes the viewer and lets the image go"
    assert seen_broken == [], "a thumbnail is shown only once it has loaded"
    assert errors == []


@pytest.mark.timeout(240)
def test_rows_of_an_object_with_a_clip_play_it_in_the_dialog(demo: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    base, data_dir = demo
    start, end = ended_object(base)
    plant_clip(data_dir, start["id"])
    assert clip_status(base, end["id"]) == 200
    errors: list[str] = []
    seen_broken: list[str] = []
    clip_answers: list[tuple[int, str | None]] = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, errors, allowed=is_media_404)
        try:
            page.on("response", lambda response: clip_answers.append(
                (response.status, response.request.headers.get("range")))
                if "/clip.mp4" in response.url and response.request.method == "GET" else None)
            page.goto(f"{base}/?token={TOKEN}")
            tile = page.locator(f'section.tile[data-stream="{STREAM}"]')
            tile.wait_for(timeout=10_000)
            planted_rows = wait_for_rows(
                tile, page, lambda rows: [rows[i] for i in (start["id"], end["id"])]
                if all(rows.get(i, NO_ROW)["clip_visible"] for i in (start["id"], end["id"])) else None,
                "the clip control on the rows of the object with a clip", SETTLE_S, seen_broken)
            # An object open when the page listed it: no control; its clip planted as soon as it ends
            # (the analyzer writes one post_s later): the page asks again and shows the control.
            open_row, open_start = open_object_row(tile, page, base, seen_broken, lambda row: row["clip_visible"])
            no_clip_then = clip_status(base, open_start["id"])
            open_end = wait_for_end(page, base, open_start)
            plant_clip(data_dir, open_start["id"])
            shown_later = wait_for_rows(
                tile, page, lambda rows: rows.get(open_start["id"], NO_ROW)["clip_visible"],
                "the clip control of an object that ended while the page was open", CLIP_SHOWN_S, seen_broken)

            tile.locator(f'li[data-id="{end["id"]}"] button.clip').click(timeout=5_000)
            viewer = wait_for_viewer(page, lambda shown: shown["ready_state"] >= 2, "the clip ready to play", 20)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-clip.png"))
            page.locator("#viewer-close").click(timeout=5_000)
            closed = page.evaluate(READ_VIEWER)
        finally:
            browser.close()
    assert len(planted_rows) == 2
    assert no_clip_then == 404 and not open_row["clip_visible"], "no control while the object has no clip"
    assert shown_later and open_end["at"] >= open_start["at"]
    assert viewer["open"] and viewer["video_visible"] and viewer["video_controls"] and not viewer["image_visible"]
    assert f"/events/{end['id']}/clip.mp4" in viewer["video_src"], viewer
    # The planted clip, or the analyzer's own once its clip writer is wired (it may replace the planted one).
    assert viewer["ready_state"] >= 2 and viewer["video_width"] > 0 and viewer["video_error"] is None, viewer
    assert any(status == 206 and asked for status, asked in clip_answers), \
        f"the video is read with range requests: {clip_answers}"
    assert not closed["open"] and closed["video_src"] is None, "closing the viewer stops the video's requests"
    assert seen_broken == []
    assert errors == []
